"""Error answers: each error's own status, body and headers, rendered in one place and counted by their reason for
every route, the API's included; and an upload's presets made under the miss path's own lock."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from webob import Request, Response

from resize_sidecar.core.errors import (
    BadRequestError,
    MalformedPathError,
    MethodNotAllowedError,
    OverloadedError,
    SidecarError,
    StorageError,
    UnauthorizedError,
)
from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import DerivativePath, sign
from resize_sidecar.media import derive
from resize_sidecar.media.local import LocalStorage
from resize_sidecar.web import metrics
from resize_sidecar.web.answers import error_response
from resize_sidecar.web.app import SidecarApp, make_app
from tests.support.api import API_SECRET
from tests.support.images import photo
from tests.support.in_process import counter
from tests.support.servers import SECRET


@pytest.fixture
def make_api(make_settings: Callable[..., Settings], storage: LocalStorage) -> Callable[..., SidecarApp]:
    def make(**overrides: Any) -> SidecarApp:
        values: dict[str, Any] = {"api_secret": (API_SECRET,), "presets": {"thumb": "120x120-fill"}}
        return make_app(make_settings(**(values | overrides)), storage=storage)

    return make


def call(app: SidecarApp, method: str, path: str, token: str = API_SECRET, body: bytes | None = None) -> Response:
    request = Request.blank(path, method=method)
    request.authorization = ("Bearer", token)
    if body is not None:
        request.body = body
        request.content_type = "application/octet-stream"
    return request.get_response(app)


def stored_keys(storage: LocalStorage) -> list[str]:
    return sorted(item.key for item in storage.list(""))


@pytest.mark.parametrize(
    ("error", "headers"),
    [
        pytest.param(OverloadedError("busy"), {"Retry-After": "2"}, id="temporary refusal"),
        pytest.param(MethodNotAllowedError("PUT is not allowed here"), {"Allow": "GET, HEAD"}, id="read-only route"),
        pytest.param(
            MethodNotAllowedError("PUT is not allowed here", ("GET", "POST", "HEAD")),
            {"Allow": "GET, POST, HEAD"},
            id="route of its own methods",
        ),
        pytest.param(
            UnauthorizedError("no token"), {"WWW-Authenticate": 'Bearer realm="resize-sidecar"'}, id="challenge"
        ),
        pytest.param(MalformedPathError("bad key"), {}, id="none"),
        pytest.param(BadRequestError("limit is not a number"), {}, id="bad request"),
    ],
)
def test_an_error_answer_carries_the_headers_the_error_names(error: SidecarError, headers: dict[str, str]) -> None:
    assert error.headers() == headers
    for body in ("json", "text"):
        response = error_response(error, body)
        body_headers = ("Content-Type", "Content-Length", "Cache-Control")
        assert {name: value for name, value in response.headerlist if name not in body_headers} == headers


def test_a_refusal_is_answered_in_the_routes_words_and_counted_under_its_reason() -> None:
    refused = counter(metrics.REJECTIONS, "overloaded")
    as_json = error_response(OverloadedError("every slot is busy"), "json")
    as_text = error_response(OverloadedError("every slot is busy"), "text")
    assert (as_json.status_int, as_json.json) == (503, {"error": "Service Unavailable", "detail": "every slot is busy"})
    assert (as_text.status_int, as_text.text) == (503, "Service Unavailable: every slot is busy\n")
    assert (as_json.content_type, as_text.content_type) == ("application/json", "text/plain")
    assert as_json.headers["Cache-Control"] == as_text.headers["Cache-Control"] == "no-store"
    assert counter(metrics.REJECTIONS, "overloaded") == refused + 2


def test_a_fault_of_ours_says_only_its_status_and_is_logged_with_its_detail(caplog: pytest.LogCaptureFixture) -> None:
    failed, storage_errors = counter(metrics.REJECTIONS, "storage"), counter(metrics.STORAGE_ERRORS)
    with caplog.at_level(logging.ERROR, logger="resize_sidecar.web.answers"):
        as_json = error_response(StorageError("bucket-name: AccessDenied"), "json")
        as_text = error_response(StorageError("bucket-name: AccessDenied"), "text")
    assert (as_json.status_int, as_json.json) == (502, {"error": "Bad Gateway"})
    assert (as_text.status_int, as_text.text) == (502, "Bad Gateway\n")
    assert [record.getMessage() for record in caplog.records] == ["502 Bad Gateway: bucket-name: AccessDenied"] * 2
    assert counter(metrics.REJECTIONS, "storage") == failed + 2
    assert counter(metrics.STORAGE_ERRORS) == storage_errors + 2


def test_a_wrong_api_token_is_logged_and_counted_with_its_reason(
    make_api: Callable[..., SidecarApp], caplog: pytest.LogCaptureFixture
) -> None:
    refused = counter(metrics.REJECTIONS, "api_secret")
    with caplog.at_level(logging.INFO, logger="resize_sidecar.requests"):
        response = call(make_api(), "GET", "/api/images", token="wrong-secret-0123456789")
    assert (response.status_int, response.json) == (
        403,
        {"error": "Forbidden", "detail": "the bearer token is not an API secret"},
    )
    [line] = [json.loads(record.getMessage()) for record in caplog.records if record.name == "resize_sidecar.requests"]
    assert (line["route"], line["status"], line["reason"]) == ("api", 403, "api_secret")
    assert counter(metrics.REJECTIONS, "api_secret") == refused + 1


def test_a_bad_query_parameter_is_a_bad_request_in_json(make_api: Callable[..., SidecarApp]) -> None:
    refused = counter(metrics.REJECTIONS, "bad_request")
    response = call(make_api(), "GET", "/api/images?limit=ten")
    assert (response.status_int, response.json) == (
        400,
        {"error": "Bad Request", "detail": "limit must be a whole number from 1 to 1000"},
    )
    assert response.headers["Cache-Control"] == "no-store"
    assert counter(metrics.REJECTIONS, "bad_request") == refused + 1


def test_an_uploads_presets_are_made_under_the_miss_paths_lock(
    make_api: Callable[..., SidecarApp], storage: LocalStorage
) -> None:
    app = make_api(upload_custom_keys=True, transform_timeout=0.5, overload_wait=0.1)
    preset = DerivativePath("incoming/a.jpg", "thumb", "jpg", sign("incoming/a.jpg", "thumb", "jpg", SECRET))
    # A miss for the same preset holds its lock for longer than anyone waits: the upload cannot make it either.
    with app.deriver.locks.flight(preset.storage_key("_r/"), 0.0):
        response = call(app, "POST", "/api/images?key=a.jpg", body=photo(300, 200))
    assert (response.status_int, response.headers["Retry-After"]) == (503, "2")
    assert response.json["detail"] == "a concurrent request for this derivative is still making it"
    assert stored_keys(storage) == []


def test_an_uploads_presets_are_made_from_the_upload_without_reading_it_again(
    make_api: Callable[..., SidecarApp], storage: LocalStorage
) -> None:
    app = make_api(upload_custom_keys=True, presets={"thumb": "120x120-fill", "wide": "400x"})
    reads = counter(derive.ORIGINAL_READS)
    response = call(app, "POST", "/api/images?key=a.jpg", body=photo(600, 400))
    assert response.status_int == 201, response.text
    assert counter(derive.ORIGINAL_READS) == reads
    thumb, wide = (
        DerivativePath("incoming/a.jpg", name, "jpg", sign("incoming/a.jpg", name, "jpg", SECRET)).storage_key("_r/")
        for name in ("thumb", "wide")
    )
    assert stored_keys(storage) == sorted(["incoming/a.jpg", thumb, wide])
    # What the upload stored is what a miss for the preset's URL answers.
    miss = Request.blank(response.json["urls"]["wide"], environ={"RAW_URI": response.json["urls"]["wide"]})
    answered = miss.get_response(app)
    assert (answered.status_int, answered.headers["X-Derivative"]) == (200, "existing")
    assert answered.body == storage.get(wide)
