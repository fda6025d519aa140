"""``resize-sidecar migrate``: move derivatives stored in the layout before, at their signed public path
(``{prefix}{key}/{spec}-{sig}.{fmt}``), to the storage key without the signature (``{prefix}{key}/{spec}.{fmt}``),
where nginx and the sidecar now read them.

Each step can be run again: an object already at its new key is not written twice (``put_if_absent``, which also
leaves alone a derivative a miss rendered there meanwhile), and a signed object is deleted only once its copy is
stored. A run cut off anywhere, run again, finishes the move, and nothing is ever rendered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from resize_sidecar.core import auto, private
from resize_sidecar.core.errors import BadSignatureError, MalformedPathError, SettingsError
from resize_sidecar.core.formats import CONTENT_TYPES
from resize_sidecar.core.objects import write_headers
from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import (
    PRIVATE_DERIVED_PREFIX,
    DerivativePath,
    parse_signed_storage_key,
    parse_storage_key,
    verify,
)
from resize_sidecar.media.storage import Storage, StoredObject
from resize_sidecar.ops.runs import Outcome, Progress, Report, Silent, run_bulk, stored_derivatives
from resize_sidecar.ops.shards import Shard

_UNVERIFIED = "signed with none of the current secrets"


@dataclass(frozen=True)
class _Options:
    shard: Shard
    dry_run: bool
    keep_old: bool
    delete_unverified: bool


class _Migrator:
    def __init__(self, settings: Settings, storage: Storage, options: _Options) -> None:
        self.settings = settings
        self.storage = storage
        self.options = options
        self.secrets = settings.require_secrets()
        self.private_keys = private.signing_keys(self.secrets)

    def migrate(self, stored: StoredObject) -> Outcome | None:
        """Move one object listed under a derivatives' prefix; ``None`` for those with nothing to move (in the new
        layout already, or another shard's)."""
        is_private = stored.key.startswith(PRIVATE_DERIVED_PREFIX)
        prefix = PRIVATE_DERIVED_PREFIX if is_private else self.settings.derived_prefix
        try:
            parse_storage_key(stored.key, prefix)
            return None
        except MalformedPathError:
            pass
        try:
            path = parse_signed_storage_key(stored.key, prefix)
            new_key = path.storage_key(prefix)
            parse_storage_key(new_key, prefix)  # a spec in no canonical spelling names no derivative there
        except MalformedPathError:
            return Outcome(stored.key, "skipped", "not a derivative's key") if self.owns(stored.key) else None
        if not self.owns(path.key):
            return None
        if not self.verified(path, is_private):
            return self.unverified(stored.key)
        return self.move(stored.key, new_key, path)

    def owns(self, key: str) -> bool:
        return self.options.shard.owns(key)

    def verified(self, path: DerivativePath, is_private: bool) -> bool:
        """Whether a signature of the current secrets asked for the derivative, as the Deriver verifies a request:
        a private one with the private signing keys, one of an ``.auto`` URL as signed for ``auto``."""
        tries: list[tuple[Sequence[str], str | None]] = [(self.private_keys, None)]
        if not is_private:
            tries = [(self.secrets, None)] + ([(self.secrets, auto.AUTO)] if path.fmt in auto.FORMATS else [])
        for secrets, signed_format in tries:
            try:
                verify(path, secrets, signed_format=signed_format)
            except BadSignatureError:
                continue
            return True
        return False

    def unverified(self, key: str) -> Outcome:
        # Whoever held a secret no longer in SECRETS made it: after a rotation because that secret leaked, its
        # renders should not outlive it.
        if not self.options.delete_unverified:
            return Outcome(key, "unverified", f"{_UNVERIFIED}; left in place")
        if self.options.dry_run:
            return Outcome(key, "would delete", _UNVERIFIED)
        self.storage.delete(key)
        return Outcome(key, "deleted", _UNVERIFIED)

    def move(self, key: str, new_key: str, path: DerivativePath) -> Outcome:
        keep_old, dry_run = self.options.keep_old, self.options.dry_run
        copied = self.storage.exists(new_key)
        if copied and keep_old:
            return Outcome(key, "current", f"at {new_key} already; the signed object is kept")
        if dry_run:
            return Outcome(key, "would copy" if keep_old else "would move", f"to {new_key}")
        if not copied:
            # The recipe is read before the bytes: should the object be replaced between the two reads, the copy
            # has newer bytes than its recipe says, which costs regenerate a render, never a wrong "current".
            metadata = self.storage.head(key)
            data = self.storage.get(key)
            if metadata is None or data is None:
                return Outcome(key, "skipped", "deleted by someone else while it was moved")
            headers = write_headers("derivative", self.settings, CONTENT_TYPES[path.fmt])
            # Never over a derivative that a miss of the new version stored meanwhile: the same one, fresher.
            self.storage.put_if_absent(new_key, data, *headers, metadata=metadata)
        if keep_old:
            return Outcome(key, "copied", f"to {new_key}; the signed object is kept")
        self.storage.delete(key)
        return Outcome(key, "moved", f"to {new_key}")


def migrate(
    settings: Settings,
    storage: Storage,
    *,
    prefix: str = "",
    jobs: int = 4,
    dry_run: bool = False,
    keep_old: bool = False,
    delete_unverified: bool = False,
    shard: Shard | None = None,
    progress: Progress | None = None,
) -> Report:
    """Move the derivatives of originals whose keys start with ``prefix`` from their signed storage keys (the layout
    before) to their keys without the signature, public and private.

    A signed object is verified with the current secrets, as the Deriver verified the request that made it. Verified,
    it is copied to its new key with its Content-Type, Cache-Control and recorded recipe, unless an object is there
    already (*moved*; with ``keep_old`` the signed object stays, *copied*, so that a version still reading signed keys
    keeps serving it). Signed with none of the secrets, it is *unverified* and left in place, or deleted with
    ``delete_unverified``. Objects in the new layout are not reported; others under the prefixes are *skipped*.
    With ``shard``, only the derivatives of the originals of that shard (see :mod:`resize_sidecar.ops.shards`).

    Raises:
        SettingsError: redirect mode (its storage keys keep the signature), or no secret is set.
        StorageError: storage fails at the start.
        MalformedPathError: an unsafe prefix.
    """
    if settings.signed_storage_keys:
        raise SettingsError(
            "migrate: in redirect mode (ON_MISS=redirect) derivatives are stored at their signed URL's path, which "
            "the bucket's website serves; there is nothing to move"
        )
    worker = _Migrator(settings, storage, _Options(shard or Shard(), dry_run, keep_old, delete_unverified))
    progress = progress or Silent()
    report = Report("migrate")
    storage.check()
    progress.start(None)
    run_bulk(report, stored_derivatives(storage, settings.derived_prefix, prefix), worker.migrate, jobs, progress)
    return report
