"""What the operator's commands store on S3, object by object (``resize-sidecar upload`` and ``regenerate`` run
in-process against a bucket on moto's S3 server over HTTP): each original with the type of the file it is, HEIC,
TIFF and BMP included, each derivative with its format's type, each with the Cache-Control of its kind.

Both Cache-Control settings are set to values of their own here, so that a write that took another kind's policy
(or the default) shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from resize_sidecar.core.signing import format_path
from tests.support.commands import Run, s3_env
from tests.support.images import photo
from tests.support.keys import stored_key
from tests.support.pictures import bmp, heic, picture, tiff, to_pyvips
from tests.support.servers import SECRET

DERIVATIVES = "public, max-age=4321, immutable"
ORIGINALS = "public, max-age=60"


def settings_env(moto_endpoint: str, s3_bucket: str) -> dict[str, str]:
    return s3_env(
        moto_endpoint,
        s3_bucket,
        RESIZE_SIDECAR_CACHE_CONTROL=DERIVATIVES,
        RESIZE_SIDECAR_ORIGINALS_CACHE_CONTROL=ORIGINALS,
    )


def stored_headers(s3_client: Any, bucket: str, key: str) -> tuple[str, str]:
    head = s3_client.head_object(Bucket=bucket, Key=key)
    return head["ContentType"], head["CacheControl"]


def test_upload_stores_each_original_with_the_type_of_its_file_and_the_originals_cache_control(
    cli: Run, moto_endpoint: str, s3_bucket: str, s3_client: Any, tmp_path: Path
) -> None:
    files = {
        "a.jpg": (photo(64, 48), "image/jpeg"),
        "b.png": (photo(64, 48, "png"), "image/png"),
        "c.webp": (photo(64, 48, "webp"), "image/webp"),
        "d.gif": (photo(64, 48, "gif"), "image/gif"),
        "e.avif": (photo(64, 48, "avif"), "image/avif"),
        "f.heic": (heic(picture(64, 48)), "image/heic"),
        "g.tiff": (tiff(to_pyvips(picture(64, 48))), "image/tiff"),
        "h.bmp": (bmp(picture(64, 48)), "image/bmp"),
    }
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)

    result = cli("upload", str(folder), "--dest", "up", "--json", env=settings_env(moto_endpoint, s3_bucket))

    assert result.code == 0, result.err
    assert result.json()["counts"] == {"uploaded": len(files)}
    stored = {name: stored_headers(s3_client, s3_bucket, f"up/{name}") for name in files}
    assert stored == {name: (content_type, ORIGINALS) for name, (_, content_type) in files.items()}
    manifest = ".resize-sidecar/upload/up/manifest.json"
    assert stored_headers(s3_client, s3_bucket, manifest) == ("application/json", "no-cache")


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [("jpg", "image/jpeg"), ("png", "image/png"), ("webp", "image/webp"), ("avif", "image/avif"), ("gif", "image/gif")],
)
def test_regenerate_stores_each_derivative_with_its_formats_type_and_the_derivatives_cache_control(
    cli: Run, moto_endpoint: str, s3_bucket: str, s3_client: Any, fmt: str, content_type: str
) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="photos/cat.jpg", Body=photo(400, 300), ContentType="image/jpeg")
    key = stored_key(format_path("photos/cat.jpg", "200x", fmt, SECRET))
    # An outdated derivative, stored with headers no write of the program uses.
    s3_client.put_object(Bucket=s3_bucket, Key=key, Body=b"old", ContentType="text/plain", CacheControl="no-store")

    result = cli("regenerate", "--json", env=settings_env(moto_endpoint, s3_bucket))

    assert result.code == 0, result.err
    assert result.json()["counts"] == {"rebuilt": 1}
    assert stored_headers(s3_client, s3_bucket, key) == (content_type, DERIVATIVES)
