"""What the sidecar stores, object by object, on every path that writes (in-process, over a bucket on moto's S3
server over HTTP): each derivative and original with the Content-Type of its format and the Cache-Control of its
kind, as S3 keeps and answers them to nginx and CDNs; and a delete that leaves nothing of the picture servable
when a miss runs in the middle of it.

The Cache-Control of derivatives is set to a value of its own here, so that a write that took another kind's
policy (or the default) shows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from webob import Request, Response

from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import format_path
from resize_sidecar.media.s3 import S3Storage
from resize_sidecar.web.app import SidecarApp, make_app
from tests.support.images import photo
from tests.support.keys import stored_key
from tests.support.pictures import bmp, heic, picture, tiff, to_pyvips
from tests.support.servers import SECRET

API_SECRET = "api-secret-0123456789abcdef"
DERIVATIVES = "public, max-age=4321, immutable"
#: Originals and uploads waiting for activation may be replaced under their key: caches must ask again.
ORIGINALS = "no-cache"
#: The type each output format is stored and answered with.
TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp", "avif": "image/avif", "gif": "image/gif"}


@pytest.fixture
def bucket(moto_endpoint: str, s3_bucket: str) -> S3Storage:
    return S3Storage(s3_bucket, endpoint_url=moto_endpoint)


@pytest.fixture
def app(make_settings: Callable[..., Settings], bucket: S3Storage) -> SidecarApp:
    settings = make_settings(api_secret=(API_SECRET,), presets={"thumb": "120x120-fill"}, cache_control=DERIVATIVES)
    return make_app(settings, storage=bucket)


def stored_headers(s3_client: Any, bucket: S3Storage, key: str) -> tuple[str, str]:
    head = s3_client.head_object(Bucket=bucket.bucket, Key=key)
    return head["ContentType"], head["CacheControl"]


def api(app: SidecarApp, method: str, path: str, body: bytes | None = None) -> Response:
    request = Request.blank(path, method=method)
    request.authorization = ("Bearer", API_SECRET)
    if body is not None:
        request.body, request.content_type = body, "application/octet-stream"
    return request.get_response(app)


@pytest.mark.parametrize("fmt", list(TYPES))
def test_a_miss_stores_each_format_with_its_type_and_the_derivatives_cache_control(
    app: SidecarApp, bucket: S3Storage, s3_client: Any, fmt: str
) -> None:
    bucket.put("photos/cat.jpg", photo(400, 300), "image/jpeg", ORIGINALS)
    path = format_path("photos/cat.jpg", "200x", fmt, SECRET)

    response = Request.blank(path, environ={"RAW_URI": path}).get_response(app)

    assert (response.status_int, response.content_type) == (200, TYPES[fmt])
    assert response.headers["Cache-Control"] == DERIVATIVES
    assert stored_headers(s3_client, bucket, stored_key(path)) == (TYPES[fmt], DERIVATIVES)


@pytest.mark.parametrize(
    ("make", "fmt"),
    [
        pytest.param(lambda: photo(400, 300, "png"), "png", id="png"),
        pytest.param(lambda: photo(400, 300, "webp"), "webp", id="webp"),
        pytest.param(lambda: heic(picture(400, 300)), "avif", id="heic stored as avif"),
        pytest.param(lambda: tiff(to_pyvips(picture(400, 300))), "png", id="tiff stored as png"),
        pytest.param(lambda: bmp(picture(400, 300)), "png", id="bmp stored as png"),
    ],
)
def test_an_upload_and_its_activation_store_originals_and_presets_with_their_kinds_headers(
    app: SidecarApp, bucket: S3Storage, s3_client: Any, make: Callable[[], bytes], fmt: str
) -> None:
    response = api(app, "POST", "/api/images", make())
    assert response.status_int == 201, response.text
    upload = response.json
    assert (upload["format"], upload["content_type"]) == (fmt, TYPES[fmt])
    incoming_thumb = [item.key for item in bucket.list(f"_r/{upload['incoming_key']}/")]
    assert len(incoming_thumb) == 1 and incoming_thumb[0].endswith(f".{fmt}")
    assert stored_headers(s3_client, bucket, upload["incoming_key"]) == (TYPES[fmt], ORIGINALS)
    assert stored_headers(s3_client, bucket, incoming_thumb[0]) == (TYPES[fmt], DERIVATIVES)

    activated = api(app, "POST", f"/api/images/{upload['key']}/activate")

    assert activated.status_int == 200, activated.text
    thumb = stored_key(activated.json["urls"]["thumb"])
    assert stored_headers(s3_client, bucket, upload["key"]) == (TYPES[fmt], ORIGINALS)
    assert stored_headers(s3_client, bucket, thumb) == (TYPES[fmt], DERIVATIVES)
    assert sorted(item.key for item in bucket.list()) == sorted([upload["key"], thumb])


class MissBetweenSteps:
    """Storage that runs a request for a derivative of ``key`` right after the first delete or delete_prefix it is
    asked for, as a miss on another worker may: its status is kept in ``answers``."""

    def __init__(self, inner: Any, key: str) -> None:
        self.inner, self.key = inner, key
        self.app: SidecarApp | None = None
        self.answers: list[int] = []
        self.deletes: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if name not in ("delete", "delete_prefix"):
            return method

        def step(*args: Any, **kwargs: Any) -> Any:
            self.deletes.append(name)
            result = method(*args, **kwargs)
            if len(self.deletes) == 1 and self.app is not None:
                path = format_path(self.key, "100x", "webp", SECRET)
                self.answers.append(Request.blank(path, environ={"RAW_URI": path}).get_response(self.app).status_int)
            return result

        return step


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_a_miss_between_the_steps_of_a_delete_leaves_no_derivative_of_the_deleted_original(
    make_settings: Callable[..., Settings], bucket: S3Storage, tmp_path: Path, kind: str
) -> None:
    """The original goes first: a miss that comes between the two steps finds it gone (404) and stores nothing, and
    what was stored before is deleted by the second step. The other order would let that miss store a derivative
    after the derivatives were deleted, of an original deleted just after."""
    from resize_sidecar.media.local import LocalStorage

    inner = LocalStorage(tmp_path / "media") if kind == "local" else bucket
    storage = MissBetweenSteps(inner, "gone/cat.jpg")
    settings = make_settings(api_secret=(API_SECRET,), cache_control=DERIVATIVES)
    storage.app = app = make_app(settings, storage=storage)
    inner.put("gone/cat.jpg", photo(400, 300), "image/jpeg", ORIGINALS)
    earlier = format_path("gone/cat.jpg", "200x", "jpg", SECRET)
    assert Request.blank(earlier, environ={"RAW_URI": earlier}).get_response(app).status_int == 200

    response = api(app, "DELETE", "/api/images/gone/cat.jpg")

    assert response.status_int == 200, response.text
    assert json.loads(response.body) == {"key": "gone/cat.jpg", "deleted_original": True, "deleted_derivatives": 1}
    # The second step deletes the private derivatives' prefix, then the public one's; the faces found go last.
    assert (storage.deletes, storage.answers) == (["delete", "delete_prefix", "delete_prefix", "delete"], [404])
    assert [item.key for item in inner.list()] == []
