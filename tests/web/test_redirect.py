"""Redirect mode (``ON_MISS=redirect``): an S3 website endpoint or a CDN serves media and redirects misses.

A real sidecar (gunicorn) stores derivatives in a bucket on moto's S3 server. moto stores a bucket's website
configuration but serves no website, so :class:`Website` plays the website endpoint: it serves the bucket's objects
and applies the routing rules that ``resize-sidecar setup-bucket`` wrote, read back from moto.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
import requests

from resize_sidecar.core.signing import format_path
from resize_sidecar.ops.cli import main
from tests.support.images import photo
from tests.support.servers import SECRET, NginxServer, SidecarServer, raw_get

pytestmark = pytest.mark.e2e


class Website:
    """An S3 website endpoint for one bucket: ``GET /{key}`` answers the object, a miss follows the routing rules.

    Keys are percent-encoded in redirects as the sidecar expects, and the query string is kept; both are this
    stand-in's behaviour, which the README's notes on redirect mode discuss for real S3. With ``serving`` off, every
    request is a miss, as from a CDN that cached one.
    """

    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = bucket
        self.serving = True
        website = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
                status, headers, body = website.answer(self.path)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, target: str) -> tuple[int, dict[str, str], bytes]:
        path, _, query = target.partition("?")
        key = unquote(path[1:])
        if self.serving:
            try:
                found = self.client.get_object(Bucket=self.bucket, Key=key)
                return 200, {"Content-Type": found["ContentType"]}, found["Body"].read()
            except self.client.exceptions.NoSuchKey:
                pass
        for rule in self.client.get_bucket_website(Bucket=self.bucket).get("RoutingRules", []):
            condition, redirect = rule["Condition"], rule["Redirect"]
            prefix = condition.get("KeyPrefixEquals", "")
            if key.startswith(prefix) and condition.get("HttpErrorCodeReturnedEquals", "404") == "404":
                target_key = redirect["ReplaceKeyPrefixWith"] + key[len(prefix) :]
                location = f"{redirect['Protocol']}://{redirect['HostName']}/{quote(target_key)}"
                return int(redirect["HttpRedirectCode"]), {"Location": location + (f"?{query}" if query else "")}, b""
        return 404, {"Content-Type": "text/plain"}, b"no such key\n"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Setup:
    bucket: str
    client: Any
    website: Website
    sidecar: SidecarServer

    def path(self, key: str, spec: str, fmt: str, secret: str = SECRET) -> str:
        return format_path(key, spec, fmt, secret)

    def put_original(self, key: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=f"media/{key}", Body=photo(640, 480), ContentType="image/jpeg")

    def stored(self, path: str) -> bool:
        found = self.client.list_objects_v2(Bucket=self.bucket, Prefix=unquote(path[1:]))
        return bool(found.get("Contents"))

    def transforms(self) -> float:
        _, _, body = raw_get(self.sidecar.url, "/metrics")
        pattern = r"^resize_sidecar_transforms_total\{.*\} (\S+)$"
        return sum(float(value) for value in re.findall(pattern, body.decode(), re.MULTILINE))


@pytest.fixture(scope="module")
def setup(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """A sidecar in redirect mode whose public URL is the website, and the website routing misses to the sidecar.

    Keys are under the S3 prefix ``media/``, so the website's paths are the public paths (``/media/_r/…``).
    """
    import boto3

    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    bucket = f"redirect-{uuid.uuid4().hex[:12]}"
    website = Website(client, bucket)
    env = {
        "RESIZE_SIDECAR_SECRETS": SECRET,
        "RESIZE_SIDECAR_STORAGE": "s3",
        "RESIZE_SIDECAR_S3_BUCKET": bucket,
        "RESIZE_SIDECAR_S3_PREFIX": "media/",
        "RESIZE_SIDECAR_S3_ENDPOINT_URL": moto_endpoint,
        "RESIZE_SIDECAR_ON_MISS": "redirect",
        "RESIZE_SIDECAR_PUBLIC_BASE_URL": website.url,
    }
    sidecar = SidecarServer(env, tmp_path_factory.mktemp("redirect-logs"))
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        redirect_host = f"http://127.0.0.1:{sidecar.port}"
        assert main(["setup-bucket", bucket, "--public-read", "--website", "--redirect-host", redirect_host]) == 0
    with sidecar:
        yield Setup(bucket, client, website, sidecar)
    website.close()


def test_a_miss_is_stored_and_answered_with_a_302_to_its_public_url_that_no_cache_keeps(setup: Setup) -> None:
    setup.put_original("miss/photo.jpg")
    path = setup.path("miss/photo.jpg", "200x", "webp")

    status, headers, body = raw_get(setup.sidecar.url, path)

    assert (status, body) == (302, b"")
    assert headers["location"] == f"{setup.website.url}{path}?resized=1"
    assert headers["cache-control"] == "no-store"
    assert headers["x-derivative"] == "created"
    assert setup.stored(path)


def test_a_derivative_that_exists_is_redirected_at_once_without_being_made_again(setup: Setup) -> None:
    setup.put_original("again/photo.jpg")
    path = setup.path("again/photo.jpg", "120x", "jpg")
    assert raw_get(setup.sidecar.url, path)[0] == 302
    made = setup.transforms()

    for method in ("GET", "HEAD"):
        status, headers, body = raw_get(setup.sidecar.url, path, method)
        assert (status, headers["x-derivative"], body) == (302, "existing", b"")
        assert headers["location"].endswith(f"{path}?resized=1")
    assert setup.transforms() == made


def test_a_request_that_came_back_for_a_stored_derivative_is_404_not_another_redirect(setup: Setup) -> None:
    setup.put_original("loop/photo.jpg")
    path = setup.path("loop/photo.jpg", "100x100-fill", "png")
    assert raw_get(setup.sidecar.url, path)[0] == 302

    status, headers, body = raw_get(setup.sidecar.url, f"{path}?resized=1")

    assert status == 404
    assert headers["cache-control"] == "no-store"
    assert b"the redirect target does not serve this derivative" in body


def test_a_request_that_came_back_for_a_derivative_deleted_since_makes_it_again(setup: Setup) -> None:
    setup.put_original("deleted/photo.jpg")
    path = setup.path("deleted/photo.jpg", "90x", "jpg")
    assert raw_get(setup.sidecar.url, path)[0] == 302
    setup.client.delete_object(Bucket=setup.bucket, Key=unquote(path[1:]))

    status, headers, _ = raw_get(setup.sidecar.url, f"{path}?resized=1")

    assert (status, headers["x-derivative"]) == (302, "created")
    assert setup.stored(path)


def test_refusals_are_the_same_as_in_serve_mode_and_store_nothing(setup: Setup) -> None:
    setup.put_original("refused/photo.jpg")
    forged = setup.path("refused/photo.jpg", "100x", "jpg", secret="not-the-secret")
    assert raw_get(setup.sidecar.url, forged)[0] == 403
    assert raw_get(setup.sidecar.url, f"{forged}?resized=1")[0] == 403
    assert raw_get(setup.sidecar.url, setup.path("refused/none.jpg", "100x", "jpg"))[0] == 404
    assert not setup.stored(forged)


def test_a_browser_at_the_website_is_routed_to_the_sidecar_and_back_to_the_image(setup: Setup) -> None:
    key = "trips/été à la mer.jpg"
    setup.put_original(key)
    path = setup.path(key, "300x200-fill", "jpg")

    response = requests.get(setup.website.url + path, timeout=30)

    assert [step.status_code for step in response.history] == [302, 302]
    assert response.history[0].headers["location"] == f"{setup.sidecar.url}{path}"
    assert (response.status_code, response.headers["content-type"]) == (200, "image/jpeg")
    assert response.url == f"{setup.website.url}{path}?resized=1"
    assert response.content.startswith(b"\xff\xd8")


def route_misses_to(setup: Setup, host: str) -> None:
    settings = {name: value for name, value in setup.sidecar.env.items() if name.startswith("RESIZE_SIDECAR_")}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in settings.items():
            patch.setenv(name, value)
        assert main(["setup-bucket", setup.bucket, "--website", "--redirect-host", host]) == 0


def test_with_nginx_at_the_redirect_host_as_documented_a_browser_still_ends_at_the_image(setup: Setup) -> None:
    """Clients never reach gunicorn (tests/e2e/test_slow_clients.py): the website routes misses to nginx, which passes
    them to the sidecar and forwards its 302."""
    key = "nginx/photo.jpg"
    setup.put_original(key)
    path = setup.path(key, "150x", "webp")
    with NginxServer(setup.sidecar.env, sidecar_url=setup.sidecar.url) as nginx:
        route_misses_to(setup, nginx.url)
        try:
            response = requests.get(setup.website.url + path, timeout=30)
        finally:
            route_misses_to(setup, setup.sidecar.url)

    assert [step.status_code for step in response.history] == [302, 302]
    assert response.history[0].headers["location"] == f"{nginx.url}{path}"
    assert response.history[1].headers["cache-control"] == "no-store"
    assert (response.status_code, response.headers["content-type"]) == (200, "image/webp")
    assert response.url == f"{setup.website.url}{path}?resized=1"


def test_a_website_that_keeps_missing_ends_in_a_404_after_two_round_trips_not_in_a_loop(setup: Setup) -> None:
    setup.put_original("cached-miss/photo.jpg")
    path = setup.path("cached-miss/photo.jpg", "64x", "jpg")
    setup.website.serving = False
    try:
        response = requests.get(setup.website.url + path, timeout=30)
    finally:
        setup.website.serving = True

    assert [step.status_code for step in response.history] == [302, 302, 302]
    assert response.status_code == 404
    assert response.headers["cache-control"] == "no-store"


def test_redirect_mode_without_a_public_base_url_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("RESIZE_SIDECAR_ON_MISS", "redirect")
    assert main(["config"]) == 2
    assert "RESIZE_SIDECAR_PUBLIC_BASE_URL" in capsys.readouterr().err
