"""Write headers by object kind (resize_sidecar.core.objects): what S3 stores each kind of object with."""

from __future__ import annotations

import pytest

from resize_sidecar.core.objects import ObjectKind, WriteHeaders, write_headers
from resize_sidecar.core.settings import Settings

SETTINGS = Settings(cache_control="public, max-age=60", originals_cache_control="private, max-age=5")


@pytest.mark.parametrize(
    ("kind", "content_type", "expected"),
    [
        pytest.param("derivative", "image/webp", ("image/webp", "public, max-age=60"), id="derivative"),
        pytest.param("original", "image/heic", ("image/heic", "private, max-age=5"), id="original"),
        pytest.param("incoming", "image/png", ("image/png", "no-cache"), id="incoming"),
        pytest.param("manifest", None, ("application/json", "no-cache"), id="manifest"),
        pytest.param("readiness_probe", None, ("text/plain", "no-store"), id="readiness probe"),
        pytest.param("check_object", None, ("application/octet-stream", "no-store"), id="check object"),
        pytest.param("faces", None, ("application/json", "no-store"), id="faces"),
    ],
)
def test_each_kind_of_object_is_written_with_its_headers(
    kind: ObjectKind, content_type: str | None, expected: tuple[str, str]
) -> None:
    assert write_headers(kind, SETTINGS, content_type) == WriteHeaders(*expected)


def test_the_cache_control_of_derivatives_and_originals_defaults_to_the_contract() -> None:
    assert write_headers("derivative", Settings(), "image/jpeg").cache_control == "public, max-age=31536000, immutable"
    assert write_headers("original", Settings(), "image/jpeg").cache_control == "no-cache"


@pytest.mark.parametrize(
    ("kind", "content_type"),
    [
        pytest.param("derivative", None, id="an image without its type"),
        pytest.param("original", None, id="an original without its type"),
        pytest.param("manifest", "text/html", id="a fixed type given another"),
    ],
)
def test_a_content_type_is_given_exactly_for_images(kind: ObjectKind, content_type: str | None) -> None:
    with pytest.raises(ValueError, match=kind):
        write_headers(kind, SETTINGS, content_type)
