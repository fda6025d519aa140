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
    sidecar: SidecarApp, storage: CountingStorage, urls: MediaURLs, caplog: pytest.LogCaptureFixture
) -> None:
    url = urls.derivative("a b.jpg", width=100, format="webp", private=True, expires_in=600)
    expires = int(re.findall(r"expires=([0-9]+)", url)[0])

    with caplog.at_level(logging.INFO, logger="resize_sidecar.requests"):
        response = get(sidecar, url.split("?")[0], QUERY_STRING=url.split("?")[1])

    assert (response.status_int, response.content_type) == (200, "image/webp"), response.text
    assert image_size_and_format(response.body) == (100, 75, "webpload")
    found = re.fullmatch(r"private, max-age=([0-9]+)", response.headers["Cache-Control"])
    assert found and expires - time.time() - 2 <= int(found[1]) <= expires - time.time() + 1
    assert "Vary" not in response.headers
    name = url.split("?")[0].rsplit("/", 1)[1]
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
    stem = url.rsplit("/", 1)[1].removesuffix(".auto")
    assert [item.key for item in storage.list("_r/")] == [f"_r/a b.jpg/{stem}.{fmt}"]
    assert logged(caplog)["fmt"] == fmt
