"""The derivative URL contract: a signed URL computed here, independently of the code under test, and the answer to a
path that no secret signed."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote

from resize_sidecar.core.errors import BadSignatureError, MalformedPathError
from resize_sidecar.core.signing import parse_path, verify
from tests.support.servers import SECRET


def contract_url(key: str, spec: str, fmt: str, base: str = "") -> str:
    """The URL of a derivative as the contract writes it: the key percent-encoded, the spec and the signature."""
    signature = hmac.new(SECRET.encode(), f"{key}/{spec}.{fmt}".encode(), hashlib.sha256).hexdigest()[:32]
    return f"{base}/media/_r/{quote(key, safe='/')}/{spec}-{signature}.{fmt}"


def refusal(path: str) -> tuple[int, bytes]:
    """The sidecar's answer to a path under the derived prefix that the suite's secret did not sign: 400 naming what
    is wrong when it is no derivative's path, else 403 naming what is wrong with its signature. What follows a
    ``?`` or a ``#`` is a query or a fragment, no part of the path."""
    try:
        verify(parse_path(path.split("?", 1)[0].split("#", 1)[0]), (SECRET,))
    except MalformedPathError as error:
        return 400, f"Bad Request: {error.detail}\n".encode()
    except BadSignatureError as error:
        return 403, f"Forbidden: {error.detail}\n".encode()
    raise AssertionError(f"{path} is signed")
