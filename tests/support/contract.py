"""The derivative URL contract computed here, independently of the code under test."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote

from tests.support.servers import SECRET


def contract_url(key: str, spec: str, fmt: str, base: str = "") -> str:
    """The URL of a derivative as the contract writes it: the key percent-encoded, the spec and the signature."""
    signature = hmac.new(SECRET.encode(), f"{key}/{spec}.{fmt}".encode(), hashlib.sha256).hexdigest()[:32]
    return f"{base}/media/_r/{quote(key, safe='/')}/{spec}-{signature}.{fmt}"
