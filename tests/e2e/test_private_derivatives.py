"""Private derivatives through real nginx and gunicorn, over local storage and over moto's S3 server (read with
SigV4, the bucket's public policy covering ``_r/`` only): nginx checks the token and the expiry with njs before it
reads the stored object, so an expired or forged URL is refused and a fresh one served with the sidecar stopped.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest

from resize_sidecar.core import private
from resize_sidecar.core.settings import Settings
from resize_sidecar.core.urls import MediaURLs
from resize_sidecar.media.storage import delete_derivatives
from tests.support.images import image_size_and_format, photo
from tests.support.keys import AWKWARD_KEYS
from tests.support.servers import SECRET, Stack, media_stack, raw_get

pytestmark = pytest.mark.e2e

REFUSALS = {
    "expired": b"Forbidden: the private URL has expired\n",
    "token": b"Forbidden: the private URL's token does not match\n",
    "query": b"Forbidden: a private URL needs ?expires={unix}&token={token}\n",
}


@pytest.fixture(scope="module", params=["local", "s3"])
def stack(
    request: pytest.FixtureRequest, moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    env = {"RESIZE_SIDECAR_NGINX_S3_AUTH": "sigv4"}
    with media_stack(request.param, moto_endpoint, tmp_path_factory.mktemp(f"private-{request.param}"), env) as up:
        yield up


@pytest.fixture(scope="module")
def urls() -> MediaURLs:
    return MediaURLs(Settings(secrets=(SECRET,)))


@contextmanager
def sidecar_stopped(stack: Stack) -> Iterator[None]:
    stack.sidecar.stop()
    try:
        yield
    finally:
        stack.sidecar.start()


def expires_of(url: str) -> int:
    found = re.search(r"[?&]expires=([0-9]+)", url)
    assert found, url
    return int(found[1])


def signed_until(url: str, expires: int) -> str:
    """``url`` with another expiry and a token that signs it: a URL the site could have made."""
    path = urlsplit(url).path
    return f"{path}?{private.query(path, expires, SECRET)}"


def assert_private_cache_control(value: str, expires: int) -> None:
    found = re.fullmatch(r"private, max-age=([0-9]+)", value)
    assert found, value
    assert expires - time.time() - 2 <= int(found[1]) <= expires - time.time() + 1


@pytest.mark.parametrize("key", AWKWARD_KEYS)
def test_a_fresh_private_url_is_made_once_then_served_by_nginx_with_the_sidecar_stopped(
    stack: Stack, urls: MediaURLs, key: str
) -> None:
    stack.storage.put(key, photo(900, 600), "image/jpeg", "no-cache")
    url = urls.derivative(key, width=300, format="webp", private=True, expires_in=600)
    name = urlsplit(url).path.rsplit("/", 1)[1]

    status, made, body = stack.get(url)

    assert (status, made["content-type"]) == (200, "image/webp"), body
    assert image_size_and_format(body) == (300, 200, "webpload")
    assert_private_cache_control(made["cache-control"], expires_of(url))
    assert [item.key for item in stack.storage.list(f"_p/{key}/")] == [f"_p/{key}/{name}"]
    assert stack.derivatives_of(key) == []
    later = urls.derivative(key, width=300, format="webp", private=True, expires_in=6000)
    assert later != url and urlsplit(later).path == urlsplit(url).path
    with sidecar_stopped(stack):
        for each in (url, later):
            hit_status, hit, again = stack.get(each)
            assert (hit_status, hit["content-type"], again) == (200, "image/webp", body)
            assert_private_cache_control(hit["cache-control"], expires_of(each))
            assert "vary" not in hit


def test_an_expired_or_forged_private_url_is_refused_by_nginx_with_the_sidecar_stopped(
    stack: Stack, urls: MediaURLs
) -> None:
    key = "private/refused.jpg"
    stack.storage.put(key, photo(400, 300), "image/jpeg", "no-cache")
    url = urls.derivative(key, width=100, private=True, expires_in=600)
    assert stack.get(url)[0] == 200
    path, query = url.split("?")
    tampered = re.sub(r"expires=([0-9]+)", lambda found: f"expires={int(found[1]) + 86400}", url)
    refused = {
        "expired": signed_until(url, int(time.time()) - 1),
        "token": tampered,
        "query": path,
        "reordered": f"{path}?{'&'.join(reversed(query.split('&')))}",
    }

    with sidecar_stopped(stack):
        answers = {name: stack.get(each) for name, each in refused.items()}

    for name, (status, headers, body) in answers.items():
        assert (status, body) == (403, REFUSALS.get(name, REFUSALS["query"])), name
        assert headers["cache-control"] == "no-store", name
    assert [item.key for item in stack.storage.list(f"_p/{key}/")] == [f"_p/{key}/{urlsplit(url).path.rsplit('/')[-1]}"]


def test_the_sidecar_checks_the_token_and_the_expiry_of_a_miss_itself(stack: Stack, urls: MediaURLs) -> None:
    key = "private/sidecar-checks.jpg"
    stack.storage.put(key, photo(400, 300), "image/jpeg", "no-cache")
    url = urls.derivative(key, width=120, private=True, expires_in=600)
    expired = signed_until(url, int(time.time()) - 1)
    tampered = re.sub(r"token=([0-9a-f])", lambda found: "token=" + ("0" if found[1] != "0" else "1"), url)

    assert raw_get(stack.sidecar.url, expired)[::2] == (403, REFUSALS["expired"])
    assert raw_get(stack.sidecar.url, tampered)[::2] == (403, REFUSALS["token"])
    assert raw_get(stack.sidecar.url, urlsplit(url).path)[::2] == (403, REFUSALS["query"])
    assert stack.storage.list(f"_p/{key}/") == []


def test_a_private_derivatives_name_signs_no_public_derivative(stack: Stack, urls: MediaURLs) -> None:
    key = "private/not-public.jpg"
    stack.storage.put(key, photo(400, 300), "image/jpeg", "no-cache")
    url = urls.derivative(key, width=100, private=True)
    assert stack.get(url)[0] == 200

    public = urlsplit(url).path.replace("/media/_p/", "/media/_r/", 1)

    assert stack.get(public)[::2] == (403, b"Forbidden: signature does not match\n")
    assert stack.derivatives_of(key) == []


def test_anonymous_readers_of_the_bucket_cannot_read_private_derivatives(
    stack: Stack, urls: MediaURLs, moto_endpoint: str
) -> None:
    if stack.mode != "s3":
        pytest.skip("a bucket policy is S3's")
    key = "private/bucket.jpg"
    stack.storage.put(key, photo(400, 300), "image/jpeg", "no-cache")
    private_url = urls.derivative(key, width=100, private=True)
    public_url = urls.derivative(key, width=100)
    assert stack.get(private_url)[0] == stack.get(public_url)[0] == 200
    bucket = stack.settings.s3_bucket
    stored = {url: urlsplit(url).path.removeprefix("/media/") for url in (private_url, public_url)}

    assert raw_get(moto_endpoint, f"/{bucket}/{stored[public_url]}")[0] == 200
    assert raw_get(moto_endpoint, f"/{bucket}/{stored[private_url]}")[0] == 403


def test_deleting_an_original_deletes_its_private_derivatives_too(stack: Stack, urls: MediaURLs) -> None:
    key = "private/deleted.jpg"
    stack.storage.put(key, photo(400, 300), "image/jpeg", "no-cache")
    url = urls.derivative(key, width=100, private=True)
    assert stack.get(url)[0] == 200

    stack.storage.delete(key)
    deleted = delete_derivatives(stack.storage, key, stack.settings.derived_prefix)

    assert (deleted, stack.storage.list(f"_p/{key}/")) == (1, [])
    assert stack.get(url)[::2] == (404, f"Not Found: no original at {key!r}\n".encode())


def test_where_nginx_cannot_read_private_derivatives_the_sidecar_checks_every_request_and_nothing_is_cached(
    moto_endpoint: str, urls: MediaURLs, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """S3 read anonymously, with nginx's cache on: the bucket lets no one read ``_p/``, so private URLs go to the
    sidecar, and an answer cached for a fresh URL must not be served to an expired one."""
    key = "private/anonymous.jpg"
    env = {"RESIZE_SIDECAR_NGINX_CACHE_SIZE": "16m"}
    with media_stack("s3", moto_endpoint, tmp_path_factory.mktemp("private-anonymous"), env) as anonymous:
        anonymous.storage.put(key, photo(400, 300), "image/jpeg", "no-cache")
        url = urls.derivative(key, width=100, private=True, expires_in=600)
        fresh = [anonymous.get(url) for _ in range(2)]
        refused = anonymous.get(signed_until(url, int(time.time()) - 1))
        anonymous.sidecar.stop()
        unanswered = anonymous.get(url)

    assert [(status, headers["content-type"]) for status, headers, _ in fresh] == [(200, "image/jpeg")] * 2
    assert [headers.get("x-cache-status") for _, headers, _ in fresh] == ["BYPASS", "BYPASS"]
    assert refused[::2] == (403, REFUSALS["expired"])
    assert unanswered[0] == 502
