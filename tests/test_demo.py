"""`make demo` runs what the README promises: nginx, the sidecar and the gallery, with working image URLs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.servers import REPO, free_port, nginx_binary, world_readable_dir

pytestmark = pytest.mark.e2e


def fetch(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.headers["Content-Type"], response.read()


def test_the_demo_serves_the_gallery_and_the_derivative_it_prints() -> None:
    nginx_binary()
    port = free_port()  # the demo also takes the next two ports, for the sidecar and the gallery
    env = {**os.environ, "DEMO_PORT": str(port), "DEMO_DIR": str(world_readable_dir("resize-sidecar-demo-"))}
    env = {name: value for name, value in env.items() if not name.startswith("RESIZE_SIDECAR_")}
    demo = subprocess.Popen(
        [sys.executable, "deploy/demo.py"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        output = ""
        deadline = time.monotonic() + 60
        assert demo.stdout is not None
        while "one derivative" not in output and time.monotonic() < deadline and demo.poll() is None:
            output += demo.stdout.readline()
        example = re.search(r"one derivative\s+(\S+)", output)
        assert example, output
        status, content_type, page = fetch(f"http://127.0.0.1:{port}/")
        assert (status, content_type.split(";")[0]) == (200, "text/html")
        images = re.findall(r'src="(/media/_r/[^"]+)"', page.decode())
        assert len(images) >= 3
        for path in [example[1].removeprefix(f"http://127.0.0.1:{port}"), *images]:
            status, content_type, body = fetch(f"http://127.0.0.1:{port}{path.replace('&amp;', '&')}")
            assert status == 200 and content_type.startswith("image/") and body, path
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=30)
    assert demo.returncode == 0
