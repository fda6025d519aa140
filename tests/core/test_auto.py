""".auto URLs: the format each Accept header chooses, and the signature they carry."""

from __future__ import annotations

import pytest

from resize_sidecar.core import auto
from resize_sidecar.core.errors import BadSignatureError
from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import parse_path, verify
from resize_sidecar.core.urls import MediaURLs

SECRET = "core-secret-0123456789abcdef"


@pytest.mark.parametrize(
    ("accept", "fmt"),
    [
        pytest.param("image/avif,image/webp,image/apng,image/*,*/*;q=0.8", "avif", id="chromium"),
        pytest.param("image/webp,*/*", "webp", id="webp only"),
        pytest.param("IMAGE/AVIF", "avif", id="any case"),
        pytest.param("*/*", "jpg", id="plain"),
        pytest.param("", "jpg", id="none"),
        pytest.param("image/png,image/*;q=0.8", "jpg", id="png named"),
    ],
)
def test_the_accept_header_chooses_the_format(accept: str, fmt: str) -> None:
    assert auto.choose_format(accept) == fmt


def test_one_auto_url_is_signed_for_every_format_it_stands_for() -> None:
    url = MediaURLs(Settings(secrets=(SECRET,))).derivative("a.jpg", width=200, format="auto")

    for fmt in ("avif", "webp", "jpg"):
        path = parse_path(auto.concrete_path(url, fmt))
        verify(path, [SECRET], signed_format=auto.AUTO)
        with pytest.raises(BadSignatureError):
            verify(path, [SECRET])

