"""Private derivatives: expiring URLs that nginx checks before it serves a stored object.

A private derivative's URL is ``{media_url}_p/{key}/{spec}-{sig}.{fmt}?expires={unix}&token={token}``. Its path is a
derivative path under ``signing.PRIVATE_DERIVED_PREFIX`` instead of the derived prefix, and its storage key is the
derivative's under that prefix, without the signature: the expiry and the token are in the query only, so every
expiry of one derivative shares one stored object. Two keys are derived from each secret of ``SECRETS``, so that
neither is the secret itself:

- the *signing key* signs ``{spec}-{sig}``, as the secret signs a public derivative. A private derivative's
  signature is therefore never a public one's: a private URL does not reveal a permanent public URL of the image.
- the *token key* signs the expiry and the path: ``token`` is the first 32 hex digits of
  HMAC-SHA256(token key, ``"{expires}\\n{path}"``), the path exactly as it is requested (percent-encoded). nginx
  checks the token and the expiry (``deploy/nginx/private.js``), then the path's signature with the signing keys
  (``deploy/nginx/derivatives.js``), before it reads the object: its configuration is rendered with both keys.

Standard library only: the middleware builds these URLs.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable

from resize_sidecar.core.errors import BadSignatureError, MalformedPathError
from resize_sidecar.core.signing import SIGNATURE_LENGTH

#: The longest lifetime a private URL may be given, in seconds (a week, as S3's presigned URLs).
MAX_LIFETIME = 604800
#: The one spelling of a private URL's query, as nginx reads it too (``deploy/nginx/private.js``).
_QUERY = re.compile(f"expires=([1-9][0-9]{{0,11}})&token=([0-9a-f]{{{SIGNATURE_LENGTH}}})")


def _derive(secret: str, purpose: str) -> str:
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def signing_key(secret: str) -> str:
    """The key that signs private derivatives' ``{spec}-{sig}`` names, derived from a secret of ``SECRETS``."""
    return _derive(secret, "resize-sidecar private derivatives")


def signing_keys(secrets: Iterable[str]) -> list[str]:
    """The private signing keys of every secret of ``SECRETS``: any one verifies a private derivative."""
    return [signing_key(secret) for secret in secrets]


def token_key(secret: str) -> str:
    """The key that signs private URLs' expiries (nginx holds it), derived from a secret of ``SECRETS``."""
    return _derive(secret, "resize-sidecar private URL tokens")


def token(path: str, expires: int, key: str) -> str:
    """The token of a private URL: ``path`` as it is requested (percent-encoded, no query) until ``expires``."""
    mac = hmac.new(key.encode(), f"{expires}\n{path}".encode(), hashlib.sha256)
    return mac.hexdigest()[:SIGNATURE_LENGTH]


def query(path: str, expires: int, secret: str) -> str:
    """The query string of a private URL for ``path`` that expires at ``expires`` (Unix seconds)."""
    return f"expires={expires}&token={token(path, expires, token_key(secret))}"


def check(path: str, query_string: str, secrets: Iterable[str], now: float) -> int:
    """Check a private URL's query against its raw path and the clock; its expiry, in Unix seconds.

    The token is checked before the expiry is looked at, so an expiry changed by hand is a wrong token, not an
    expired URL.

    Raises:
        BadSignatureError: the query is not ``expires={unix}&token={token}``, the token does not match, or the URL
            has expired.
    """
    found = _QUERY.fullmatch(query_string)
    if found is None:
        raise BadSignatureError("a private URL needs ?expires={unix}&token={token}")
    expires, given = int(found[1]), found[2]
    valid = False
    for secret in secrets:
        # Every secret is tried, so the time taken does not depend on which one matched.
        valid |= hmac.compare_digest(token(path, expires, token_key(secret)).encode(), given.encode())
    if not valid:
        raise BadSignatureError("the private URL's token does not match")
    if expires <= now:
        raise BadSignatureError("the private URL has expired")
    return expires


def cache_control(expires: int, now: float) -> str:
    """A private derivative's Cache-Control: a browser may keep it until the URL expires, no shared cache at all."""
    return f"private, max-age={max(0, expires - int(now))}"


def expiry(now: float, lifetime: int) -> int:
    """The expiry of a URL made ``now`` to live at least ``lifetime`` seconds, and at most a tenth longer.

    The expiry is rounded up to a step of a tenth of the lifetime, so a page shows the same URLs for that long and
    browsers reuse what they keep (their caches are keyed on the whole URL, query included).

    Raises:
        MalformedPathError: a lifetime that is not 1 second to :data:`MAX_LIFETIME`.
    """
    if not 1 <= lifetime <= MAX_LIFETIME:
        raise MalformedPathError(f"a private URL lives 1 to {MAX_LIFETIME} seconds, not {lifetime}")
    step = max(1, lifetime // 10)
    return -(-(int(now) + lifetime) // step) * step
