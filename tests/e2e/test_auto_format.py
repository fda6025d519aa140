""".auto URLs through real nginx and gunicorn, over local storage and over moto's S3 server with nginx's cache on:
nginx chooses the stored AVIF, WebP or JPEG by the Accept header, answers ``Vary: Accept`` on those URLs only, and
caches each chosen format under its own key.
"""

from __future__ import annotations

import time

import pytest

from resize_sidecar.core import auto
from resize_sidecar.core.settings import Settings
from resize_sidecar.core.urls import MediaURLs
from resize_sidecar.ops.nginx import render_nginx
from tests.support.browser import chromium
from tests.support.images import image_size_and_format, photo
from tests.support.keys import AWKWARD_KEYS, stored_key
from tests.support.servers import SECRET, Stack, raw_get

pytestmark = pytest.mark.e2e

#: What Chromium sends for an <img>, and what a plain client sends.
CHROMIUM_ACCEPT = "image/avif,image/webp,image/apng,image/*,*/*;q=0.8"
PLAIN_ACCEPT = "*/*"
WEBP_ONLY_ACCEPT = "image/webp,*/*"




def get(stack: Stack, path: str, accept: str) -> tuple[int, dict[str, str], bytes]:
    return raw_get(stack.nginx.url, path, headers={"Accept": accept})


def test_nginx_chooses_the_format_by_the_sidecars_own_table() -> None:
    config = render_nginx(Settings(secrets=(SECRET,)), listen="8080", sidecar="http://127.0.0.1:8000")

    choices = "".join(f'        "~*{content_type}" {fmt};\n' for content_type, fmt in auto.CHOICES)
    assert f"map $http_accept $resize_auto_format {{\n        default {auto.FALLBACK};\n{choices}    }}" in config


@pytest.mark.parametrize("key", [*AWKWARD_KEYS, pytest.param("auto/what?.jpg", id="question mark")])
def test_one_auto_url_is_answered_in_the_format_each_client_accepts_and_then_from_nginx_alone(
    edge_stack: Stack, edge_urls: MediaURLs, key: str
) -> None:
    edge_stack.storage.put(key, photo(800, 600), "image/jpeg", "no-cache")
    url = edge_urls.derivative(key, width=200, format="auto")
    expected = {
        CHROMIUM_ACCEPT: ("image/avif", "heifload"),
        WEBP_ONLY_ACCEPT: ("image/webp", "webpload"),
        PLAIN_ACCEPT: ("image/jpeg", "jpegload"),
    }

    made = {accept: get(edge_stack, url, accept) for accept in expected}

    for accept, (content_type, loader) in expected.items():
        status, headers, body = made[accept]
        assert (status, headers["content-type"], headers["vary"]) == (200, content_type, "Accept"), body
        assert image_size_and_format(body) == (200, 150, loader)
    stored = sorted(edge_stack.derivatives_of(key))
    assert stored == sorted(stored_key(url, fmt=fmt) for fmt in ("avif", "jpg", "webp"))
    edge_stack.sidecar.stop()
    try:
        for accept, (content_type, _) in expected.items():
            status, headers, body = get(edge_stack, url, accept)
            assert (status, headers["content-type"], headers["vary"]) == (200, content_type, "Accept")
            assert body == made[accept][2]
            assert headers["cache-control"] == "public, max-age=31536000, immutable"
        # A miss now is nginx's own error: never to be kept by a cache downstream.
        missing = edge_urls.derivative(key, width=120, format="auto")
        status, headers, _ = get(edge_stack, missing, CHROMIUM_ACCEPT)
        assert (status, headers["cache-control"]) == (502, "no-store")
    finally:
        edge_stack.sidecar.start()


def test_nginx_caches_each_chosen_format_under_its_own_key(edge_stack: Stack, edge_urls: MediaURLs) -> None:
    if edge_stack.mode != "s3":
        pytest.skip("nginx caches S3 reads only")
    key = "auto/cached.jpg"
    edge_stack.storage.put(key, photo(400, 300), "image/jpeg", "no-cache")
    url = edge_urls.derivative(key, width=100, format="auto")
    # Two spellings of an Accept that chooses AVIF, one that chooses JPEG: the cache keys on the choice.
    requests = [CHROMIUM_ACCEPT, "image/avif,*/*", PLAIN_ACCEPT, "text/html,*/*;q=0.8", CHROMIUM_ACCEPT]

    answers = [get(edge_stack, url, accept) for accept in requests]

    seen = [(status, headers["content-type"], headers.get("x-cache-status")) for status, headers, _ in answers]
    assert seen == [
        (200, "image/avif", "MISS"),
        (200, "image/avif", "HIT"),
        (200, "image/jpeg", "MISS"),
        (200, "image/jpeg", "HIT"),
        (200, "image/avif", "HIT"),
    ]
    assert answers[0][2] == answers[1][2] == answers[4][2] and answers[2][2] == answers[3][2]


def test_a_public_url_of_a_concrete_format_never_varies(edge_stack: Stack, edge_urls: MediaURLs) -> None:
    key = "auto/concrete.jpg"
    edge_stack.storage.put(key, photo(400, 300), "image/jpeg", "no-cache")
    url = edge_urls.derivative(key, width=100, format="avif")

    miss_status, miss, _ = get(edge_stack, url, CHROMIUM_ACCEPT)
    hit_status, hit, _ = get(edge_stack, url, PLAIN_ACCEPT)

    assert (miss_status, miss["content-type"]) == (hit_status, hit["content-type"]) == (200, "image/avif")
    assert "vary" not in miss and "vary" not in hit


def test_an_auto_url_signed_for_another_image_is_refused_and_stores_nothing(
    edge_stack: Stack, edge_urls: MediaURLs
) -> None:
    key = "auto/forged.jpg"
    edge_stack.storage.put(key, photo(400, 300), "image/jpeg", "no-cache")
    other = edge_urls.derivative("auto/other.jpg", width=100, format="auto")
    forged = other.replace("auto/other.jpg", "auto/forged.jpg")

    status, _, body = get(edge_stack, forged, CHROMIUM_ACCEPT)

    assert (status, body) == (403, b"Forbidden: signature does not match\n")
    assert edge_stack.derivatives_of(key) == []


def test_chromium_loads_an_auto_img_as_avif(edge_stack: Stack, edge_urls: MediaURLs) -> None:
    key = "auto/browser.jpg"
    edge_stack.storage.put(key, photo(640, 480), "image/jpeg", "no-cache")
    url = edge_urls.derivative(key, width=320, format="auto")
    browser = chromium(1)
    try:
        browser.get(edge_stack.nginx.url + "/media/not-a-page")
        loaded = browser.execute_async_script(
            "const done = arguments[arguments.length - 1]; const img = new Image();"
            "img.onload = () => done(img.naturalWidth); img.onerror = () => done(-1); img.src = arguments[0];",
            url,
        )
    finally:
        browser.quit()

    assert loaded == 320
    deadline = time.monotonic() + 5
    while not edge_stack.derivatives_of(key) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert edge_stack.derivatives_of(key) == [stored_key(url, fmt="avif")]
