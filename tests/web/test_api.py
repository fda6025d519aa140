"""The media API in-process (webob, through the sidecar app) over real local storage.

Every route, and every refusal with its status and with nothing stored. The same routes over HTTP, against real
gunicorn on local storage and on moto's S3 server, are in ``test_api_e2e.py``.
"""

from __future__ import annotations

import fnmatch
import io
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from webob import Request, Response

from resize_sidecar.core.errors import MalformedPathError, StorageError
from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import encode_key, format_path, validate_key
from resize_sidecar.media import library
from resize_sidecar.media.local import LocalStorage
from resize_sidecar.web.app import SidecarApp, make_app
from tests.support import pictures
from tests.support.api import API_SECRET
from tests.support.images import photo
from tests.support.servers import SECRET

#: The client errors the API answers, and the message of each.
REFUSALS = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
}
MakeApi = Callable[..., SidecarApp]


@pytest.fixture
def make_api(make_settings: Callable[..., Settings], storage: LocalStorage) -> MakeApi:
    """The sidecar app with the API on, one preset, over ``storage``; keyword arguments override settings."""

    def make(**overrides: Any) -> SidecarApp:
        values: dict[str, Any] = {"api_secret": (API_SECRET,), "presets": {"thumb": "120x120-fill"}}
        return make_app(make_settings(**(values | overrides)), storage=storage)

    return make


@pytest.fixture
def api(make_api: MakeApi) -> SidecarApp:
    return make_api()


def call(
    app: SidecarApp,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    secret: str | None = API_SECRET,
    headers: dict[str, str] | None = None,
) -> Response:
    request = Request.blank(path, method=method, headers=headers or {})
    if secret is not None:
        request.authorization = ("Bearer", secret)
    if body is not None:
        request.body = body
        request.content_type = request.content_type or "application/octet-stream"
    return request.get_response(app)


def upload(app: SidecarApp, data: bytes, query: str = "", **kwargs: Any) -> Response:
    return call(app, "POST", f"/api/images{query}", data, **kwargs)


def uploaded(app: SidecarApp, data: bytes, query: str = "") -> dict[str, Any]:
    response = upload(app, data, query)
    assert response.status_int == 201, response.text
    answer: dict[str, Any] = response.json
    return answer


def keys(storage: LocalStorage) -> list[str]:
    return [item.key for item in storage.list()]


def image(body: bytes) -> Any:
    import pyvips

    return pyvips.Image.new_from_buffer(body, "")


def read(testdata: Path, name: str) -> bytes:
    return (testdata / name).read_bytes()


# The secret.


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/api/openapi.json", id="openapi"),
        pytest.param("GET", "/api/images", id="list"),
        pytest.param("POST", "/api/images", id="upload"),
        pytest.param("GET", "/api/files/a.jpg?expires=9999999999&sig=00", id="temporary file"),
        pytest.param("GET", "/api/nothing-here", id="unknown"),
    ],
)
def test_without_an_api_secret_setting_every_api_path_is_404(make_api: MakeApi, method: str, path: str) -> None:
    response = call(make_api(api_secret=()), method, path, b"x" if method == "POST" else None)
    assert response.status_int == 404


def test_a_request_without_a_bearer_token_is_401_with_a_challenge(api: SidecarApp, storage: LocalStorage) -> None:
    response = upload(api, photo(64, 48), secret=None)
    assert response.status_int == 401
    assert response.www_authenticate[0] == "Bearer"
    assert response.json["error"] == "Unauthorized"
    assert keys(storage) == []


@pytest.mark.parametrize("token", ["wrong-secret-0123456789", API_SECRET + "x", API_SECRET[:-1], "é" * 20])
def test_a_wrong_bearer_token_is_403_and_stores_nothing(api: SidecarApp, storage: LocalStorage, token: str) -> None:
    response = upload(
        api, photo(64, 48), headers={"Authorization": f"Bearer {token}".encode().decode("latin-1")}, secret=None
    )
    assert response.status_int == 403
    assert keys(storage) == []


def test_any_of_several_api_secrets_is_accepted(make_api: MakeApi) -> None:
    app = make_api(api_secret=("old-api-secret-0123456789", API_SECRET))
    assert call(app, "GET", "/api/images", secret="old-api-secret-0123456789").status_int == 200
    assert call(app, "GET", "/api/images").status_int == 200


def test_the_openapi_document_is_valid_public_and_lists_exactly_the_routes(api: SidecarApp) -> None:
    from openapi_spec_validator import validate

    response = call(api, "GET", "/api/openapi.json", secret=None)
    assert response.status_int == 200
    document = response.json
    validate(document)
    documented = {(path, method.upper()) for path, operations in document["paths"].items() for method in operations}
    routes = {
        "openapi": "/openapi.json",
        "files": "/files/{key}",
        "images": "/images",
        "image": "/images/{key}",
        "activate": "/images/{key}/activate",
        "meta": "/images/{key}/meta",
        "url": "/images/{key}/url",
        "archive": "/archive",
    }
    assert documented == {(routes[name], method) for name, method in api.api.handlers}


# Upload.


def test_an_upload_is_stored_under_incoming_with_its_presets_and_answered_201(
    api: SidecarApp, storage: LocalStorage
) -> None:
    response = upload(api, photo(640, 480), headers={"Content-Type": "image/png"})  # the header is not believed
    assert response.status_int == 201, response.text
    answer = response.json
    key = answer["key"]
    assert key.startswith("uploads/") and key.endswith(".jpg")
    year, month, name = key.removeprefix("uploads/").split("/")
    assert len(year) == 4 and len(month) == 2 and len(name) == len("x" * 22 + ".jpg")
    incoming = f"incoming/{key}"
    assert answer["incoming_key"] == incoming
    assert (answer["width"], answer["height"], answer["pages"], answer["format"]) == (640, 480, 1, "jpg")
    assert answer["content_type"] == "image/jpeg"
    thumb = format_path(incoming, "thumb", "jpg", SECRET)
    assert answer["urls"] == {"thumb": thumb}
    assert response.location.endswith(f"/api/images/{encode_key(incoming)}/meta")
    stored = keys(storage)
    assert stored == sorted([f"_r/{incoming}/thumb.jpg", incoming])
    assert answer["bytes"] == len(storage.get(incoming) or b"")
    derivative = call(api, "GET", thumb, secret=None)
    assert derivative.status_int == 200
    assert derivative.headers["X-Derivative"] == "existing"  # made by the upload
    assert (image(derivative.body).width, image(derivative.body).height) == (120, 120)


def test_a_multipart_upload_stores_the_file_part(api: SidecarApp, storage: LocalStorage) -> None:
    request = Request.blank(
        "/api/images",
        POST={"title": "ignored", "file": ("cat.png", photo(100, 80, "png"))},
        headers={"Authorization": f"Bearer {API_SECRET}"},
    )
    response = request.get_response(api)
    assert response.status_int == 201, response.text
    assert response.json["format"] == "png"  # the bytes decide, not the name
    assert storage.exists(response.json["incoming_key"])


def test_a_multipart_body_without_a_file_part_is_400(api: SidecarApp, storage: LocalStorage) -> None:
    request = Request.blank(
        "/api/images", POST={"other": ("a.jpg", photo(10, 10))}, headers={"Authorization": f"Bearer {API_SECRET}"}
    )
    assert request.get_response(api).status_int == 400
    assert keys(storage) == []


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script></svg>'
HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@pytest.mark.parametrize(
    ("name", "status"),
    [
        pytest.param(HTML, 415, id="html"),
        pytest.param(SVG, 415, id="svg with script"),
        pytest.param(PDF, 415, id="pdf"),
        pytest.param(b"GIF89a<?php system($_GET['c']); ?>", 422, id="gif header with php"),
        pytest.param(b"", 415, id="empty"),
        pytest.param("malformed/libtiff_segfault.tif", 422, id="corrupt tiff"),
        pytest.param("malformed/truncated.jpg", 422, id="truncated jpeg"),
        pytest.param("malformed/truncated.png", 422, id="truncated png"),
        pytest.param("malformed/truncated.gif", 422, id="truncated gif"),
        pytest.param("malformed/corrupt-header.jpg", 422, id="corrupt header"),
        pytest.param("malformed/zero_width.gif", 422, id="zero width"),
        pytest.param("bombs/lottapixel.jpg", 413, id="lottapixel"),
        pytest.param("bombs/17000x17000.avif", 413, id="17000x17000 avif"),
        pytest.param("bombs/65536-uint32-limit.png", 413, id="65536 png"),
        pytest.param("bombs/decompression_bomb.gif", 422, id="gif bomb without frames"),
    ],
)
def test_refused_uploads_get_their_status_and_store_nothing(
    api: SidecarApp, storage: LocalStorage, testdata: Path, name: bytes | str, status: int
) -> None:
    data = read(testdata, name) if isinstance(name, str) else name
    # Lying headers and names change nothing: only the bytes are read.
    response = upload(api, data, "", headers={"Content-Type": "image/jpeg"})
    assert response.status_int == status, response.text
    assert response.content_type == "application/json"
    assert response.cache_control.no_store
    assert keys(storage) == []


def test_an_animation_over_the_pixel_budget_is_413(make_api: MakeApi, storage: LocalStorage, testdata: Path) -> None:
    app = make_api(max_source_pixels=370 * 285 * 5)  # animated-loop-3.gif has 10 frames of 370x285
    assert upload(app, read(testdata, "formats/animated-loop-3.gif")).status_int == 413
    assert keys(storage) == []


class Unreadable(io.RawIOBase):
    """A request body that fails the test if it is read at all."""

    def readinto(self, buffer: Any) -> int:
        raise AssertionError("the body was read")


def test_a_body_announced_over_the_cap_is_413_before_a_byte_is_read(make_api: MakeApi, storage: LocalStorage) -> None:
    app = make_api(max_source_bytes=1000)
    request = Request.blank("/api/images", method="POST", headers={"Authorization": f"Bearer {API_SECRET}"})
    request.environ.update({"wsgi.input": Unreadable(), "CONTENT_LENGTH": "1001", "CONTENT_TYPE": "image/jpeg"})
    response = request.get_response(app)
    assert response.status_int == 413
    assert keys(storage) == []


class Endless(io.RawIOBase):
    """A chunked body without end: counts what was read."""

    def __init__(self) -> None:
        self.given = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = min(len(buffer), 4096)
        buffer[:size] = b"\xff" * size
        self.given += size
        return size


def test_a_chunked_body_over_the_cap_is_413_after_reading_barely_past_it(
    make_api: MakeApi, storage: LocalStorage
) -> None:
    cap = 100_000
    app = make_api(max_source_bytes=cap)
    body = Endless()
    request = Request.blank("/api/images", method="POST", headers={"Authorization": f"Bearer {API_SECRET}"})
    # Chunked: no Content-Length, and the server says the stream ends by itself (PEP 3333's wsgi.input_terminated).
    request.environ.update({"wsgi.input": body, "wsgi.input_terminated": True, "CONTENT_TYPE": "image/jpeg"})
    request.environ.pop("CONTENT_LENGTH", None)
    response = request.get_response(app)
    assert response.status_int == 413
    assert cap < body.given <= cap + 4096
    assert keys(storage) == []


def test_a_multipart_body_whose_file_is_over_the_cap_is_413(make_api: MakeApi, storage: LocalStorage) -> None:
    app = make_api(max_source_bytes=5000)
    request = Request.blank(
        "/api/images",
        POST={"file": ("a.png", b"\x89PNG" + b"0" * 6000)},
        headers={"Authorization": f"Bearer {API_SECRET}"},
    )
    assert request.get_response(app).status_int == 413
    assert keys(storage) == []


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        pytest.param("multipart/form-data", b"garbage", id="no boundary"),
        pytest.param("multipart/form-data; boundary=", b"--\r\n", id="empty boundary"),
        pytest.param("multipart/form-data; boundary=" + "x" * 300, b"--", id="boundary too long"),
        pytest.param("multipart/form-data; boundary=xx; charset=nope", b"--xx\r\n\r\n--xx--\r\n", id="charset"),
        pytest.param(
            "multipart/form-data; boundary=xx", b'--xx\r\nContent-Disposition: form-data; name="file"', id="cut"
        ),
    ],
)
def test_a_malformed_multipart_body_is_400(
    api: SidecarApp, storage: LocalStorage, content_type: str, body: bytes
) -> None:
    response = upload(api, body, headers={"Content-Type": content_type})
    assert response.status_int == 400, response.text
    assert keys(storage) == []


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(boundary=st.text(max_size=80), body=st.binary(max_size=300))
def test_hostile_multipart_bodies_never_cause_a_500(
    api: SidecarApp, storage: LocalStorage, boundary: str, body: bytes
) -> None:
    content_type = f"multipart/form-data; boundary={boundary}".encode("utf-8", "replace").decode("latin-1")
    response = upload(api, body, headers={"Content-Type": content_type})
    # No body of random bytes holds a part named "file": whatever its boundary, the body is a bad request.
    assert (response.status_int, response.json["error"]) == (400, "Bad Request"), response.text
    assert response.json["detail"]
    assert keys(storage) == []


def test_a_malformed_content_length_is_400(api: SidecarApp, storage: LocalStorage) -> None:
    request = Request.blank("/api/images", method="POST", headers={"Authorization": f"Bearer {API_SECRET}"})
    request.environ["CONTENT_LENGTH"] = "12abc"
    assert request.get_response(api).status_int == 400


def test_the_stored_original_keeps_camera_and_date_but_not_gps_xmp_maker_notes_or_thumbnail(
    api: SidecarApp, storage: LocalStorage, testdata: Path
) -> None:
    source = read(testdata, "exif/DSCN0010.jpg")
    assert b"WGS-84" in source
    answer = uploaded(api, source)
    stored = storage.get(answer["incoming_key"]) or b""
    assert b"WGS-84" not in stored
    fields = image(stored).get_fields()
    assert not [name for name in fields if name.startswith("exif-ifd3-") or name in ("xmp-data", "iptc-data")]
    assert "exif-ifd2-MakerNote" not in fields and "jpeg-thumbnail-data" not in fields
    meta = call(api, "GET", f"/api/images/{encode_key(answer['incoming_key'])}/meta?gps=1").json
    assert meta["exif"] == {"camera": "NIKON COOLPIX P6000", "taken_at": "2008-10-22T16:28:39"}
    assert meta["gps"] is None


def test_gps_is_kept_when_stripping_is_off_and_shown_only_when_asked_for(make_api: MakeApi, testdata: Path) -> None:
    app = make_api(strip_original_gps=False)
    answer = uploaded(app, read(testdata, "exif/DSCN0010.jpg"))
    path = f"/api/images/{encode_key(answer['incoming_key'])}/meta"
    assert "gps" not in call(app, "GET", path).json
    assert "gps" not in call(app, "GET", path + "?gps=0").json
    assert call(app, "GET", path + "?gps=1").json["gps"] == {"latitude": 43.4674483, "longitude": 11.8851267}
    assert call(app, "GET", path + "?gps=yes").status_int == 400


@pytest.mark.parametrize("orientation", [2, 3, 5, 6, 8])
def test_an_upload_is_turned_upright_by_its_exif_orientation(
    api: SidecarApp, storage: LocalStorage, testdata: Path, orientation: int
) -> None:
    answer = uploaded(api, read(testdata, f"orientation/Landscape_{orientation}.jpg"))
    stored = image(storage.get(answer["incoming_key"]) or b"")
    assert (answer["width"], answer["height"]) == (stored.width, stored.height) == (1800, 1200)
    assert stored.get("orientation") == 1


def test_without_auto_orient_the_original_keeps_its_pixels_and_its_orientation(
    make_api: MakeApi, storage: LocalStorage, testdata: Path
) -> None:
    answer = uploaded(make_api(auto_orient_original=False), read(testdata, "orientation/Landscape_6.jpg"))
    stored = image(storage.get(answer["incoming_key"]) or b"")
    assert (stored.width, stored.height, stored.get("orientation")) == (1200, 1800, 6)


def test_an_animated_gif_is_stored_with_all_its_frames(api: SidecarApp, storage: LocalStorage, testdata: Path) -> None:
    import pyvips

    answer = uploaded(api, read(testdata, "formats/animated-loop-3.gif"))
    assert (answer["format"], answer["pages"]) == ("gif", 10)
    stored = pyvips.Image.new_from_buffer(storage.get(answer["incoming_key"]) or b"", "", n=-1)
    assert stored.get_n_pages() == 10


def test_choosing_a_key_is_refused_unless_allowed(api: SidecarApp, storage: LocalStorage) -> None:
    assert upload(api, photo(64, 48), "?key=mine/cat.jpg").status_int == 400
    assert keys(storage) == []


def test_a_chosen_key_is_used_when_allowed_and_refused_when_taken(make_api: MakeApi, storage: LocalStorage) -> None:
    app = make_api(upload_custom_keys=True)
    answer = uploaded(app, photo(64, 48), "?key=mine/caf%C3%A9.jpg")
    assert (answer["key"], answer["incoming_key"]) == ("mine/café.jpg", "incoming/mine/café.jpg")
    before = keys(storage)
    assert upload(app, photo(32, 32), "?key=mine/caf%C3%A9.jpg").status_int == 409
    assert call(app, "POST", "/api/images/mine/caf%C3%A9.jpg/activate").status_int == 200
    assert upload(app, photo(32, 32), "?key=mine/caf%C3%A9.jpg").status_int == 409
    assert len(keys(storage)) == len(before)


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("a/../b.jpg", id="dot-dot"),
        pytest.param("/abs.jpg", id="absolute"),
        pytest.param("a//b.jpg", id="empty segment"),
        pytest.param("_r/a.jpg", id="derived prefix"),
        pytest.param("incoming/a.jpg", id="incoming prefix"),
        pytest.param("a\\b.jpg", id="backslash"),
        pytest.param("a%00b.jpg", id="nul"),
        pytest.param("cat.png", id="extension of another format"),
        pytest.param("cat", id="no extension"),
        pytest.param(".resize-sidecar/upload/a.jpg", id="private prefix"),
        pytest.param("a/" + "x" * 252 + ".jpg", id="a name too long for local storage"),
    ],
)
def test_a_bad_chosen_key_is_400_and_stores_nothing(make_api: MakeApi, storage: LocalStorage, key: str) -> None:
    app = make_api(upload_custom_keys=True)
    response = upload(app, photo(64, 48), f"?key={key.replace('/', '%2F')}")
    assert response.status_int == 400, response.text
    assert keys(storage) == []


def test_a_chosen_key_named_like_a_derivative_is_an_ordinary_key(make_api: MakeApi, storage: LocalStorage) -> None:
    # Derivatives live under the derived prefix, which no key may start with: a name of theirs is any key's.
    app = make_api(upload_custom_keys=True, presets={})
    assert upload(app, photo(64, 48), "?key=a%2F100x.jpg").status_int == 201
    assert activate(app, "incoming/a/100x.jpg").status_int == 200
    url = format_path("a/100x.jpg", "100x", "jpg", SECRET)
    assert call(app, "GET", url, secret=None).status_int == 200
    assert keys(storage) == ["_r/a/100x.jpg/100x.jpg", "a/100x.jpg"]


def test_an_upload_while_every_transform_slot_is_busy_is_503_with_retry_after(
    make_api: MakeApi, storage: LocalStorage, tmp_path: Path
) -> None:
    app = make_api(max_concurrent_transforms=1, overload_wait=0.0, lock_dir=str(tmp_path / "locks"))
    with app.deriver.locks.transform_slot(0.0):
        response = upload(app, photo(64, 48))
    assert response.status_int == 503
    assert response.retry_after is not None
    assert keys(storage) == []


def test_concurrent_uploads_of_the_same_file_get_distinct_keys(make_api: MakeApi, storage: LocalStorage) -> None:
    # Uploads take turns for the machine's transform slots: let every one wait for its turn.
    app = make_api(presets={}, overload_wait=10.0)
    data = photo(32, 24)
    answers: list[str] = []

    def one() -> None:
        answers.append(uploaded(app, data)["key"])

    threads = [threading.Thread(target=one) for _ in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(answers)) == 100
    assert len(keys(storage)) == 100


# Activation.


def activate(app: SidecarApp, key: str, **kwargs: Any) -> Response:
    return call(app, "POST", f"/api/images/{encode_key(key)}/activate", **kwargs)


def test_activation_moves_the_original_and_its_derivatives_to_the_final_key(
    api: SidecarApp, storage: LocalStorage
) -> None:
    answer = uploaded(api, photo(640, 480))
    key, incoming = answer["key"], answer["incoming_key"]
    original = storage.get(incoming)
    extra = format_path(incoming, "100x", "webp", SECRET)  # a derivative asked for before activation
    assert call(api, "GET", extra, secret=None).status_int == 200

    response = activate(api, key)
    assert response.status_int == 200, response.text
    active_thumb = format_path(key, "thumb", "jpg", SECRET)
    assert response.json == {"key": key, "activated": True, "moved_derivatives": 2, "urls": {"thumb": active_thumb}}
    moved = [active_thumb, format_path(key, "100x", "webp", SECRET)]
    assert keys(storage) == sorted([key, f"_r/{key}/thumb.jpg", f"_r/{key}/100x.webp"])
    assert storage.get(key) == original
    for url in moved:
        hit = call(api, "GET", url, secret=None)
        assert (hit.status_int, hit.headers["X-Derivative"]) == (200, "existing")


def test_activating_twice_is_harmless_and_an_incoming_key_is_accepted(api: SidecarApp, storage: LocalStorage) -> None:
    answer = uploaded(api, photo(64, 48))
    assert activate(api, answer["incoming_key"]).json["activated"] is True
    stored = keys(storage)
    again = activate(api, answer["key"])
    assert again.status_int == 200
    assert again.json["activated"] is False
    assert keys(storage) == stored


def test_activating_an_unknown_key_is_404(api: SidecarApp) -> None:
    assert activate(api, "uploads/2020/01/nothing.jpg").status_int == 404


class FailingOnce:
    """Local storage whose first call of one method fails, like a process that dies at that point."""

    def __init__(self, inner: LocalStorage, method: str) -> None:
        self.inner = inner
        self.method = method
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        function = getattr(self.inner, name)
        if name != self.method or self.failed:
            return function

        def fail(*args: Any, **kwargs: Any) -> Any:
            self.failed = True
            raise StorageError(f"{name} failed for the test")

        return fail


@pytest.mark.parametrize("crash_at", ["delete_prefix", "delete"])
def test_an_activation_interrupted_between_copy_and_delete_completes_when_run_again(
    make_settings: Callable[..., Settings], storage: LocalStorage, crash_at: str
) -> None:
    settings = make_settings(api_secret=(API_SECRET,), presets={"thumb": "120x120-fill"})
    answer = uploaded(make_app(settings, storage=storage), photo(320, 240))
    failing = make_app(settings, storage=FailingOnce(storage, crash_at))
    assert activate(failing, answer["key"]).status_int == 502
    assert storage.exists(answer["key"])
    response = activate(failing, answer["key"])
    assert response.status_int == 200
    assert not [key for key in keys(storage) if "incoming/" in key]
    assert len(keys(storage)) == 2  # the original and its thumb


def test_activation_does_not_replace_another_image_at_the_key(make_api: MakeApi, storage: LocalStorage) -> None:
    app = make_api(upload_custom_keys=True)
    answer = uploaded(app, photo(64, 48), "?key=taken.jpg")
    storage.put("taken.jpg", photo(10, 10), "image/jpeg", "")  # arrived by another way meanwhile
    assert activate(app, answer["key"]).status_int == 409
    assert storage.exists(answer["incoming_key"])


@pytest.mark.parametrize(
    ("key", "in_the_way"),
    [
        pytest.param("a.jpg/b.jpg", "a.jpg", id="a file where the key needs a folder"),
        pytest.param("f.jpg", "f.jpg/inside.jpg", id="a folder at the key"),
    ],
)
def test_activation_to_a_key_local_storage_cannot_hold_is_a_conflict_and_moves_nothing(
    make_api: MakeApi, storage: LocalStorage, key: str, in_the_way: str
) -> None:
    app = make_api(upload_custom_keys=True)
    answer = uploaded(app, photo(64, 48), f"?key={key}")
    storage.put(in_the_way, photo(10, 10), "image/jpeg", "")  # arrived by another way meanwhile
    before = keys(storage)
    response = activate(app, answer["key"])
    assert (response.status_int, response.json["error"]) == (409, "Conflict"), response.text
    assert repr(key.split("/")[0]) in response.json["detail"]
    # The incoming upload and its thumb stay, to be activated under another key; nothing was copied for this one.
    assert keys(storage) == before
    assert storage.exists(answer["incoming_key"])


def test_activation_with_a_wrong_secret_moves_nothing(api: SidecarApp, storage: LocalStorage) -> None:
    answer = uploaded(api, photo(64, 48))
    before = keys(storage)
    assert activate(api, answer["key"], secret="not-the-api-secret-at-all").status_int == 403
    assert keys(storage) == before


# Listing.


LISTED_ORIGINALS = ("a/1.jpg", "a/2.png", "a/3.jpg", "b/1.jpg", "incoming/c/1.jpg", "z.jpg")


@pytest.fixture
def listed_storage(storage: LocalStorage) -> LocalStorage:
    for key in LISTED_ORIGINALS:
        storage.put(key, b"x" * len(key), "image/jpeg", "")
    storage.put("_r/a/1.jpg/100x-" + "0" * 32 + ".jpg", b"derivative", "image/jpeg", "")
    return storage


def listing(app: SidecarApp, query: str = "") -> Response:
    return call(app, "GET", f"/api/images{query}")


def test_listing_pages_through_originals_only_with_a_cursor(api: SidecarApp, listed_storage: LocalStorage) -> None:
    first = listing(api, "?limit=2").json
    assert [item["key"] for item in first["items"]] == ["a/1.jpg", "a/2.png"]
    assert first["items"][0]["size"] == len("a/1.jpg")
    assert first["items"][0]["last_modified"].endswith("+00:00")
    second = listing(api, f"?limit=2&cursor={first['cursor']}").json
    assert [item["key"] for item in second["items"]] == ["a/3.jpg", "b/1.jpg"]
    third = listing(api, f"?limit=2&cursor={second['cursor']}").json
    assert [item["key"] for item in third["items"]] == ["z.jpg"]
    assert third["cursor"] is None


def test_listing_filters_by_prefix_and_glob(api: SidecarApp, listed_storage: LocalStorage) -> None:
    assert [item["key"] for item in listing(api, "?prefix=a/").json["items"]] == ["a/1.jpg", "a/2.png", "a/3.jpg"]
    assert [item["key"] for item in listing(api, "?match=*.png").json["items"]] == ["a/2.png"]
    assert [item["key"] for item in listing(api, "?match=%2A/1.jpg").json["items"]] == ["a/1.jpg", "b/1.jpg"]
    # A glob, never a regular expression: "." is a dot, and regex syntax matches nothing.
    assert listing(api, "?match=a.1.jpg").json["items"] == []
    assert listing(api, "?match=(a|b)/1.jpg").json["items"] == []


def test_uploads_are_listed_only_under_the_incoming_prefix(api: SidecarApp, listed_storage: LocalStorage) -> None:
    assert "incoming/c/1.jpg" not in [item["key"] for item in listing(api).json["items"]]
    assert [item["key"] for item in listing(api, "?prefix=incoming/").json["items"]] == ["incoming/c/1.jpg"]


def test_a_scan_that_finds_little_ends_the_page_early_with_a_cursor(
    api: SidecarApp, storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    for number in range(30):
        storage.put(f"many/{number:02}.jpg", b"x", "image/jpeg", "")
    monkeypatch.setattr(library, "_SCAN_BUDGET", 10)
    page = listing(api, "?match=*/29.jpg").json
    assert page["items"] == [] and page["cursor"] is not None
    found = []
    while page["cursor"] is not None:
        page = listing(api, f"?match=*/29.jpg&cursor={page['cursor']}").json
        found += page["items"]
    assert [item["key"] for item in found] == ["many/29.jpg"]


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("?limit=0", id="limit 0"),
        pytest.param("?limit=1001", id="limit over 1000"),
        pytest.param("?limit=ten", id="limit not a number"),
        pytest.param("?limit=1&limit=2", id="limit twice"),
        pytest.param("?cursor=%%%", id="cursor not base64"),
        pytest.param("?cursor=_w", id="cursor not utf-8"),
        pytest.param("?match=" + "*" * 257, id="glob too long"),
        pytest.param("?prefix=_r/", id="derivatives"),
        pytest.param("?prefix=" + "a" * 1025, id="prefix too long"),
        pytest.param("?prefix=../", id="dot-dot prefix"),
    ],
)
def test_bad_listing_parameters_are_400(api: SidecarApp, listed_storage: LocalStorage, query: str) -> None:
    response = listing(api, query)
    assert response.status_int == 400, response.text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(match=st.text(max_size=300), prefix=st.text(max_size=40))
def test_hostile_globs_and_prefixes_never_cause_a_500(
    api: SidecarApp, listed_storage: LocalStorage, match: str, prefix: str
) -> None:
    response = listing(
        api, "?" + urlencode({"match": match, "prefix": prefix}, encoding="utf-8", errors="surrogatepass")
    )
    if response.status_int == 400:
        assert response.json["error"] == "Bad Request" and response.json["detail"], response.text
        return
    # Uploads are listed only when the prefix asks for them; derivatives never.
    expected = [
        key
        for key in LISTED_ORIGINALS
        if key.startswith(prefix)
        and (prefix.startswith("incoming/") or not key.startswith("incoming/"))
        and fnmatch.fnmatchcase(key, match)
    ]
    assert (response.status_int, response.json["cursor"]) == (200, None)
    assert [item["key"] for item in response.json["items"]] == expected


# Metadata.


def test_meta_describes_the_original_without_gps(api: SidecarApp, storage: LocalStorage, testdata: Path) -> None:
    storage.put("photos/canon.jpg", read(testdata, "exif/Canon_40D.jpg"), "image/jpeg", "")
    response = call(api, "GET", "/api/images/photos/canon.jpg/meta")
    assert response.status_int == 200, response.text
    meta = response.json
    blurhash = meta.pop("blurhash")
    assert meta == {
        "key": "photos/canon.jpg",
        "width": 100,
        "height": 68,
        "pages": 1,
        "format": "jpg",
        "has_alpha": False,
        "orientation": 1,
        "icc_profile": "sRGB IEC61966-2.1",
        "bytes": len(read(testdata, "exif/Canon_40D.jpg")),
        "exif": {"camera": "Canon EOS 40D", "taken_at": "2008-05-30T15:56:01"},
    }
    assert len(blurhash) == 28  # 4x3 components


@pytest.mark.parametrize(("width", "height", "components"), [(64, 48, (4, 3)), (48, 64, (3, 4))])
def test_the_blurhash_is_the_reference_encoders_for_the_same_pixels(
    api: SidecarApp, storage: LocalStorage, width: int, height: int, components: tuple[int, int]
) -> None:
    blurhash = pytest.importorskip("blurhash", reason="the reference BlurHash encoder (pip install blurhash)")
    import pyvips

    data = photo(width, height, "png")
    storage.put("p.png", data, "image/png", "")
    thumbnail = pyvips.Image.thumbnail_buffer(data, 32, height=32)
    pixels = thumbnail.write_to_memory()
    rows = [
        [list(pixels[(y * thumbnail.width + x) * 3 :][:3]) for x in range(thumbnail.width)]
        for y in range(thumbnail.height)
    ]
    expected = blurhash.encode(rows, *components)
    assert call(api, "GET", "/api/images/p.png/meta").json["blurhash"] == expected


def test_meta_of_an_animation_counts_its_frames_and_alpha(
    api: SidecarApp, storage: LocalStorage, testdata: Path
) -> None:
    storage.put("anim.webp", read(testdata, "formats/animated-loop-3.webp"), "image/webp", "")
    meta = call(api, "GET", "/api/images/anim.webp/meta").json
    assert (meta["format"], meta["pages"], meta["has_alpha"]) == ("webp", 10, True)


def test_meta_of_something_that_is_not_an_image_is_422(api: SidecarApp, storage: LocalStorage) -> None:
    storage.put("notes.jpg", b"just text", "image/jpeg", "")
    assert call(api, "GET", "/api/images/notes.jpg/meta").status_int == 422


# Temporary URLs.


def temporary(app: SidecarApp, key: str, query: str = "") -> Response:
    return call(app, "GET", f"/api/images/{encode_key(key)}/url{query}")


def test_a_temporary_url_serves_the_original_without_the_secret_until_it_expires(
    api: SidecarApp, storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = photo(64, 48)
    storage.put("private/été.jpg", data, "image/jpeg", "")
    answer = temporary(api, "private/été.jpg", "?expires=60").json
    assert answer["url"].startswith("/api/files/private/%C3%A9t%C3%A9.jpg?expires=")
    response = call(api, "GET", answer["url"], secret=None)
    assert response.status_int == 200
    assert response.body == data
    assert response.content_type == "image/jpeg"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.cache_control.private and 0 < response.cache_control.max_age <= 60
    assert call(api, "HEAD", answer["url"], secret=None).status_int == 200
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 61)
    assert call(api, "GET", answer["url"], secret=None).status_int == 403


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda url: url.replace("expires=", "expires=1"), id="longer expiry"),
        pytest.param(lambda url: url.replace("a.jpg", "b.jpg"), id="other key"),
        pytest.param(lambda url: url[:-1] + ("0" if url[-1] != "0" else "1"), id="signature"),
        pytest.param(lambda url: url.split("&sig=")[0], id="no signature"),
        pytest.param(lambda url: url.split("?")[0], id="no query"),
    ],
)
def test_a_tampered_temporary_url_is_403(api: SidecarApp, storage: LocalStorage, tamper: Callable[[str], str]) -> None:
    for key in ("a.jpg", "b.jpg"):
        storage.put(key, photo(16, 16), "image/jpeg", "")
    url = temporary(api, "a.jpg").json["url"]
    assert call(api, "GET", tamper(url), secret=None).status_int == 403


def test_a_temporary_url_is_bounded_by_the_maximum(make_api: MakeApi, storage: LocalStorage) -> None:
    app = make_api(temp_url_max_seconds=600)
    storage.put("a.jpg", photo(16, 16), "image/jpeg", "")
    assert temporary(app, "a.jpg", "?expires=601").status_int == 400
    assert temporary(app, "a.jpg", "?expires=0").status_int == 400
    assert temporary(app, "a.jpg", "?expires=-5").status_int == 400
    assert temporary(app, "a.jpg", "?expires=600").status_int == 200


def test_a_temporary_url_to_an_unknown_key_is_404(api: SidecarApp) -> None:
    assert temporary(api, "nothing.jpg").status_int == 404


@pytest.mark.parametrize(
    ("name", "make", "content_type", "disposition"),
    [
        pytest.param("p.heic", lambda: pictures.heic(pictures.picture(32, 24)), "image/heic", "inline", id="heic"),
        pytest.param(
            "p.avif",
            lambda: bytes(pictures.to_pyvips(pictures.picture(32, 24)).heifsave_buffer(compression="av1")),
            "image/avif",
            "inline",
            id="avif",
        ),
        pytest.param(
            "p.tiff", lambda: pictures.tiff(pictures.to_pyvips(pictures.picture(32, 24))), "application/octet-stream",
            "attachment", id="tiff",
        ),
        pytest.param("p.bmp", lambda: pictures.bmp(pictures.picture(32, 24)), "application/octet-stream", "attachment",
                     id="bmp"),
    ],
)
def test_a_temporary_url_types_an_original_by_its_own_format(
    api: SidecarApp, storage: LocalStorage, name: str, make: Callable[[], bytes], content_type: str, disposition: str
) -> None:
    """As nginx serves originals: HEIC as HEIC (not as the AVIF its derivatives default to), formats browsers do
    not show as downloads."""
    data = make()
    storage.put(name, data, "application/octet-stream", "")
    response = call(api, "GET", temporary(api, name).json["url"], secret=None)
    assert response.status_int == 200
    assert response.body == data
    assert response.content_type == content_type
    assert response.content_disposition.startswith(disposition)


def test_a_temporary_url_to_something_not_an_image_downloads_it(api: SidecarApp, storage: LocalStorage) -> None:
    storage.put("page.jpg", HTML, "image/jpeg", "")
    response = call(api, "GET", temporary(api, "page.jpg").json["url"], secret=None)
    assert response.status_int == 200
    assert response.content_type == "application/octet-stream"
    assert response.content_disposition.startswith("attachment")


# Archives.


def archive(app: SidecarApp, query: str) -> Response:
    return call(app, "GET", f"/api/archive{query}")


def entries(response: Response) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(response.body)) as unzipped:
        assert unzipped.testzip() is None
        return {name: unzipped.read(name) for name in unzipped.namelist()}


@pytest.fixture
def three(storage: LocalStorage) -> dict[str, bytes]:
    originals = {"trip/1.jpg": photo(300, 200), "trip/2.jpg": photo(200, 300), "trip/a,b.png": photo(50, 50, "png")}
    for key, data in originals.items():
        storage.put(key, data, "image/jpeg", "")
    return originals


def test_an_archive_of_originals_is_streamed_one_entry_at_a_time(api: SidecarApp, three: dict[str, bytes]) -> None:
    request = Request.blank("/api/archive?keys=trip/1.jpg,trip/2.jpg&key=trip/a,b.png")
    request.authorization = ("Bearer", API_SECRET)
    status, headers, app_iter = request.call_application(api)
    assert status.startswith("200")
    assert ("Content-Type", "application/zip") in headers
    assert not any(name == "Content-Length" for name, _ in headers)
    assert isinstance(app_iter, Iterator)  # a generator, not a body built in memory
    chunks = list(app_iter)
    assert len(chunks) == len(three) + 1  # one per entry, then the central directory
    assert max(len(chunk) for chunk in chunks) < max(len(data) for data in three.values()) + 200
    with zipfile.ZipFile(io.BytesIO(b"".join(chunks))) as unzipped:
        assert {name: unzipped.read(name) for name in unzipped.namelist()} == three


def test_an_archive_of_derivatives_makes_and_stores_them(
    api: SidecarApp, storage: LocalStorage, three: dict[str, bytes]
) -> None:
    response = archive(api, "?match=trip/*.jpg&spec=100x100-fill&fmt=webp")
    assert response.status_int == 200
    assert response.content_disposition.startswith("attachment")
    files = entries(response)
    assert sorted(files) == ["trip/1.jpg.100x100-fill.webp", "trip/2.jpg.100x100-fill.webp"]
    assert {(image(body).width, image(body).height) for body in files.values()} == {(100, 100)}
    assert len(storage.list("_r/trip/")) == 2


def test_an_archive_names_what_it_could_not_make_in_errors_txt(
    api: SidecarApp, storage: LocalStorage, three: dict[str, bytes]
) -> None:
    storage.put("trip/broken.jpg", b"\xff\xd8\xff not a jpeg", "image/jpeg", "")
    files = entries(archive(api, "?keys=trip/1.jpg,trip/broken.jpg&spec=50x"))
    assert sorted(files) == ["ERRORS.txt", "trip/1.jpg.50x.jpg"]
    assert files["ERRORS.txt"].startswith(b"trip/broken.jpg.50x.jpg: Unprocessable Entity")


def test_an_archive_leaves_out_what_would_pass_the_byte_cap(make_api: MakeApi, three: dict[str, bytes]) -> None:
    sizes = sorted(len(data) for data in three.values())
    app = make_api(archive_max_bytes=sum(sizes) + 10)
    # The originals fit; their full-size PNG conversions do not.
    files = entries(archive(app, "?keys=trip/1.jpg,trip/2.jpg&key=trip/a,b.png&fmt=png"))
    assert "ERRORS.txt" in files
    assert b"left out" in files["ERRORS.txt"]


@pytest.mark.parametrize(
    ("query", "status"),
    [
        pytest.param("", 400, id="nothing asked for"),
        pytest.param("?keys=trip/1.jpg&match=*", 400, id="keys and match"),
        pytest.param("?keys=trip/1.jpg,nothing.jpg", 404, id="unknown key"),
        pytest.param("?match=nothing/*", 404, id="nothing matches"),
        pytest.param("?keys=trip/../etc/passwd", 400, id="traversal"),
        pytest.param("?keys=trip/1.jpg&spec=400x300-wobble", 400, id="bad spec"),
        pytest.param("?keys=trip/1.jpg&spec=9000x", 400, id="spec over the output cap"),
        pytest.param("?keys=trip/1.jpg&fmt=bmp", 400, id="bad format"),
        pytest.param("?keys=trip/1.jpg,trip/2.jpg&key=trip/a,b.png", 400, id="over the count"),
        pytest.param("?match=trip/*", 400, id="match over the count"),
    ],
)
def test_bad_archive_requests_are_refused_before_streaming(
    make_api: MakeApi, three: dict[str, bytes], query: str, status: int
) -> None:
    app = make_api(archive_max_files=2)
    response = archive(app, query)
    assert response.status_int == status, response.text
    assert response.content_type == "application/json"


def test_an_archive_over_the_byte_cap_is_refused_from_the_sizes(make_api: MakeApi, three: dict[str, bytes]) -> None:
    assert archive(make_api(archive_max_bytes=100), "?keys=trip/1.jpg").status_int == 400


# Deletion.


def test_delete_removes_the_original_and_every_derivative(api: SidecarApp, storage: LocalStorage) -> None:
    storage.put("photos/cat.jpg", photo(200, 100), "image/jpeg", "")
    storage.put("photos/cat.jpg.txt", b"a neighbour", "text/plain", "")
    for spec in ("100x", "50x50-fill"):
        assert call(api, "GET", format_path("photos/cat.jpg", spec, "jpg", SECRET), secret=None).status_int == 200
    response = call(api, "DELETE", "/api/images/photos/cat.jpg")
    assert response.status_int == 200
    assert response.json == {"key": "photos/cat.jpg", "deleted_original": True, "deleted_derivatives": 2}
    assert keys(storage) == ["photos/cat.jpg.txt"]
    assert call(api, "DELETE", "/api/images/photos/cat.jpg").status_int == 404


def test_deleting_a_folder_name_is_404_and_deletes_nothing_of_the_originals_under_it(
    api: SidecarApp, storage: LocalStorage
) -> None:
    for key in ("gallery/a.jpg", "gallery/b/c.jpg"):
        storage.put(key, photo(200, 100), "image/jpeg", "")
        assert call(api, "GET", format_path(key, "100x", "jpg", SECRET), secret=None).status_int == 200
    before = keys(storage)
    assert len(before) == 4
    response = call(api, "DELETE", "/api/images/gallery")
    assert (response.status_int, response.json["error"]) == (404, "Not Found")
    assert keys(storage) == before


def test_a_key_that_ends_in_a_route_name_can_be_deleted(api: SidecarApp, storage: LocalStorage) -> None:
    storage.put("album/meta", photo(20, 20), "image/jpeg", "")
    assert call(api, "GET", "/api/images/album/meta").status_int == 404  # GET names the metadata of "album"
    assert call(api, "DELETE", "/api/images/album/meta").status_int == 200
    assert keys(storage) == []


# Routing and hostile input.


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/api/images/a/../b.jpg/meta", id="dot-dot"),
        pytest.param("GET", "/api/images/%2E%2E/b.jpg/meta", id="encoded dot-dot"),
        pytest.param("GET", "/api/images//etc/passwd/meta", id="absolute"),
        pytest.param("GET", "/api/images/_r/a.jpg/meta", id="derivative"),
        pytest.param("GET", "/api/images/a%00.jpg/url", id="nul"),
        pytest.param("GET", "/api/images/a%5Cb.jpg/url", id="backslash"),
        pytest.param("GET", "/api/images/" + "a" * 1025 + "/meta", id="too long"),
        pytest.param("GET", "/api/files/../a.jpg?expires=1&sig=0", id="files dot-dot"),
        pytest.param("POST", "/api/images/a/../../b.jpg/activate", id="activate dot-dot"),
        pytest.param("DELETE", "/api/images/a/../b.jpg", id="delete dot-dot"),
        pytest.param("DELETE", "/api/images/", id="delete nothing"),
        pytest.param("GET", "/api/images/%FF.jpg/meta", id="not utf-8"),
    ],
)
def test_traversal_and_malformed_keys_are_400_and_touch_nothing(
    api: SidecarApp, storage: LocalStorage, method: str, path: str
) -> None:
    storage.put("b.jpg", photo(10, 10), "image/jpeg", "")
    response = call(api, method, path)
    assert response.status_int == 400, response.text
    assert keys(storage) == ["b.jpg"]


def test_unknown_routes_are_404_and_wrong_methods_405_with_allow(api: SidecarApp) -> None:
    assert call(api, "GET", "/api/elsewhere").status_int == 404
    response = call(api, "PUT", "/api/images")
    assert response.status_int == 405
    assert set(response.allow) == {"GET", "HEAD", "POST"}
    assert set(call(api, "POST", "/api/images/a.jpg/meta").allow) == {"GET", "HEAD", "DELETE"}
    assert call(api, "GET", "/api/images/a.jpg").status_int == 405


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "POST", "DELETE", "PUT", "HEAD"]),
    tail=st.text(max_size=60),
    query=st.text(max_size=40),
)
def test_hostile_api_requests_never_cause_a_500(
    api: SidecarApp, storage: LocalStorage, method: str, tail: str, query: str
) -> None:
    path = "/api/" + encode_key(tail) + "?" + encode_key(query).replace("/", "%2F")
    response = call(api, method, path, b"" if method == "POST" else None)
    # Nothing is stored, so no route finds anything: every answer is one of the client's errors, in JSON.
    assert (response.cache_control.no_store, keys(storage)) == (True, [])
    if method != "HEAD":
        assert response.json["error"] == REFUSALS[response.status_int], (path, response.text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    route=st.sampled_from([("DELETE", ""), ("GET", "/meta"), ("GET", "/url"), ("POST", "/activate")]),
    key=st.text(max_size=60),
)
def test_hostile_keys_on_each_image_route_are_400_naming_the_rule_or_404(
    api: SidecarApp, storage: LocalStorage, route: tuple[str, str], key: str
) -> None:
    """Every route that names an image checks its key by the URL contract's rules (400, naming the rule it breaks)
    before it looks for the image, which is not there (404); nothing is stored either way."""
    method, action = route
    response = call(api, method, "/api/images/" + encode_key(key) + action, b"" if method == "POST" else None)
    try:
        validate_key(key, "_r/")
    except MalformedPathError as error:
        expected = (400, "Bad Request", error.detail)
    else:
        expected = (404, "Not Found", response.json["detail"])
    assert (response.status_int, response.json["error"], response.json["detail"]) == expected
    assert keys(storage) == []
