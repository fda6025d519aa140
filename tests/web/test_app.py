"""The sidecar app in-process (webob), over real local storage: statuses, headers, storage policy."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from webob import Request

from resize_sidecar.core.errors import SettingsError, StorageError
from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import encode_key, sign
from resize_sidecar.media.local import LocalStorage
from resize_sidecar.web import metrics
from resize_sidecar.web.app import SidecarApp, make_app
from tests.support.contract import refusal
from tests.support.images import photo
from tests.support.in_process import CountingStorage, counter, get, url
from tests.support.servers import SECRET


@pytest.fixture
def sidecar(make_settings: Callable[..., Settings], storage: CountingStorage) -> SidecarApp:
    settings = make_settings(presets={"thumb": "120x120-fill"}, max_output_dimension=2000)
    return make_app(settings, storage=storage)  # type: ignore[arg-type]


def test_a_miss_is_made_stored_and_answered_with_cache_headers(sidecar: SidecarApp, storage: CountingStorage) -> None:
    storage.inner.put("photos/cat.jpg", photo(600, 400), "image/jpeg", "")
    response = get(sidecar, url("photos/cat.jpg", "300x", "png"))
    assert response.status_int == 200
    assert response.content_type == "image/png"
    assert response.cache_control.max_age == 31536000
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Derivative"] == "created"
    assert response.etag
    stored = storage.inner.get("_r/photos/cat.jpg/300x.png")
    assert stored == response.body


def test_an_existing_derivative_is_answered_from_storage_without_a_transform(
    sidecar: SidecarApp, storage: CountingStorage
) -> None:
    storage.inner.put("a.jpg", photo(300, 200), "image/jpeg", "")
    first = get(sidecar, url("a.jpg", "thumb", "jpg"))
    transforms = counter(metrics.TRANSFORMS, "jpg")
    existing = counter(metrics.EXISTING)
    second = get(sidecar, url("a.jpg", "thumb", "jpg"))
    assert (second.status_int, second.body) == (200, first.body)
    assert second.headers["X-Derivative"] == "existing"
    assert counter(metrics.TRANSFORMS, "jpg") == transforms
    assert counter(metrics.EXISTING) == existing + 1


def test_a_conditional_request_for_the_same_bytes_is_304(sidecar: SidecarApp, storage: CountingStorage) -> None:
    storage.inner.put("b.jpg", photo(300, 200), "image/jpeg", "")
    path = url("b.jpg", "50x", "webp")
    etag = get(sidecar, path).etag
    assert get(sidecar, path, HTTP_IF_NONE_MATCH=f'"{etag}"').status_int == 304


def test_a_failed_write_still_answers_the_image_and_is_counted(sidecar: SidecarApp, storage: CountingStorage) -> None:
    storage.inner.put("c.jpg", photo(300, 200), "image/jpeg", "")
    storage.fail_writes = True
    failed = counter(metrics.STORE_FAILED)
    response = get(sidecar, url("c.jpg", "100x", "jpg"))
    assert response.status_int == 200
    assert response.content_type == "image/jpeg"
    assert counter(metrics.STORE_FAILED) == failed + 1
    assert storage.inner.list("_r/") == []


def test_a_failing_storage_read_is_502_without_internal_details(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    class BrokenStorage(CountingStorage):
        def get(self, key: str, max_bytes: int | None = None) -> bytes | None:
            raise StorageError("connection refused by 10.1.2.3:9000")

    broken = make_app(make_settings(), storage=BrokenStorage(LocalStorage(tmp_path)))  # type: ignore[arg-type]
    response = get(broken, url("d.jpg", "100x", "jpg"))
    assert response.status_int == 502
    assert "10.1.2.3" not in response.text
    assert response.cache_control.no_store


@pytest.mark.parametrize(
    ("path", "status"),
    [
        pytest.param("/media/_r/a.jpg/100x-" + "0" * 32 + ".jpg", 403, id="wrong signature"),
        pytest.param("/media/_r/a.jpg/100x-" + "0" * 31 + ".jpg", 403, id="short signature"),
        pytest.param("/media/_r/a.jpg/100x-" + "0" * 33 + ".jpg", 403, id="long signature"),
        pytest.param("/media/_r/a.jpg/100x-" + "A" * 32 + ".jpg", 403, id="upper-case signature"),
        pytest.param("/media/_r/a.jpg/100x-" + "g" * 32 + ".jpg", 403, id="non-hex signature"),
        pytest.param("/media/_r/a.jpg/100x.jpg", 400, id="no signature"),
        pytest.param("/media/_r/a.jpg/100x-" + "0" * 32 + ".tiff", 400, id="unknown format"),
        pytest.param("/media/_r/../etc/passwd/100x-" + "0" * 32 + ".jpg", 400, id="dot-dot"),
        pytest.param("/media/_r/a%2Fb.jpg/100x-" + "0" * 32 + ".jpg", 400, id="encoded slash"),
        pytest.param("/media/_r/caf%c3%a9.jpg/100x-" + "0" * 32 + ".jpg", 400, id="lower-case percent hex"),
        pytest.param("/media/_r/%ff.jpg/100x-" + "0" * 32 + ".jpg", 400, id="not utf-8"),
        pytest.param("/media/_r/_r/a.jpg/100x-" + "0" * 32 + ".jpg", 400, id="derived prefix in key"),
        pytest.param("/media/photos/a.jpg", 404, id="original"),
        pytest.param("/elsewhere", 404, id="unknown route"),
    ],
)
def test_refused_requests_get_their_status_and_touch_no_storage(
    sidecar: SidecarApp, storage: CountingStorage, path: str, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="resize_sidecar.requests"):
        response = get(sidecar, path)
    assert response.status_int == status, response.text
    assert response.cache_control.no_store
    assert response.content_type == "text/plain"
    assert storage.calls == []
    # The request log reads the path again: a refusal must be logged as one, whatever the path's shape.
    [line] = [json.loads(record.getMessage()) for record in caplog.records if record.name == "resize_sidecar.requests"]
    assert (line["status"], line["path"]) == (status, path)
    assert line["reason"] == {400: "malformed", 403: "signature", 404: "not_found"}[status]


def test_a_signed_size_over_the_output_cap_is_400_before_any_storage_call(
    sidecar: SidecarApp, storage: CountingStorage
) -> None:
    response = get(sidecar, url("e.jpg", "2001x", "jpg"))
    assert response.status_int == 400
    assert "2000" in response.text
    assert storage.calls == []


def test_a_correctly_signed_non_canonical_spec_is_400_and_names_the_canonical_one(
    sidecar: SidecarApp, storage: CountingStorage
) -> None:
    signature = sign("f.jpg", "100x100-c", "jpg", SECRET)
    response = get(sidecar, f"/media/_r/f.jpg/100x100-c-{signature}.jpg")
    assert response.status_int == 400
    assert "'100x100'" in response.text
    assert storage.calls == []


def test_an_unknown_preset_is_400(sidecar: SidecarApp) -> None:
    assert get(sidecar, url("g.jpg", "nosuchpreset", "jpg")).status_int == 400


def test_missing_original_is_404(sidecar: SidecarApp, storage: CountingStorage) -> None:
    response = get(sidecar, url("missing/h.jpg", "100x", "jpg"))
    assert response.status_int == 404
    assert storage.inner.list("_r/") == []


def test_other_methods_are_405_with_allow(sidecar: SidecarApp) -> None:
    response = get(sidecar, url("i.jpg", "100x", "jpg"), method="POST")
    assert response.status_int == 405
    assert response.allow == ("GET", "HEAD")


def test_a_utf8_key_arriving_as_gunicorn_hands_it_is_found(sidecar: SidecarApp, storage: CountingStorage) -> None:
    key = "été/café 1+1.jpg"
    storage.inner.put(key, photo(200, 100), "image/jpeg", "")
    path = url(key, "50x", "jpg")
    # PEP 3333: PATH_INFO holds the decoded bytes as latin-1; RAW_URI keeps the encoded form.
    request = Request.blank("/")
    request.environ.update(PATH_INFO=unquote_to_bytes(path).decode("latin-1"), RAW_URI=path)
    assert request.get_response(sidecar).status_int == 200


def test_without_a_raw_uri_the_decoded_path_is_used(sidecar: SidecarApp, storage: CountingStorage) -> None:
    storage.inner.put("j k.jpg", photo(200, 100), "image/jpeg", "")
    response = Request.blank(url("j k.jpg", "50x", "jpg")).get_response(sidecar)
    assert response.status_int == 200


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tail=st.text(min_size=0, max_size=80))
def test_hostile_paths_are_refused_as_the_contract_says_without_touching_storage(
    sidecar: SidecarApp, storage: CountingStorage, tail: str
) -> None:
    storage.calls.clear()
    path = "/media/_r/" + encode_key(tail.replace("\x00", "")) if tail else "/media/_r/"
    response = get(sidecar, path)
    assert (response.status_int, response.body) == refusal(path)
    assert storage.calls == []


def test_health_readiness_and_metrics(sidecar: SidecarApp) -> None:
    assert get(sidecar, "/healthz").status_int == 200
    assert get(sidecar, "/readyz").status_int == 200
    metrics = get(sidecar, "/metrics")
    assert metrics.status_int == 200
    assert b"resize_sidecar_requests_total" in metrics.body


def test_readiness_is_503_when_storage_does_not_answer(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    class Unreachable(CountingStorage):
        def check(self) -> None:
            raise StorageError("unreachable")

    app = make_app(make_settings(), storage=Unreachable(LocalStorage(tmp_path)))  # type: ignore[arg-type]
    assert get(app, "/readyz").status_int == 503


def test_the_app_refuses_to_start_without_a_secret(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(SettingsError, match="RESIZE_SIDECAR_SECRETS"):
        make_app(make_settings(secrets=()))
