"""What a client sees through real nginx and gunicorn, over moto's S3 server and local storage: a derivative's ETag
on its first (made) answer and on later hits, and the API's JSON for an upload nginx refuses as too large."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import pytest

from tests.conftest import photo
from tests.servers import Stack, media_stack

pytestmark = pytest.mark.e2e

API_SECRET = "answers-api-secret-0123456789"
MAX_SOURCE_BYTES = 300_000


@pytest.fixture(scope="module", params=["local", "s3"])
def stack(
    request: pytest.FixtureRequest, moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    env = {
        "RESIZE_SIDECAR_API_SECRET": API_SECRET,
        "RESIZE_SIDECAR_MAX_SOURCE_BYTES": str(MAX_SOURCE_BYTES),
    }
    with media_stack(request.param, moto_endpoint, tmp_path_factory.mktemp("logs"), env) as started:
        yield started


def test_a_derivative_answers_one_etag_made_and_hit_and_a_conditional_get_is_304(stack: Stack) -> None:
    if stack.mode == "local":
        pytest.skip("nginx's ETag of a local file is its mtime and size: the test below")
    stack.storage.put("etag/cat.jpg", photo(900, 600), "image/jpeg", "no-cache")
    url = stack.url("etag/cat.jpg", "300x200-fill", "webp")
    status, made, body = stack.get(url)
    assert (status, made["x-derivative"]) == (200, "created")
    assert made["etag"] == f'"{hashlib.md5(body).hexdigest()}"'
    reached = stack.sidecar_requests()
    status, hit, again = stack.get(url)
    assert (status, again, hit["etag"]) == (200, body, made["etag"])
    status, revalidated, empty = stack.get_with("GET", url, b"", {"If-None-Match": made["etag"]})
    assert (status, empty) == (304, b"")
    assert revalidated["etag"] == made["etag"]
    assert stack.sidecar_requests() == reached


def test_on_local_storage_revalidating_the_made_answer_gets_the_bytes_once_more_then_304(stack: Stack) -> None:
    if stack.mode != "local":
        pytest.skip("S3's ETag is the sidecar's: the test above")
    stack.storage.put("etag/dog.jpg", photo(640, 480), "image/jpeg", "no-cache")
    url = stack.url("etag/dog.jpg", "200x", "jpg")
    status, made, body = stack.get(url)
    assert (status, made["x-derivative"]) == (200, "created")
    assert made["etag"] == f'"{hashlib.md5(body).hexdigest()}"'
    status, hit, again = stack.get_with("GET", url, b"", {"If-None-Match": made["etag"]})
    assert (status, again) == (200, body)
    assert "x-derivative" not in hit and hit["etag"] != made["etag"]
    status, _, empty = stack.get_with("GET", url, b"", {"If-None-Match": hit["etag"]})
    assert (status, empty) == (304, b"")


@pytest.mark.parametrize("content_type", ["image/jpeg", "multipart/form-data; boundary=x"])
def test_an_upload_over_nginxs_cap_answers_the_apis_json_error(stack: Stack, content_type: str) -> None:
    headers = {"Authorization": f"Bearer {API_SECRET}", "Content-Type": content_type}
    reached = stack.sidecar_requests()
    status, answer, body = stack.get_with("POST", "/api/images", b"\0" * (MAX_SOURCE_BYTES + 70_000), headers)
    assert status == 413
    assert answer["content-type"] == "application/json"
    assert answer["cache-control"] == "no-store"
    limit = MAX_SOURCE_BYTES + 65536
    assert json.loads(body) == {
        "error": "Payload Too Large",
        "detail": f"the body has more than {limit} bytes; uploads are at most {MAX_SOURCE_BYTES}",
    }
    assert stack.sidecar_requests() == reached
    assert stack.storage.list("incoming/") == []
