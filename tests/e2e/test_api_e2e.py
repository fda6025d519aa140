"""The media API over HTTP: real gunicorn (``resize-sidecar serve``) on local storage and on moto's S3 server.

Each route once per store, every bad input with its status and nothing stored, the c2corg flow (upload, presets
in the incoming area, activate, the active derivative served by nginx without the sidecar), and schemathesis
driving the whole OpenAPI document against the running sidecar without finding a server error.
"""

from __future__ import annotations

import http.client
import io
import os
import time
import uuid
import zipfile
from types import ModuleType
from typing import Any

import pytest
import requests

from resize_sidecar.core.signing import encode_key, format_path
from tests.support.api import AUTH, MAX_SOURCE_BYTES
from tests.support.images import image_size_and_format, photo
from tests.support.keys import stored_key
from tests.support.servers import SECRET, Stack, raw_get

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(api_stack: Stack) -> Stack:
    return api_stack


def api(stack: Stack, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {**AUTH, **kwargs.pop("headers", {})}
    return requests.request(method, f"{stack.sidecar.url}/api/{path}", headers=headers, timeout=30, **kwargs)


def everything(stack: Stack) -> list[str]:
    return [item.key for item in stack.storage.list()]


def upload(stack: Stack, data: bytes) -> dict[str, Any]:
    response = api(stack, "POST", "images", data=data, headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_the_c2corg_flow_upload_activate_and_nginx_serves_the_active_derivative(stack: Stack) -> None:
    response = api(stack, "POST", "images", files={"file": ("holiday.jpg", photo(1200, 800), "image/jpeg")})
    assert response.status_code == 201, response.text
    answer = response.json()
    key, incoming = answer["key"], answer["incoming_key"]
    # The preset is made at upload time, in the incoming area, and served from there for a preview.
    assert stack.derivatives_of(incoming) == [stored_key(answer["urls"]["thumb"])]
    status, _, preview = stack.get(answer["urls"]["thumb"])
    assert status == 200 and image_size_and_format(preview) == (120, 120, "jpegload")

    activated = api(stack, "POST", f"images/{encode_key(key)}/activate")
    assert activated.status_code == 200, activated.text
    thumb = activated.json()["urls"]["thumb"]
    assert thumb == format_path(key, "thumb", "jpg", SECRET)
    assert [item for item in everything(stack) if "incoming/" in item] == []
    assert stack.derivatives_of(key) == [stored_key(thumb)]

    reached = stack.sidecar_requests()
    status, headers, body = stack.get(thumb)
    assert (status, body) == (200, preview)
    assert headers["content-type"] == "image/jpeg"
    assert stack.sidecar_requests() == reached, "nginx did not serve the activated derivative from storage"
    assert api(stack, "POST", f"images/{encode_key(key)}/activate").json()["activated"] is False


# Local storage keeps no Content-Type: nginx sets it from the extension.
@pytest.mark.parametrize("api_stack", ["s3"], indirect=True)
def test_a_stored_upload_has_the_sniffed_content_type(stack: Stack, s3_client: Any) -> None:
    answer = upload(stack, photo(200, 100, "png"))  # sent as application/octet-stream
    head = s3_client.head_object(Bucket=stack.settings.s3_bucket, Key=answer["incoming_key"])
    assert head["ContentType"] == "image/png"
    thumb = next(iter(stack.storage.list(f"_r/{answer['incoming_key']}/")))
    assert s3_client.head_object(Bucket=stack.settings.s3_bucket, Key=thumb.key)["ContentType"] == "image/png"


def raw_upload(stack: Stack, headers: dict[str, str], body: bytes = b"") -> int:
    """An upload sent byte for byte: the body may be shorter than announced (or absent)."""
    connection = http.client.HTTPConnection("127.0.0.1", stack.sidecar.port, timeout=30)
    try:
        connection.putrequest("POST", "/api/images")
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders(body)
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        pytest.param(
            ("POST", "images", {"data": b"x", "headers": {"Authorization": "Bearer wrong-secret-000000"}}),
            403,
            id="wrong secret",
        ),
        pytest.param(("POST", "images", {"data": b"x", "headers": {"Authorization": ""}}), 401, id="no secret"),
        pytest.param(
            (
                "POST",
                "images",
                {"data": b"<html><script>alert(1)</script></html>", "headers": {"Content-Type": "image/jpeg"}},
            ),
            415,
            id="html as jpeg",
        ),
        pytest.param(("POST", "images", {"file": "malformed/truncated.jpg"}), 422, id="truncated"),
        pytest.param(("POST", "images", {"file": "bombs/lottapixel.jpg"}), 413, id="pixel bomb"),
        pytest.param(("POST", "images", {"data": b"\xff" * (MAX_SOURCE_BYTES + 1)}), 413, id="body over the cap"),
        pytest.param(("POST", "images/nothing/here.jpg/activate", {}), 404, id="activate unknown"),
        pytest.param(("GET", "images/nothing/here.jpg/meta", {}), 404, id="meta unknown"),
        pytest.param(("GET", "images/nothing/here.jpg/url", {}), 404, id="url unknown"),
        pytest.param(("DELETE", "images/nothing/here.jpg", {}), 404, id="delete unknown"),
        pytest.param(("GET", "archive?keys=nothing/here.jpg", {}), 404, id="archive unknown"),
        pytest.param(("GET", "images/a/%2E%2E/%2E%2E/etc/passwd/meta", {}), 400, id="encoded traversal"),
        pytest.param(("DELETE", "images/_r/a.jpg", {}), 400, id="delete a derivative"),
        pytest.param(("POST", "images?key=../a.jpg", {"data": b"x"}), 400, id="upload key traversal"),
    ],
)
def test_bad_requests_get_their_status_and_store_nothing(
    stack: Stack, request_: tuple[str, str, dict[str, Any]], status: int, request: pytest.FixtureRequest
) -> None:
    method, path, kwargs = request_
    if "file" in kwargs:
        # Only these cases need the shared images: the others run without them.
        kwargs = {"data": (request.getfixturevalue("testdata") / kwargs["file"]).read_bytes()}
    before = everything(stack)
    response = api(stack, method, path, **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert everything(stack) == before


def test_a_body_announced_over_the_cap_is_refused_before_it_is_sent(stack: Stack) -> None:
    before = everything(stack)
    announced = {**AUTH, "Content-Type": "image/jpeg", "Content-Length": str(MAX_SOURCE_BYTES * 100)}
    assert raw_upload(stack, announced) == 413
    assert everything(stack) == before


def test_a_raw_traversal_path_is_400(stack: Stack) -> None:
    request = {"Authorization": AUTH["Authorization"]}
    connection = http.client.HTTPConnection("127.0.0.1", stack.sidecar.port, timeout=30)
    try:
        connection.request("GET", "/api/images/a/../../b.jpg/meta", headers=request)
        assert connection.getresponse().status == 400
    finally:
        connection.close()


def test_listing_meta_and_delete_over_http(stack: Stack) -> None:
    answer = upload(stack, photo(300, 200))
    key, incoming = answer["key"], answer["incoming_key"]
    listed = api(stack, "GET", "images", params={"prefix": "incoming/uploads/", "limit": 1000}).json()
    assert incoming in [item["key"] for item in listed["items"]]
    assert incoming not in [item["key"] for item in api(stack, "GET", "images").json()["items"]]

    meta = api(stack, "GET", f"images/{encode_key(incoming)}/meta").json()
    assert (meta["width"], meta["height"], meta["format"], meta["bytes"]) == (300, 200, "jpg", answer["bytes"])
    assert len(meta["blurhash"]) == 28

    deleted = api(stack, "DELETE", f"images/{encode_key(incoming)}")
    assert deleted.json() == {"key": incoming, "deleted_original": True, "deleted_derivatives": 1}
    assert not [item for item in everything(stack) if key in item]


def test_a_temporary_url_works_without_the_secret(stack: Stack) -> None:
    key = f"private/{uuid.uuid4().hex}/café.jpg"
    data = photo(64, 48)
    stack.storage.put(key, data, "image/jpeg", "no-cache")
    answer = api(stack, "GET", f"images/{encode_key(key)}/url", params={"expires": 60}).json()
    assert answer["expires"] - 60 <= time.time() <= answer["expires"]
    if stack.mode == "s3":
        # S3 answers a presigned GET itself; the sidecar is not involved.
        assert answer["url"].startswith(stack.settings.s3_endpoint_url + "/")
        assert "X-Amz-Signature=" in answer["url"] and "X-Amz-Expires=60" in answer["url"]
        fetched = requests.get(answer["url"], timeout=10)
        assert (fetched.status_code, fetched.content) == (200, data)
        return
    status, headers, body = raw_get(stack.sidecar.url, answer["url"])
    assert (status, body) == (200, data)
    assert headers["content-type"] == "image/jpeg"
    assert raw_get(stack.sidecar.url, answer["url"][:-1] + "x")[0] == 403


def test_an_archive_is_streamed_over_http(stack: Stack) -> None:
    folder = f"zip/{uuid.uuid4().hex}"
    originals = {f"{folder}/{number}.jpg": photo(200 + number, 100) for number in range(3)}
    for key, data in originals.items():
        stack.storage.put(key, data, "image/jpeg", "no-cache")
    response = api(stack, "GET", "archive", params={"match": f"{folder}/*"}, stream=True)
    assert response.status_code == 200
    assert response.headers["transfer-encoding"] == "chunked"  # no length: nothing was built before sending
    with zipfile.ZipFile(io.BytesIO(response.raw.read())) as unzipped:
        assert {name: unzipped.read(name) for name in unzipped.namelist()} == originals
    derivatives = api(stack, "GET", "archive", params={"keys": ",".join(originals), "spec": "thumb", "fmt": "webp"})
    with zipfile.ZipFile(io.BytesIO(derivatives.content)) as unzipped:
        assert sorted(unzipped.namelist()) == sorted(f"{key}.thumb.webp" for key in originals)


def schemathesis_module() -> ModuleType:
    """schemathesis, which the test extras install; a missing one fails on CI and skips elsewhere."""
    try:
        import schemathesis
    except ImportError:
        message = "schemathesis is not installed (pip install schemathesis)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return schemathesis


# One store is enough here: the routes above run on both, and this test takes a while.
@pytest.mark.parametrize("api_stack", ["s3"], indirect=True)
def test_schemathesis_finds_no_server_error_and_every_answer_matches_the_document(stack: Stack) -> None:
    schemathesis = schemathesis_module()
    from schemathesis import GenerationMode
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )

    schema = schemathesis.openapi.from_url(f"{stack.sidecar.url}/api/openapi.json")
    conforming = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    # Invalid requests only have to be refused without a 500: some are refused by gunicorn itself (414 for a
    # request line over its limit), in its own words.
    checks = {GenerationMode.POSITIVE: conforming, GenerationMode.NEGATIVE: [not_a_server_error]}
    for result in schema.get_all_operations():
        for mode, mode_checks in checks.items():
            fuzz(result.ok(), mode, mode_checks, f"{stack.sidecar.url}/api")


def fuzz(operation: Any, mode: Any, checks: list[Any], base_url: str) -> None:
    """Send requests that schemathesis makes for one operation, checking each answer."""
    from hypothesis import HealthCheck, given, settings

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def exercise(case: Any) -> None:
        case.call_and_validate(base_url=base_url, headers=AUTH, checks=checks)

    exercise()
