"""Keys that are easy to get wrong on the way through URLs, nginx and S3."""

from __future__ import annotations

import pytest

#: Plain, UTF-8 with spaces, and the characters URL encoders and S3 treat specially.
AWKWARD_KEYS = [
    pytest.param("photos/plain.jpg", id="plain"),
    pytest.param("albums/café déjà vu/été 2024.jpg", id="utf-8 and spaces"),
    pytest.param("odd/a+b %25 & c; ~d=e,f!.jpg", id="plus percent ampersand"),
]
