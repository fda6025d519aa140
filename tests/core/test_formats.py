"""The formats table (resize_sidecar.core.formats): every list of formats elsewhere is read from it."""

from __future__ import annotations

import pytest

from resize_sidecar.core.formats import (
    BY_NAME,
    CONTENT_TYPES,
    DEFAULT_FORMAT,
    FORMAT_OF_EXTENSION,
    FORMATS,
    ORIGINAL_TYPES,
    OUTPUT_FORMATS,
    format_of_key,
)


def test_the_format_names_are_the_table_s_in_its_order() -> None:
    assert FORMATS == ("jpg", "png", "webp", "avif", "gif") == tuple(fmt.name for fmt in OUTPUT_FORMATS)
    assert list(BY_NAME) == list(CONTENT_TYPES) == list(FORMATS)
    assert DEFAULT_FORMAT in FORMATS


def test_each_format_has_its_registered_content_type_and_properties() -> None:
    table = {f.name: (f.content_type, f.extensions, f.alpha, f.animation) for f in OUTPUT_FORMATS}
    assert table == {
        "jpg": ("image/jpeg", ("jpg", "jpeg"), False, False),
        "png": ("image/png", ("png",), True, False),
        "webp": ("image/webp", ("webp",), True, True),
        "avif": ("image/avif", ("avif",), True, False),
        "gif": ("image/gif", ("gif",), True, True),
    }


def test_originals_are_served_as_the_output_types_and_heic_only() -> None:
    assert ORIGINAL_TYPES == {
        "image/jpeg": ("jpg", "jpeg"),
        "image/png": ("png",),
        "image/webp": ("webp",),
        "image/avif": ("avif",),
        "image/gif": ("gif",),
        "image/heic": ("heic", "heif"),
    }


@pytest.mark.parametrize(
    ("key", "fmt"),
    [
        pytest.param("a/photo.jpg", "jpg", id="jpg"),
        pytest.param("a/photo.JPEG", "jpg", id="jpeg upper-case"),
        pytest.param("a.b/photo.webp", "webp", id="dot in a folder"),
        pytest.param("photo.avif", "avif", id="avif"),
        pytest.param("photo.gif", "gif", id="gif"),
        pytest.param("photo.png", "png", id="png"),
        pytest.param("photo.heic", None, id="heic is no output format"),
        pytest.param("photo.tiff", None, id="tiff"),
        pytest.param("photo", None, id="no extension"),
        pytest.param("photo.jpg.txt", None, id="last extension counts"),
    ],
)
def test_a_key_s_extension_names_its_format(key: str, fmt: str | None) -> None:
    assert format_of_key(key) == fmt


def test_every_extension_of_a_format_names_that_format() -> None:
    assert FORMAT_OF_EXTENSION == {
        "jpg": "jpg", "jpeg": "jpg", "png": "png", "webp": "webp", "avif": "avif", "gif": "gif"
    }  # fmt: skip
