"""Keys that are easy to get wrong on the way through URLs, nginx and S3."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from resize_sidecar.core.signing import PRIVATE_DERIVED_PREFIX, parse_path

#: Plain, UTF-8 with spaces, and the characters URL encoders and S3 treat specially.
AWKWARD_KEYS = [
    pytest.param("photos/plain.jpg", id="plain"),
    pytest.param("albums/café déjà vu/été 2024.jpg", id="utf-8 and spaces"),
    pytest.param("odd/a+b %25 & c; ~d=e,f!.jpg", id="plus percent ampersand"),
]


def stored_key(url: str, *, media_url: str = "/media/", derived_prefix: str = "_r/", fmt: str = "") -> str:
    """The storage key of the derivative a URL names (a path or a whole URL; its query ignored): without the media
    URL and the signature, the key percent-decoded. ``fmt`` is the format an ``.auto`` URL is stored in."""
    path = urlsplit(url).path
    if fmt:
        path = path.removesuffix(".auto") + f".{fmt}"
    if path.startswith(media_url + PRIVATE_DERIVED_PREFIX):
        derived_prefix = PRIVATE_DERIVED_PREFIX
    return parse_path(path, media_url=media_url, derived_prefix=derived_prefix).storage_key(derived_prefix)
