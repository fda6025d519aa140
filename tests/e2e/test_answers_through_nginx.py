"""What a client sees through real nginx and gunicorn, over moto's S3 server and local storage: a derivative's ETag
on its first (made) answer and on later hits, and the API's JSON for an upload nginx refuses as too large."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from tests.support.api import AUTH, MAX_SOURCE_BYTES
from tests.support.faults import FaultProxy
from tests.support.images import photo
from tests.support.servers import Stack, media_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(api_stack: Stack) -> Stack:
    """The media API's stack: real nginx and gunicorn over local storage and over moto's S3, with a small upload cap."""
    return api_stack


def made(stack: Stack, key: str, spec: str, fmt: str) -> tuple[str, str, bytes]:
    """A derivative's URL, and the ETag and bytes of the sidecar's answer that made it."""
    stack.storage.put(key, photo(900, 600), "image/jpeg", "no-cache")
    url = stack.url(key, spec, fmt)
    status, headers, body = stack.get(url)
    assert (status, headers["x-derivative"]) == (200, "created")
    assert headers["etag"] == f'"{hashlib.md5(body).hexdigest()}"'
    return url, headers["etag"], body


def test_a_derivative_answers_one_etag_made_and_hit_and_a_conditional_get_is_304(stack: Stack) -> None:
    if stack.mode == "local":
        pytest.skip("nginx's ETag of a local file is its mtime and size: the test below")
    url, etag, body = made(stack, "etag/cat.jpg", "300x200-fill", "webp")
    reached = stack.sidecar_requests()
    status, hit, again = stack.get(url)
    assert (status, again, hit["etag"]) == (200, body, etag)
    status, revalidated, empty = stack.get_with("GET", url, b"", {"If-None-Match": etag})
    assert (status, empty, revalidated["etag"]) == (304, b"", etag)
    assert stack.sidecar_requests() == reached


def test_nginxs_cache_revalidates_the_made_answer_with_s3_at_its_first_check(
    moto_endpoint: str, tmp_path: Path
) -> None:
    """The cached entry of the sidecar's answer holds S3's ETag: its first check with S3 is a 304, not the object."""
    env = {"RESIZE_SIDECAR_NGINX_CACHE_SIZE": "16m", "RESIZE_SIDECAR_NGINX_CACHE_VALID": "1s"}
    with FaultProxy(moto_endpoint) as s3, media_stack("s3", s3.url, tmp_path, env) as cached:
        url, etag, body = made(cached, "etag/cached.jpg", "150x", "jpg")
        stored = f"/{cached.settings.s3_bucket}/{cached.settings.derived_prefix}etag/cached.jpg/150x.jpg"
        looks = s3.statuses("GET", stored)
        assert looks == [404, 404]  # nginx's, then the sidecar's before it made the derivative
        time.sleep(2.2)  # nginx counts validity in whole seconds: a 1 s entry expires 1 to 2 s after it was stored
        status, headers, again = cached.get(url)
        assert (status, again, headers["etag"], headers["x-cache-status"]) == (200, body, etag, "STALE")
        deadline = time.monotonic() + 10
        while len(s3.statuses("GET", stored)) == len(looks) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert s3.statuses("GET", stored) == [*looks, 304]
        status, headers, again = cached.get(url)
        assert (status, again, headers["etag"], headers["x-cache-status"]) == (200, body, etag, "HIT")


def test_on_local_storage_revalidating_the_made_answer_gets_the_bytes_once_more_then_304(stack: Stack) -> None:
    if stack.mode != "local":
        pytest.skip("S3's ETag is the sidecar's: the test above")
    url, etag, body = made(stack, "etag/dog.jpg", "200x", "jpg")
    status, hit, again = stack.get_with("GET", url, b"", {"If-None-Match": etag})
    assert (status, again) == (200, body)
    assert "x-derivative" not in hit and hit["etag"] != etag
    status, _, empty = stack.get_with("GET", url, b"", {"If-None-Match": hit["etag"]})
    assert (status, empty) == (304, b"")


@pytest.mark.parametrize("content_type", ["image/jpeg", "multipart/form-data; boundary=x"])
def test_an_upload_over_nginxs_cap_answers_the_apis_json_error(stack: Stack, content_type: str) -> None:
    headers = {**AUTH, "Content-Type": content_type}
    reached = stack.sidecar_requests()
    status, answer, body = stack.get_with("POST", "/api/images", b"\0" * (MAX_SOURCE_BYTES + 70_000), headers)
    assert status == 413
    assert answer["content-type"] == "application/json"
    assert answer["cache-control"] == "no-store"
    limit = MAX_SOURCE_BYTES + 65536
    assert json.loads(body) == {
        "error": "Payload Too Large",
        "detail": f"the body has more than {limit} bytes; uploads are at most {MAX_SOURCE_BYTES} (MAX_SOURCE_BYTES)",
    }
    assert stack.sidecar_requests() == reached
    assert stack.storage.list("incoming/") == []
