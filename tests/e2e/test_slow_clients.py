"""Slow clients (FAULTS row 35): the sidecar's gunicorn never faces clients; nginx, in front of it in every
documented deployment, holds them instead.

gunicorn's threaded workers read a request's headers and body in the thread that will answer it: 16 connections
sending headers a byte at a time hold the 8 threads of the default two workers, and nothing else is answered (the
first test shows it, which is also what makes the others meaningful). nginx reads whole requests before it passes
them on, with timeouts, so the same clients aimed at it hold only its connections. Each deployment the README
documents is tried: nginx and a local folder, the container stack of ``deploy/compose.yaml`` (S3, the image's own
serve command), and redirect mode, which also has nginx in front.
"""

from __future__ import annotations

import http.client
import json
import shlex
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.dockerfile import dockerfile_instruction
from tests.support.images import photo
from tests.support.servers import REPO, SECRET, SidecarServer, Stack, media_stack, raw_get
from tests.support.slow_clients import SlowClients, slow_body, slow_headers

pytestmark = pytest.mark.e2e

TOKEN = "slow-clients-api-token-0123456789"
SLOW = 16

DEPLOYMENTS = {
    "nginx and local storage": ("local", {}),
    "the container stack": ("s3", {}),
    "redirect mode": (
        "s3",
        {"RESIZE_SIDECAR_ON_MISS": "redirect", "RESIZE_SIDECAR_PUBLIC_BASE_URL": "https://media.example.com"},
    ),
}


@pytest.fixture(params=list(DEPLOYMENTS))
def deployment(request: pytest.FixtureRequest, moto_endpoint: str, tmp_path: Path) -> Iterator[Stack]:
    mode, env = DEPLOYMENTS[request.param]
    with media_stack(mode, moto_endpoint, tmp_path, {"RESIZE_SIDECAR_API_SECRET": TOKEN, **env}) as stack:
        yield stack


def answers_within(url: str, path: str, seconds: float) -> int | None:
    """The status of one GET, or None when nothing comes within ``seconds``."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=seconds)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except TimeoutError:
        return None
    finally:
        connection.close()


def test_slow_headers_straight_at_gunicorn_stop_every_answer(tmp_path: Path) -> None:
    """Why gunicorn must not face clients: slow connections hold all 8 threads, and even /healthz waits.

    16 are enough when the two workers accept 8 each (bench/slow_edge.py measures that case); 4 times as many make
    sure that neither worker is left with a free thread, however the connections are shared out.
    """
    env = {"RESIZE_SIDECAR_SECRETS": SECRET, "RESIZE_SIDECAR_LOCAL_ROOT": str(tmp_path / "media")}
    with SidecarServer(env, tmp_path) as sidecar:
        with SlowClients(sidecar.url, slow_headers("/healthz"), 4 * SLOW):
            assert answers_within(sidecar.url, "/healthz", 3) is None
        assert raw_get(sidecar.url, "/healthz")[0] == 200  # and it recovers once they go


def test_slow_headers_and_slow_bodies_at_nginx_leave_the_sidecar_free(deployment: Stack) -> None:
    key = f"slow/{uuid.uuid4().hex}.jpg"
    deployment.storage.put(key, photo(800, 600), "image/jpeg", "no-cache")
    miss = deployment.url(key, "300x", "webp")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with (
        SlowClients(deployment.nginx.url, slow_headers(miss), SLOW) as headers,
        SlowClients(deployment.nginx.url, slow_body("/api/images", TOKEN), SLOW) as bodies,
    ):
        time.sleep(2 * headers.interval)  # both kinds have sent more since they connected

        status, answer, body = deployment.get(miss)
        if deployment.sidecar.env.get("RESIZE_SIDECAR_ON_MISS") == "redirect":
            assert (status, answer["location"]) == (302, f"https://media.example.com{miss}?resized=1")
        else:
            assert (status, answer["content-type"], body[:4]) == (200, "image/webp", b"RIFF")
        status, _, body = deployment.get_with("GET", "/api/images?prefix=slow/", b"", auth)
        assert status == 200
        assert [item["key"] for item in json.loads(body)["items"]] == [key]
        status, _, body = deployment.get_with("POST", "/api/images", photo(64, 48), auth)
        assert status == 201, body

        assert headers.reopened == bodies.reopened == 0  # they were held all along, not dropped


def test_the_container_stack_publishes_only_nginx_and_runs_the_serve_command_tested_here() -> None:
    compose = yaml.safe_load((REPO / "deploy/compose.yaml").read_text())
    published = sorted(name for name, service in compose["services"].items() if service.get("ports"))
    assert published == ["nginx"]
    sidecar = compose["services"]["sidecar"]
    assert sidecar["command"] == dockerfile_instruction("CMD")
    # SidecarServer runs `serve` with two workers and the default four threads, as the image does.
    assert shlex.join(sidecar["command"]).endswith("--workers 2 --threads 4")
    assert "--sidecar http://sidecar:8000" in compose["services"]["nginx-config"]["command"][-1]
