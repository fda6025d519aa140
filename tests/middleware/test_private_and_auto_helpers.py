"""The template helpers make private and .auto URLs from the same keywords as the builder."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from webob import Request

from resize_sidecar.core import private
from resize_sidecar.core.settings import Settings
from resize_sidecar.core.urls import MediaURLs
from resize_sidecar.middleware import MediaMiddleware
from resize_sidecar.middleware.core import ENVIRON_KEY
from tests.support.images import photo
from tests.support.templates import jinja_environment, media_template_engine

SECRET = "helpers-secret-0123456789abcdef"


@pytest.fixture
def urls() -> MediaURLs:
    return MediaURLs(Settings(secrets=(SECRET,)))


def assert_private(url: str) -> None:
    path, query = url.replace("&amp;", "&").split("?")
    assert path.startswith("/media/_p/a%20b.jpg/"), url
    private.check(path, query, [SECRET], time.time())


def test_django_tags_take_private_and_expires_in_as_arguments_not_attributes(urls: MediaURLs) -> None:
    template = media_template_engine().from_string(
        '{% load media_urls %}{% media_url key width=10 private=True expires_in=600 %}|'
        '{% media_img key width=10 private=True expires_in=600 densities="1" %}|'
        '{% media_url key width=10 format="auto" %}'
    )
    from django.template import Context

    request = type("Request", (), {"META": {ENVIRON_KEY: urls}})()
    built, img, best = template.render(Context({"key": "a b.jpg", "request": request})).split("|")

    assert_private(built)
    found = re.fullmatch(r'<img src="([^"]+)" srcset="([^"]+) 1x" width="10" alt="">', img)
    assert found, img
    assert found[1] == found[2]
    assert_private(found[1])
    assert best == urls.derivative("a b.jpg", width=10, format="auto")


def test_jinja_media_url_makes_private_and_auto_urls(urls: MediaURLs) -> None:
    template = jinja_environment(urls).from_string(
        "{{ media_url('a b.jpg', width=10, private=True, expires_in=600) }} {{ media_url('a b.jpg', format='auto') }}"
    )

    built, best = template.render().split()

    assert_private(built)
    assert best == urls.derivative("a b.jpg", format="auto")


def test_development_serving_answers_private_urls_through_the_sidecar_stored_or_not(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    root = Path(settings.local_root)
    root.mkdir(parents=True)
    (root / "a b.jpg").write_bytes(photo(400, 300))
    middleware = MediaMiddleware(lambda environ, start_response: [], settings, serve_media=True)
    url = MediaURLs(settings).derivative("a b.jpg", width=100, private=True, expires_in=600)
    path = url.split("?")[0]
    expired = f"{path}?{private.query(path, int(time.time()) - 1, settings.secrets[0])}"

    answers = [Request.blank(each, environ={"RAW_URI": each}).get_response(middleware) for each in (url, url, expired)]

    assert [(answer.status_int, answer.content_type) for answer in answers[:2]] == [(200, "image/jpeg")] * 2
    assert answers[0].body == answers[1].body
    assert all(answer.headers["Cache-Control"].startswith("private, max-age=") for answer in answers[:2])
    assert (answers[2].status_int, answers[2].text) == (403, "Forbidden: the private URL has expired\n")
    assert (root / "_p" / "a b.jpg" / "100x.jpg").read_bytes() == answers[0].body
