"""End to end: real nginx in front of real gunicorn, over local storage and over moto's S3 server.

The claim under test is the product's: a signed miss is made, stored at exactly its key and answered; every
later request for that URL is served by nginx from storage without reaching Python.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from resize_sidecar.core.signing import encode_key, format_path, sign
from tests.support.images import image_size, image_size_and_format, photo
from tests.support.keys import AWKWARD_KEYS, stored_key
from tests.support.servers import SECRET, Stack, media_stack, metric, raw_get, world_readable_dir

pytestmark = pytest.mark.e2e

API_SECRET = "e2e-api-secret-0123456789"


@pytest.fixture(scope="module", params=["local", "s3"])
def stack(
    request: pytest.FixtureRequest, moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    env = {
        "RESIZE_SIDECAR_API_SECRET": API_SECRET,
        "RESIZE_SIDECAR_PRESETS": "thumb=160x160-fill",
        "RESIZE_SIDECAR_MAX_SOURCE_BYTES": "2000000",
    }
    logs = tmp_path_factory.mktemp(f"logs-{request.param}")
    with media_stack(request.param, moto_endpoint, logs, env) as started:
        yield started


@pytest.mark.parametrize("key", AWKWARD_KEYS)
def test_a_miss_is_made_stored_and_every_later_hit_is_served_without_python(stack: Stack, key: str) -> None:
    stack.storage.put(key, photo(1200, 800), "image/jpeg", "no-cache")
    url = stack.url(key, "400x300", "webp")

    status, headers, body = stack.get(url)
    assert status == 200, body
    assert headers["content-type"] == "image/webp"
    assert image_size_and_format(body) == (400, 267, "webpload")
    assert stack.derivatives_of(key) == [stored_key(url)]

    reached = stack.sidecar_requests()
    for _ in range(3):
        again_status, again_headers, again = stack.get(url)
        assert (again_status, again) == (200, body)
    assert stack.sidecar_requests() == reached, "a hit reached the sidecar: nginx could not read the derivative"
    assert "max-age=31536000" in again_headers["cache-control"]


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [("jpg", "image/jpeg"), ("png", "image/png"), ("webp", "image/webp"), ("avif", "image/avif"), ("gif", "image/gif")],
)
def test_a_hit_is_answered_with_its_formats_type_and_cache_control_as_its_miss_was(
    stack: Stack, fmt: str, content_type: str
) -> None:
    """nginx types a local derivative by its extension and answers the type S3 stored with one: either way, the
    type of its format and the Cache-Control of derivatives, as the sidecar answered the miss that made it."""
    key = f"types/photo-{fmt}.jpg"
    stack.storage.put(key, photo(300, 200), "image/jpeg", "no-cache")
    url = stack.url(key, "100x", fmt)
    expected = (200, content_type, "public, max-age=31536000, immutable")

    status, made, body = stack.get(url)
    reached = stack.sidecar_requests()
    hit_status, hit, again = stack.get(url)

    assert (status, made["content-type"], made["cache-control"]) == expected
    assert (hit_status, hit["content-type"], hit["cache-control"]) == expected
    assert (again, stack.sidecar_requests()) == (body, reached)


def test_a_head_request_makes_the_derivative_and_sends_no_body(stack: Stack) -> None:
    key = "head/first.jpg"
    stack.storage.put(key, photo(640, 480), "image/jpeg", "no-cache")
    url = stack.url(key, "200x200-fill", "jpg")
    status, headers, body = stack.get(url, method="HEAD")
    assert (status, body) == (200, b"")
    assert headers["content-type"] == "image/jpeg"
    status, _, body = stack.get(url)
    assert status == 200
    assert image_size_and_format(body) == (200, 200, "jpegload")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_other_methods_on_a_derivative_are_405_and_change_nothing(stack: Stack, method: str) -> None:
    key = f"methods/{method.lower()}.jpg"
    stack.storage.put(key, photo(640, 480), "image/jpeg", "no-cache")
    stored, missing = stack.url(key, "200x", "jpg"), stack.url(key, "300x", "jpg")
    status, _, body = stack.get(stored)
    assert status == 200

    for path in (stored, missing):
        answer, _, _ = stack.get_with(method, path, b"not an image", {"Content-Type": "image/jpeg"})
        assert answer == 405, path
    assert stack.derivatives_of(key) == [stored_key(stored)]
    assert stack.get(stored)[2] == body


def test_a_bad_signature_is_refused_and_nothing_is_stored(stack: Stack) -> None:
    key = "signed/only.jpg"
    stack.storage.put(key, photo(320, 240), "image/jpeg", "no-cache")
    good = stack.url(key, "100x", "jpg")
    forged = good[: -len("0.jpg")] + ("1" if good[-5] == "0" else "0") + ".jpg"
    status, headers, _ = stack.get(forged)
    assert status == 403
    assert headers["cache-control"] == "no-store"
    other_secret = format_path(key, "100x", "jpg", "not-the-secret")
    assert stack.get(other_secret)[0] == 403
    assert stack.derivatives_of(key) == []


@pytest.mark.parametrize("signature", ["0" * 31, "0" * 33, "A" * 32, "g" * 32, "%30" * 32])
def test_a_signature_of_the_wrong_shape_is_403_through_nginx_and_direct_and_counted_as_one(
    stack: Stack, signature: str
) -> None:
    key = "signed/shape.jpg"
    stack.storage.put(key, photo(320, 240), "image/jpeg", "no-cache")
    path = f"/media/_r/{key}/100x-{signature}.jpg"
    refused = metric(stack.sidecar, "resize_sidecar_rejections_total", reason="signature")
    for base in (stack.nginx.url, stack.sidecar.url):
        status, headers, body = raw_get(base, path)
        assert (status, body) == (403, b"Forbidden: signature is not 32 lower-case hex digits\n"), base
        assert headers["cache-control"] == "no-store"
    assert metric(stack.sidecar, "resize_sidecar_rejections_total", reason="signature") == refused + 2
    assert "Traceback" not in stack.sidecar.log_tail(200)
    assert stack.derivatives_of(key) == []


def test_links_planted_under_a_local_root_are_never_followed(stack: Stack) -> None:
    if stack.mode != "local":
        pytest.skip("links exist on local storage only")
    outside = world_readable_dir("resize-sidecar-outside-")
    (outside / "secret.txt").write_text("not for the web")
    (outside / "secret.txt").chmod(0o644)
    root = Path(stack.settings.local_root)
    signature = "0" * 32
    (root / "_r" / "ghost.jpg").mkdir(parents=True)
    (root / "_r" / "ghost.jpg" / f"100x-{signature}.jpg").symlink_to(outside / "secret.txt")
    (root / "_r" / "linked").symlink_to(outside)
    (outside / "x.jpg").mkdir()
    (outside / "x.jpg" / f"100x-{signature}.jpg").symlink_to(outside / "secret.txt")

    for path in (f"/media/_r/ghost.jpg/100x-{signature}.jpg", f"/media/_r/linked/x.jpg/100x-{signature}.jpg"):
        status, _, body = stack.get(path)
        assert b"not for the web" not in body
        assert status == 403, body  # nginx found no file; the sidecar refuses the signature
    assert sorted(path.name for path in outside.iterdir()) == ["secret.txt", "x.jpg"]


def test_a_missing_original_is_404_and_not_cached(stack: Stack) -> None:
    status, headers, _ = stack.get(stack.url("nowhere/ghost.jpg", "100x100", "png"))
    assert status == 404
    assert headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/media/_r/a/../b.jpg/100x-" + "0" * 32 + ".jpg", id="dot-dot"),
        pytest.param("/media/_r/a/%2e%2e/b.jpg/100x-" + "0" * 32 + ".jpg", id="encoded dot-dot"),
        pytest.param("/media/_r/a.jpg/100x-" + "0" * 32 + ".bmp", id="unknown format"),
        pytest.param("/media/_r/no-spec-here.jpg", id="no spec"),
    ],
)
def test_a_malformed_path_is_400(stack: Stack, path: str) -> None:
    status, _, body = stack.get(path)
    assert status == 400, body


def test_a_correctly_signed_but_non_canonical_spec_is_400(stack: Stack) -> None:
    key = "canon/photo.jpg"
    stack.storage.put(key, photo(320, 240), "image/jpeg", "no-cache")
    signature = sign(key, "100x100-fit", "jpg", SECRET)
    status, _, body = stack.get(f"/media/_r/{encode_key(key)}/100x100-fit-{signature}.jpg")
    assert status == 400
    assert b"100x100" in body  # the answer names the canonical spelling
    assert stack.derivatives_of(key) == []


@pytest.mark.parametrize(
    ("content", "name"),
    [
        pytest.param(b"just some text, not an image\n", "text.jpg", id="text"),
        pytest.param(b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "vector.png", id="svg"),
    ],
)
def test_an_original_that_is_not_an_allowed_image_is_422(stack: Stack, content: bytes, name: str) -> None:
    key = f"junk/{name}"
    stack.storage.put(key, content, "image/jpeg", "no-cache")
    status, headers, _ = stack.get(stack.url(key, "100x100", "jpg"))
    assert status == 422
    assert headers["cache-control"] == "no-store"
    assert stack.derivatives_of(key) == []


def test_stored_derivatives_are_served_while_the_sidecar_is_down(stack: Stack) -> None:
    key = "outage/photo.jpg"
    stack.storage.put(key, photo(800, 600), "image/jpeg", "no-cache")
    url = stack.url(key, "300x", "jpg")
    status, _, body = stack.get(url)
    assert status == 200
    stack.sidecar.stop()
    try:
        hit_status, _, hit = stack.get(url)
        assert (hit_status, hit) == (200, body)
        assert stack.get(stack.url(key, "301x", "jpg"))[0] == 502  # a miss needs the sidecar
    finally:
        stack.sidecar.start()


def test_the_sidecar_answers_health_readiness_and_metrics(stack: Stack) -> None:
    assert raw_get(stack.sidecar.url, "/healthz")[0] == 200
    assert raw_get(stack.sidecar.url, "/readyz")[0] == 200
    status, _, body = raw_get(stack.sidecar.url, "/metrics")
    assert status == 200
    assert b"resize_sidecar_transform_seconds_count" in body


def test_an_upload_through_nginx_is_stored_with_its_presets_which_nginx_then_serves(stack: Stack) -> None:
    status, _, answer = stack.get_with(
        "POST", "/api/images", photo(1200, 900), {"Authorization": f"Bearer {API_SECRET}", "Content-Type": "image/jpeg"}
    )
    assert status == 201, answer
    thumb = json.loads(answer)["urls"]["thumb"]
    reached = stack.sidecar_requests()
    status, headers, body = stack.get(thumb)
    assert (status, headers["content-type"]) == (200, "image/jpeg")
    assert image_size(body) == (160, 160)
    assert stack.sidecar_requests() == reached, "the preset made at upload should be a plain nginx hit"


def test_nginx_refuses_an_upload_over_the_size_cap_before_the_sidecar_sees_it(stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {API_SECRET}", "Content-Type": "image/jpeg"}
    status, _, _ = stack.get_with("POST", "/api/images", b"\0" * 2_100_000, headers)
    assert status == 413
