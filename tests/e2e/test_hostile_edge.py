"""What a browser gets from the edge for originals and bookkeeping it should never run or see (SERVE_ORIGINALS).

Originals reach nginx through ``resize-sidecar upload`` (run as a subprocess, as operators run it) or are planted
in storage by hand. Local originals are typed by nginx from their extension, S3 originals from the type stored with
them: either way only an image type comes out, anything else is a download, and every answer says ``nosniff``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tests.support.images import photo
from tests.support.pictures import bmp, heic, picture, tiff, to_pyvips
from tests.support.servers import REPO, Stack, media_stack, raw_get

pytestmark = pytest.mark.e2e

#: A valid JPEG with a page after its end: a browser that took it for HTML would run the script.
POLYGLOT = photo(32, 32) + b"<html><script>document.title='ran'</script></html>"


@pytest.fixture(params=["local", "s3"])
def stack(request: pytest.FixtureRequest, moto_endpoint: str, tmp_path: Path) -> Iterator[Stack]:
    with media_stack(request.param, moto_endpoint, tmp_path, {"RESIZE_SIDECAR_SERVE_ORIGINALS": "true"}) as stack:
        if stack.mode == "s3":
            # Originals public as well (the suite's buckets expose only derivatives), so anonymous nginx can read them.
            bucket = stack.settings.s3_bucket
            policy = {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": "*",
                        "Action": "s3:GetObject",
                        "Resource": f"arn:aws:s3:::{bucket}/*",
                    }
                ],
            }
            client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
            client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
        yield stack


def upload(stack: Stack, folder: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "resize_sidecar.ops.cli", "upload", str(folder), "--dest", "people/"]
    return subprocess.run(command, env=stack.sidecar.env, cwd=REPO, capture_output=True, text=True, timeout=60)


def test_an_image_named_as_a_page_is_refused_by_upload_and_served_only_as_a_download_when_planted(
    stack: Stack, tmp_path: Path
) -> None:
    folder = tmp_path / "originals"
    folder.mkdir()
    (folder / "profile.html").write_bytes(POLYGLOT)
    (folder / "portrait.jpg").write_bytes(POLYGLOT)

    result = upload(stack, folder)

    assert result.returncode == 1
    assert "failed profile.html: it is image/jpeg, and its name must end in .jpg, .jpeg to be served as one" in (
        " ".join(result.stderr.split())
    )
    assert stack.storage.get("people/profile.html") is None
    status, headers, body = stack.get("/media/people/portrait.jpg")
    assert (status, headers["content-type"], headers["x-content-type-options"]) == (200, "image/jpeg", "nosniff")
    assert body == POLYGLOT

    # Put there some other way (by hand, another tool): still never a page.
    stack.storage.put("people/profile.html", POLYGLOT, "text/html", "no-cache")
    status, headers, body = stack.get("/media/people/profile.html")
    assert (status, body) == (200, POLYGLOT)
    assert (headers["content-type"], headers["x-content-type-options"]) == ("application/octet-stream", "nosniff")


def test_each_kind_of_original_the_upload_stores_is_served_with_its_type_and_the_others_as_downloads(
    stack: Stack, tmp_path: Path
) -> None:
    """Browsers show every output format and HEIC; TIFF and BMP they do not, so those come as downloads."""
    folder = tmp_path / "originals"
    folder.mkdir()
    files = {
        "a.jpg": (photo(64, 48), "image/jpeg"),
        "b.png": (photo(64, 48, "png"), "image/png"),
        "c.webp": (photo(64, 48, "webp"), "image/webp"),
        "d.gif": (photo(64, 48, "gif"), "image/gif"),
        "e.avif": (photo(64, 48, "avif"), "image/avif"),
        "f.heic": (heic(picture(64, 48)), "image/heic"),
        "g.tiff": (tiff(to_pyvips(picture(64, 48))), "application/octet-stream"),
        "h.bmp": (bmp(picture(64, 48)), "application/octet-stream"),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)

    assert upload(stack, folder).returncode == 0

    for name, (data, content_type) in files.items():
        status, headers, body = stack.get(f"/media/people/{name}")
        assert (status, headers["content-type"], headers["x-content-type-options"], body) == (
            200,
            content_type,
            "nosniff",
            data,
        ), name


def test_the_upload_manifest_is_kept_where_nginx_never_serves_it(stack: Stack, tmp_path: Path) -> None:
    folder = tmp_path / "originals"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(photo(64, 48))
    assert upload(stack, folder).returncode == 0

    manifest = stack.storage.get(".resize-sidecar/upload/people/manifest.json")
    assert manifest is not None and json.loads(manifest)["files"][0]["key"] == "people/cat.jpg"
    for path in ("/media/.resize-sidecar/upload/people/manifest.json", "/media/people/manifest.json"):
        status, headers, body = stack.get(path)
        assert (status, body, headers["cache-control"]) == (404, b"Not Found\n", "no-store"), path
        assert headers["x-content-type-options"] == "nosniff"


def test_what_local_storage_keeps_beside_a_derivative_is_never_served(stack: Stack) -> None:
    """Local storage records what made a derivative in a hidden file beside it; nginx serves a derivative only at the
    storage key a verified URL names, never that file, whoever learns its name."""
    if stack.mode != "local":
        pytest.skip("S3 keeps metadata with its object: nothing lies beside it")
    key = "people/cat.jpg"
    stack.storage.put(key, photo(300, 200), "image/jpeg", "no-cache")
    url = stack.url(key, "100x", "webp")
    assert stack.get(url)[0] == 200
    folder = url.rpartition("/")[0]
    assert (Path(stack.settings.local_root) / "_r" / key / ".resize-sidecar-meta-100x.webp").is_file()  # it is there
    refused = {
        f"{folder}/.resize-sidecar-meta-100x.webp": (403, b"Forbidden: signature is not 32 lower-case hex digits\n"),
        f"{folder}/.resize-sidecar-meta-100x-{'0' * 32}.webp": (403, b"Forbidden: signature does not match\n"),
        "/media/people/.resize-sidecar-meta-cat.jpg": (404, b"Not Found\n"),
    }
    for path, answer in refused.items():
        status, headers, body = stack.get(path)
        assert ((status, body), headers["cache-control"]) == (answer, "no-store"), path


def test_every_media_answer_says_nosniff(stack: Stack) -> None:
    key = "people/dog.jpg"
    stack.storage.put(key, photo(300, 200), "image/jpeg", "no-cache")
    url = stack.url(key, "100x", "webp")
    for path in (url, url, "/media/people/dog.jpg", "/media/people/none.jpg", stack.url("none.jpg", "100x", "jpg")):
        status, headers, _ = stack.get(path)
        assert headers["x-content-type-options"] == "nosniff", (path, status)
    assert "x-derivative" not in stack.get(url)[1]  # the second look at the derivative was a hit: nginx alone
    status, headers, body = stack.get("/media/people/none.jpg")
    assert (status, body, headers["cache-control"]) == (404, b"Not Found\n", "no-store")


def test_a_range_past_the_end_of_a_made_derivative_is_416_and_never_cached(stack: Stack) -> None:
    """Straight from the sidecar (a CDN in front adds no no-store map): its 416 is an error, not the immutable
    image."""
    key = "people/range.jpg"
    stack.storage.put(key, photo(300, 200), "image/jpeg", "no-cache")
    url = stack.url(key, "120x", "jpg")
    status, headers, _ = raw_get(stack.sidecar.url, url, headers={"Range": "bytes=100000000-"})
    assert (status, headers["cache-control"]) == (416, "no-store")
    whole = raw_get(stack.sidecar.url, url)[2]
    status, headers, body = raw_get(stack.sidecar.url, url, headers={"Range": "bytes=0-3"})
    assert (status, body, headers["cache-control"]) == (206, whole[:4], stack.settings.cache_control)
