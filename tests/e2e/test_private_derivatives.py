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
from resize_sidecar.core.urls import MediaURLs
from resize_sidecar.media.storage import delete_derivatives
from tests.support.expiry import assert_private_cache_control
from tests.support.images import image_size_and_format, photo
from tests.support.keys import AWKWARD_KEYS, stored_key
from tests.support.servers import SECRET, Stack, media_stack, raw_get

pytestmark = pytest.mark.e2e

REFUSALS = {
    "expired": b"Forbidden: the private URL has expired\n",
    "token": b"Forbidden: the private URL's token does not match\n",
    "query": b"Forbidden: a private URL needs ?expires={unix}&token={token}\n",
}




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


@pytest.mark.parametrize("key", AWKWARD_KEYS)
def test_a_fresh_private_url_is_made_once_then_served_by_nginx_with_the_sidecar_stopped(
    edge_stack: Stack, edge_urls: MediaURLs, key: str
) -> None:
    edge_stack.storage.put(key, photo(900, 600), "image/jpeg", "no-cache")
    url = edge_urls.derivative(key, width=300, format="webp", private=True, expires_in=600)

    asked = time.time()
    status, made, body = edge_stack.get(url)

    assert (status, made["content-type"]) == (200, "image/webp"), body
    assert image_size_and_format(body) == (300, 200, "webpload")
    assert_private_cache_control(made["cache-control"], expires_of(url), asked, time.time())
    assert [item.key for item in edge_stack.storage.list(f"_p/{key}/")] == [stored_key(url)]
    assert edge_stack.derivatives_of(key) == []
    later = edge_urls.derivative(key, width=300, format="webp", private=True, expires_in=6000)
    assert later != url and urlsplit(later).path == urlsplit(url).path
    with sidecar_stopped(edge_stack):
        for each in (url, later):
            asked = time.time()
            hit_status, hit, again = edge_stack.get(each)
            assert (hit_status, hit["content-type"], again) == (200, "image/webp", body)
            assert_private_cache_control(hit["cache-control"], expires_of(each), asked, time.time())
            assert "vary" not in hit


def test_an_expired_or_forged_private_url_is_refused_by_nginx_with_the_sidecar_stopped(
    edge_stack: Stack, edge_urls: MediaURLs
) -> None:
    key = "private/refused.jpg"
    edge_stack.storage.put(key, photo(400, 300), "image/jpeg", "no-cache")
    url = edge_urls.derivative(key, width=100, private=True, expires_in=600)
    assert edge_stack.get(url)[0] == 200
    path, query = url.split("?")
    tampered = re.sub(r"expires=([0-9]+)", lambda found: f"expires={int(found[1]) + 86400}", url)
    refused = {
        "expired": signed_until(url, int(time.time()) - 1),
        "token": tampered,
        "query": path,
        "reordered": f"{path}?{'&'.join(reversed(query.split('&')))}",
    }

    with sidecar_stopped(edge_stack):
        answers = {name: edge_stack.get(each) for name, each in refused.items()}

    for name, (status, headers, body) in answers.items():
        assert (status, body) == (403, REFUSALS.get(name, REFUSALS["query"])), name
        assert headers["cache-control"] == "no-store", name
    assert [item.key for item in edge_stack.storage.list(f"_p/{key}/")] == [stored_key(url)]


def test_the_sidecar_checks_the_token_and_the_expiry_of_a_miss_itself(edge_stack: Stack, edge_urls: MediaURLs) -> None:
    key = "private/sidecar-checks.jpg"
    edge_stack.storage.put(key, photo(400, 300), "image/jpeg", "no-cache")
    url = edge_urls.derivative(key, width=120, private=True, expires_in=600)
    expired = signed_until(url, int(time.time()) - 1)
    tampered = re.sub(r"token=([0-9a-f])", lambda found: "token=" + ("0" if found[1] != "0" else "1"), url)

    assert raw_get(edge_stack.sidecar.url, expired)[::2] == (403, REFUSALS["expired"])
    assert raw_get(edge_stack.sidecar.url, tampered)[::2] == (403, REFUSALS["token"])
    assert raw_get(edge_stack.sidecar.url, urlsplit(url).path)[::2] == (403, REFUSALS["query"])
    assert edge_stack.storage.list(f"_p/{key}/") == []


def test_a_private_derivatives_name_signs_no_public_derivative(edge_stack: Stack, edge_urls: MediaURLs) -> None:
    key = "private/not-public.jpg"
    edge_stack.storage.put(key, photo(400, 300), "image/jpeg", "no-cache")
    url = edge_urls.derivative(key, width=100, private=True)
    assert edge_stack.get(url)[0] == 200

    public = urlsplit(url).path.replace("/media/_p/", "/media/_r/", 1)

    assert edge_stack.get(public)[::2] == (403, b"Forbidden: signature does not match\n")
    assert edge_stack.derivatives_of(key) == []


def test_anonymous_readers_of_the_bucket_cannot_read_private_derivatives(
    edge_stack: Stack, edge_urls: MediaURLs, moto_endpoint: str
) -> None:
    if edge_stack.mode != "s3":
        pytest.skip("a bucket policy is S3's")
    key = "private/bucket.jpg"
    edge_stack.storage.put(key, photo(400, 300), "image/jpeg", "no-cache")
    private_url = edge_urls.derivative(key, width=100, private=True)
    public_url = edge_urls.derivative(key, width=100)
    assert edge_stack.get(private_url)[0] == edge_stack.get(public_url)[0] == 200
    bucket = edge_stack.settings.s3_bucket
    stored = {url: stored_key(url) for url in (private_url, public_url)}

    assert raw_get(moto_endpoint, f"/{bucket}/{stored[public_url]}")[0] == 200
    assert raw_get(moto_endpoint, f"/{bucket}/{stored[private_url]}")[0] == 403


def test_deleting_an_original_deletes_its_private_derivatives_too(edge_stack: Stack, edge_urls: MediaURLs) -> None:
    key = "private/deleted.jpg"
    edge_stack.storage.put(key, photo(400, 300), "image/jpeg", "no-cache")
    url = edge_urls.derivative(key, width=100, private=True)
    assert edge_stack.get(url)[0] == 200

    edge_stack.storage.delete(key)
    deleted = delete_derivatives(edge_stack.storage, key, edge_stack.settings.derived_prefix)

    assert (deleted, edge_stack.storage.list(f"_p/{key}/")) == (1, [])
    status, headers, body = edge_stack.get(url)
    if edge_stack.mode == "s3":
        # nginx's cache keeps a deleted derivative, private or public, for up to NGINX_CACHE_VALID (docs/design.md).
        assert (status, headers["x-cache-status"]) == (200, "HIT")
    else:
        assert (status, body) == (404, f"Not Found: no original at {key!r}\n".encode())


def test_where_nginx_cannot_read_private_derivatives_the_sidecar_checks_every_request_and_nothing_is_cached(
    moto_endpoint: str, edge_urls: MediaURLs, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """S3 read anonymously, with nginx's cache on: the bucket lets no one read ``_p/``, so private URLs go to the
    sidecar, and an answer cached for a fresh URL must not be served to an expired one."""
    key = "private/anonymous.jpg"
    env = {"RESIZE_SIDECAR_NGINX_CACHE_SIZE": "16m"}
    with media_stack("s3", moto_endpoint, tmp_path_factory.mktemp("private-anonymous"), env) as anonymous:
        anonymous.storage.put(key, photo(400, 300), "image/jpeg", "no-cache")
        url = edge_urls.derivative(key, width=100, private=True, expires_in=600)
        fresh = [anonymous.get(url) for _ in range(2)]
        refused = anonymous.get(signed_until(url, int(time.time()) - 1))
        anonymous.sidecar.stop()
        unanswered = anonymous.get(url)

    assert [(status, headers["content-type"]) for status, headers, _ in fresh] == [(200, "image/jpeg")] * 2
    assert [headers.get("x-cache-status") for _, headers, _ in fresh] == ["BYPASS", "BYPASS"]
    assert refused[::2] == (403, REFUSALS["expired"])
    assert unanswered[0] == 502
