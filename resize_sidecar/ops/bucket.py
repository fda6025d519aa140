"""``resize-sidecar setup-bucket``: create an S3 bucket and configure what the sidecar needs of it.

Bucket configuration (public access, policy, website, lifecycle, CORS) is not part of the storage contract:
:class:`~resize_sidecar.media.s3.BucketAdmin` makes those calls.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from resize_sidecar.core.errors import StorageError
from resize_sidecar.core.settings import Settings
from resize_sidecar.media.s3 import BucketAdmin, UnsupportedByStoreError


@dataclass(frozen=True)
class Change:
    """One part of a bucket's configuration: ``created``, ``set``, ``unchanged`` (or ``would …``), and what it is."""

    part: str
    status: str
    detail: str


@dataclass(frozen=True)
class BucketPlan:
    """What ``setup-bucket`` is asked to configure; nothing that is not asked for is touched."""

    public_read: bool = False
    #: With ``public_read``: also block public ACLs. Off for stores that then refuse every write (Ceph's RADOS Gateway).
    public_access_block: bool = True
    website: bool = False
    redirect_url: str = ""  #: scheme and host of the sidecar, where the website sends misses
    incoming_expiry_days: int | None = None
    cors_origins: tuple[str, ...] = ()


_POLICY_SID = "ResizeSidecarReadDerivatives"
_LIFECYCLE_ID = "resize-sidecar-incoming"
_CORS_ID = "resize-sidecar"
#: Public access block for --public-read: public ACLs stay blocked, a public bucket policy is allowed.
_PUBLIC_ACCESS = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": False,
    "RestrictPublicBuckets": False,
}
#: The option that leaves the public access block alone, named in the errors that call for it.
NO_PUBLIC_ACCESS_BLOCK = "--no-public-access-block"


def setup_bucket(settings: Settings, admin: BucketAdmin, plan: BucketPlan, *, dry_run: bool = False) -> list[Change]:
    """Create the bucket if needed and configure what ``plan`` asks for; a second run changes nothing.

    Each configuration keeps what others wrote into it (policy statements, routing, lifecycle and CORS rules) and
    replaces only its own part, found by its id (or, for routing rules, by the derivatives' key prefix). A part the
    store does not have (405, 501, NotImplemented) is reported ``unsupported`` and the others are still set. With
    ``public_read``, a test object is then written, read back and read without credentials (``verified``): a store
    may accept a configuration and then behave otherwise.

    Raises:
        StorageError: S3 refused a call or could not be reached, or the test object failed; a public access block
            set by this run is removed again when writes fail after it.
    """
    changes: list[Change] = []

    def record(part: str, changed: bool, detail: str, apply: Callable[[], object], verb: str = "set") -> None:
        if not changed:
            changes.append(Change(part, "unchanged", detail))
        elif dry_run:
            changes.append(Change(part, f"would {verb}", detail))
        else:
            apply()
            changes.append(Change(part, "created" if verb == "create" else verb, detail))

    exists = admin.exists()
    record("bucket", not exists, f"{admin.bucket} ({admin.region})", admin.create, verb="create")

    def read(operation: str) -> dict[str, Any] | None:
        # A bucket about to be created has no configuration to read.
        return admin.read(operation) if exists else None

    def configure(part: str, apply: Callable[[], None]) -> None:
        try:
            apply()
        except UnsupportedByStoreError as error:
            changes.append(Change(part, "unsupported", f"this store has none ({error.detail})"))

    derived = settings.s3_prefix + settings.derived_prefix
    #: Puts back the public access block found, if this run changed it.
    restore_access: list[Callable[[], object]] = []

    def public_access_block() -> None:
        current = (read("get_public_access_block") or {}).get("PublicAccessBlockConfiguration")
        changed = current != _PUBLIC_ACCESS
        record(
            "public access block",
            changed,
            "public ACLs blocked, public bucket policies allowed",
            lambda: admin.call("put_public_access_block", PublicAccessBlockConfiguration=_PUBLIC_ACCESS),
        )
        if changed and not dry_run:
            restore_access.append(
                (lambda: admin.call("delete_public_access_block"))
                if current is None
                else (lambda: admin.call("put_public_access_block", PublicAccessBlockConfiguration=current))
            )

    def bucket_policy() -> None:
        resource = f"arn:aws:s3:::{admin.bucket}/{derived}*"
        statement = {
            "Sid": _POLICY_SID,
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": resource,
        }
        answer = read("get_bucket_policy")
        policy: dict[str, Any] = json.loads(answer["Policy"]) if answer else {"Version": "2012-10-17", "Statement": []}
        statements = policy.get("Statement", [])
        policy["Statement"] = [item for item in statements if item.get("Sid") != _POLICY_SID] + [statement]
        record(
            "bucket policy",
            statement not in statements,
            f"anyone may read {resource} (originals stay private)",
            lambda: admin.call("put_bucket_policy", Policy=json.dumps(policy)),
        )

    def website() -> None:
        current = read("get_bucket_website") or {}
        wanted = {"IndexDocument": current.get("IndexDocument", {"Suffix": "index.html"})}
        wanted.update({name: current[name] for name in ("ErrorDocument", "RoutingRules") if name in current})
        detail = "hosting on"
        if plan.redirect_url:
            ours = _routing_rules(settings, plan.redirect_url)
            others = [rule for rule in current.get("RoutingRules", []) if not _is_ours(rule, derived)]
            wanted["RoutingRules"] = others + ours
            target = ours[0]["Redirect"]
            detail += (
                f"; 404 and 403 under {derived} redirect (302) to {target['Protocol']}://{target['HostName']}/"
                f"{target['ReplaceKeyPrefixWith']}…"
            )
        record(
            "website",
            wanted != current,
            detail,
            lambda: admin.call("put_bucket_website", WebsiteConfiguration=wanted),
        )

    def lifecycle(days: int) -> None:
        incoming = settings.s3_prefix + settings.incoming_prefix
        # Uploads and the presets made of them at upload time: both stay behind if never activated.
        incoming_derivatives = settings.s3_prefix + settings.derived_prefix + settings.incoming_prefix
        prefixes = {_LIFECYCLE_ID: incoming, f"{_LIFECYCLE_ID}-derivatives": incoming_derivatives}
        ours: list[dict[str, Any]] = [
            {
                "ID": rule_id,
                "Filter": {"Prefix": prefix},
                "Status": "Enabled",
                "Expiration": {"Days": days},
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
            }
            for rule_id, prefix in prefixes.items()
        ]
        rules = (read("get_bucket_lifecycle_configuration") or {}).get("Rules", [])
        wanted = {"Rules": [item for item in rules if item.get("ID") not in prefixes] + ours}
        record(
            "lifecycle",
            not all(_has_rule(rules, rule) for rule in ours),
            f"uploads under {incoming} and {incoming_derivatives} never activated expire after {days} days",
            lambda: admin.call("put_bucket_lifecycle_configuration", LifecycleConfiguration=wanted),
        )

    def cors(origins: tuple[str, ...]) -> None:
        rule = {
            "ID": _CORS_ID,
            "AllowedMethods": ["GET", "HEAD"],
            "AllowedOrigins": list(origins),
            "MaxAgeSeconds": 86400,
        }
        rules = (read("get_bucket_cors") or {}).get("CORSRules", [])
        wanted = {"CORSRules": [item for item in rules if item.get("ID") != _CORS_ID] + [rule]}
        record(
            "CORS",
            not _has_rule(rules, rule),
            f"GET and HEAD from {', '.join(origins)}",
            lambda: admin.call("put_bucket_cors", CORSConfiguration=wanted),
        )

    if plan.public_read:
        if plan.public_access_block:
            configure("public access block", public_access_block)
        else:
            changes.append(Change("public access block", "skipped", f"left as it is ({NO_PUBLIC_ACCESS_BLOCK})"))
        configure("bucket policy", bucket_policy)
    if plan.website:
        configure("website", website)
    if plan.incoming_expiry_days is not None:
        configure("lifecycle", partial(lifecycle, plan.incoming_expiry_days))
    if plan.cors_origins:
        configure("CORS", partial(cors, plan.cors_origins))
    if plan.public_read and not dry_run:
        changes.append(_verify_public_read(admin, derived, plan, restore_access))
    return changes


def _verify_public_read(
    admin: BucketAdmin, derived: str, plan: BucketPlan, restore_access: list[Callable[[], object]]
) -> Change:
    """A test object under the derivatives' prefix: written, read back, read without credentials, deleted.

    Raises:
        StorageError: a step failed; a public access block this run set is put back as it was when the write
            failed, and the message names the option that leaves it alone.
    """
    key = f"{derived}resize-sidecar-setup-check-{uuid.uuid4().hex}"
    try:
        admin.try_object(key, anonymous_read=True)
    except StorageError as error:
        advice = ""
        if plan.public_access_block:
            undone = ""
            if restore_access:
                restore_access[0]()
                undone = " It was put back as it was."
            advice = (
                f" If writes fail since the public access block was set (Ceph's RADOS Gateway refuses every write "
                f"under BlockPublicAcls), run setup-bucket again with {NO_PUBLIC_ACCESS_BLOCK}.{undone}"
            )
        raise StorageError(f"setup-bucket could not verify bucket {admin.bucket!r}: {error.detail}.{advice}") from error
    return Change("public read", "verified", f"a test object under {derived} was written, read back and read by anyone")


def _routing_rules(settings: Settings, redirect_url: str) -> list[dict[str, Any]]:
    """Misses under the derivatives' prefix go to the sidecar at ``{MEDIA_URL}{DERIVED_PREFIX}…``, the path it verifies.

    302, never 301: browsers and CDNs keep a 301, and would loop back to the sidecar once the derivative exists. S3
    answers 403 instead of 404 for a missing key to clients that may not list the bucket, hence a rule for each.
    """
    target = urlsplit(redirect_url)
    redirect = {
        "HostName": target.netloc,
        "Protocol": target.scheme,
        "HttpRedirectCode": "302",
        "ReplaceKeyPrefixWith": settings.media_url.lstrip("/") + settings.derived_prefix,
    }
    prefix = settings.s3_prefix + settings.derived_prefix
    return [
        {"Condition": {"KeyPrefixEquals": prefix, "HttpErrorCodeReturnedEquals": code}, "Redirect": dict(redirect)}
        for code in ("404", "403")
    ]


def _is_ours(rule: dict[str, Any], derived: str) -> bool:
    return bool(rule.get("Condition", {}).get("KeyPrefixEquals") == derived)


def _has_rule(rules: list[dict[str, Any]], rule: dict[str, Any]) -> bool:
    """Whether ``rules`` hold ``rule`` as written (S3 may add fields of its own to what it reads back)."""
    return any(all(item.get(name) == value for name, value in rule.items()) for item in rules)
