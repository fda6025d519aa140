"""The sidecar's own answers to private and .auto URLs, in process: what nginx relies on when it passes a miss."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable

import pytest

from resize_sidecar.core.settings import Settings
from resize_sidecar.core.urls import MediaURLs
from resize_sidecar.web.app import SidecarApp, make_app
from tests.support.expiry import assert_private_cache_control
from tests.support.images import image_size_and_format, photo
from tests.support.in_process import CountingStorage, get
from tests.support.servers import SECRET


@pytest.fixture(params=["serve", "redirect"])
def settings(request: pytest.FixtureRequest, make_settings: Callable[..., Settings]) -> Settings:
    """The sidecar in both miss modes: a redirect would drop a private URL's token or an .auto URL's choice."""
    return make_settings(on_miss=request.param, public_base_url="https://cdn.example.com")


@pytest.fixture
def sidecar(settings: Settings, storage: CountingStorage) -> SidecarApp:
    storage.put("a b.jpg", photo(400, 300), "image/jpeg", "no-cache")
    return make_app(settings, storage=storage)


@pytest.fixture
def urls() -> MediaURLs:
    return MediaURLs(Settings(secrets=(SECRET,)))


def logged(caplog: pytest.LogCaptureFixture) -> dict[str, object]:
    [line] = [json.loads(record.getMessage()) for record in caplog.records if record.name == "resize_sidecar.requests"]
    return line  # type: ignore[no-any-return]


def test_a_private_miss_is_answered_with_the_image_privately_until_its_url_expires(
    sidecar: SidecarApp,
    settings: Settings,
    storage: CountingStorage,
    urls: MediaURLs,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = urls.derivative("a b.jpg", width=100, format="webp", private=True, expires_in=600)
    expires = int(re.findall(r"expires=([0-9]+)", url)[0])

    with caplog.at_level(logging.INFO, logger="resize_sidecar.requests"):
        asked = time.time()
        response = get(sidecar, url.split("?")[0], QUERY_STRING=url.split("?")[1])

    assert (response.status_int, response.content_type) == (200, "image/webp"), response.text
    assert image_size_and_format(response.body) == (100, 75, "webpload")
    assert_private_cache_control(response.headers["Cache-Control"], expires, asked, time.time())
    assert "Vary" not in response.headers
    # Stored without the signature, but for redirect mode, where storage keys are URLs.
    name = url.split("?")[0].rsplit("/", 1)[1] if settings.signed_storage_keys else "100x.webp"
    assert [item.key for item in storage.list("_p/")] == [f"_p/a b.jpg/{name}"]
    assert storage.list("_r/") == []
    line = logged(caplog)
    assert (line["key"], line["spec"], line["fmt"], line["cache"]) == ("a b.jpg", "100x", "webp", "created")


@pytest.mark.parametrize(
    ("accept", "content_type", "fmt"),
    [
        ("image/avif,image/webp,*/*", "image/avif", "avif"),
        ("image/webp", "image/webp", "webp"),
        ("*/*", "image/jpeg", "jpg"),
    ],
)
def test_an_auto_miss_makes_and_stores_the_chosen_format_and_varies_on_accept(
    sidecar: SidecarApp,
    settings: Settings,
    storage: CountingStorage,
    urls: MediaURLs,
    caplog: pytest.LogCaptureFixture,
    accept: str,
    content_type: str,
    fmt: str,
) -> None:
    url = urls.derivative("a b.jpg", width=100, format="auto")

    with caplog.at_level(logging.INFO, logger="resize_sidecar.requests"):
        response = get(sidecar, url, HTTP_ACCEPT=accept)

    assert (response.status_int, response.content_type, response.headers["Vary"]) == (200, content_type, "Accept")
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    stem = url.rsplit("/", 1)[1].removesuffix(".auto") if settings.signed_storage_keys else "100x"
    assert [item.key for item in storage.list("_r/")] == [f"_r/a b.jpg/{stem}.{fmt}"]
    assert logged(caplog)["fmt"] == fmt


API_TOKEN = "private-api-token-0123456789"


@pytest.mark.parametrize(
    ("query", "status", "answer"),
    [
        ("derivative=100x.webp&expires=600", 200, None),
        ("derivative=thumb.jpg", 200, None),
        ("derivative=100x", 400, "derivative: expected {spec}.{format}, e.g. 400x300-fill.webp"),
        ("derivative=100x-fit.jpg", 400, "derivative: spec '100x-fit' is not canonical; write it as '100x'"),
        ("derivative=nope.jpg", 400, "derivative: unknown preset 'nope'"),
        ("derivative=100x.auto", 400, "derivative: unknown format 'auto'; expected one of jpg, png, webp, avif, gif"),
        ("derivative=9000x.jpg", 400, "derivatives are at most 2000 pixels on a side"),
    ],
)
def test_the_media_api_issues_private_derivative_urls_that_the_sidecar_answers(
    make_settings: Callable[..., Settings], storage: CountingStorage, query: str, status: int, answer: object
) -> None:
    settings = make_settings(api_secret=(API_TOKEN,), presets={"thumb": "80x80-fill"}, max_output_dimension=2000)
    sidecar = make_app(settings, storage=storage)
    storage.put("a b.jpg", photo(400, 300), "image/jpeg", "no-cache")
    asked = f"/api/images/a%20b.jpg/url?{query}"

    response = get(sidecar, asked, QUERY_STRING=query, HTTP_AUTHORIZATION=f"Bearer {API_TOKEN}")

    assert response.status_int == status, response.text
    if status != 200:
        assert response.json == {"error": "Bad Request", "detail": answer}
        return
    body = response.json
    assert body["key"] == "a b.jpg" and body["url"].startswith("/media/_p/a%20b.jpg/")
    lifetime = 600 if "expires=" in query else 300
    assert time.time() + lifetime - 2 <= body["expires"] <= time.time() + lifetime
    path, private_query = body["url"].split("?")
    assert private_query.startswith(f"expires={body['expires']}&token=")
    image = get(sidecar, path, QUERY_STRING=private_query)
    assert (image.status_int, image.headers["Cache-Control"].split(",")[0]) == (200, "private")


def test_the_media_api_refuses_a_private_derivative_url_of_a_missing_original(
    make_settings: Callable[..., Settings], storage: CountingStorage
) -> None:
    sidecar = make_app(make_settings(api_secret=(API_TOKEN,)), storage=storage)

    query = "derivative=100x.jpg"
    bearer = f"Bearer {API_TOKEN}"
    response = get(sidecar, f"/api/images/gone.jpg/url?{query}", QUERY_STRING=query, HTTP_AUTHORIZATION=bearer)

    assert (response.status_int, response.json) == (404, {"error": "Not Found", "detail": "no original at 'gone.jpg'"})
