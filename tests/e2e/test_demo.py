"""`make demo` as a newcomer meets it: only the demo's Debian packages, a gallery of photographs whose every image
loads in Chromium, a word about files it leaves out, a clear line when a port is taken, and nothing left running
after Ctrl-C or SIGTERM."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import pyvips

from deploy.demo import free  # the demo's own test of a port
from resize_sidecar.core.signing import format_path
from tests.support.browser import ALL_LOADED, chromium
from tests.support.images import TESTDATA
from tests.support.servers import REPO, free_port, nginx_binary, world_readable_dir

pytestmark = pytest.mark.e2e

PHOTOS = [
    "photos/astronaut.jpg",
    "photos/cat-stored-sideways-exif-orientation-6.jpg",
    "photos/coffee-cup-right-of-centre.jpg",
    "photos/rocket-right-of-centre.jpg",
]


def fetch(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.headers["Content-Type"], response.read()


class Demo:
    """deploy/demo.py in a process of its own, its output read line by line as it comes."""

    def __init__(self, port: int, folder: Path | None = None) -> None:
        self.port = port
        self.folder = folder or world_readable_dir("resize-sidecar-demo-")
        env = {name: value for name, value in os.environ.items() if not name.startswith("RESIZE_SIDECAR_")}
        env |= {"DEMO_PORT": str(port), "DEMO_DIR": str(self.folder)}
        self.process = subprocess.Popen(
            [sys.executable, "deploy/demo.py"], cwd=REPO, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_for(self, pattern: str, timeout: float = 90) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ended = not self.reader.is_alive()  # read before the lines: then they are all there
            for line in self.lines:
                if found := re.search(pattern, line):
                    return found
            if ended:
                break
            time.sleep(0.2)
        raise AssertionError(f"no {pattern!r} in the demo's output:\n{''.join(self.lines)}")

    def secret(self) -> str:
        return (self.folder / "secret").read_text().strip()


def descendants(pid: int) -> set[int]:
    """Every living process started, directly or not, by ``pid``."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended meanwhile
        parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def demo_port() -> int:
    """A free port whose next two are free too: nginx's, then the sidecar's and the gallery's."""
    for _ in range(20):
        port = free_port()
        if port < 65533 and all(free(port + offset) for offset in (1, 2)):
            return port
    raise AssertionError("no three free ports in a row")


def started_demo() -> tuple[Demo, str]:
    """A running demo and the derivative URL it printed; other tests on this machine may take one of its ports
    meanwhile, and the demo then says so and stops: another try takes other ports."""
    for _ in range(3):
        demo = Demo(demo_port())
        found = demo.wait_for(r"one derivative\s+(\S+)|is already in use")
        if found[1]:
            return demo, found[1]
        demo.process.wait(timeout=30)
    raise AssertionError(f"the demo found a port in use three times:\n{''.join(demo.lines)}")


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_demo_shows_every_photo_in_chromium_and_a_signal_leaves_nothing_running(
    stop_signal: signal.Signals,
) -> None:
    nginx_binary()
    demo, example = started_demo()
    port = demo.port
    started = descendants(demo.process.pid)
    assert len(started) >= 3 + 3  # two gunicorn masters, nginx, and their workers
    browser = None
    try:
        browser = chromium(1)
        status, content_type, body = fetch(example)
        assert (status, content_type, body[:4]) == (200, "image/webp", b"RIFF")

        browser.set_script_timeout(60)
        browser.get(f"http://127.0.0.1:{port}/")
        images = browser.execute_async_script(ALL_LOADED)
        page = browser.page_source
        assert len(images) >= 4 * 3, images
        assert all(image["natural"] > 0 for image in images), images
        for key in PHOTOS:
            assert f">{key}<" in page, key

        # The sideways photo is shown upright: its EXIF orientation is applied.
        cat = format_path(PHOTOS[1], "large", "jpg", demo.secret())
        upright = pyvips.Image.new_from_buffer(fetch(f"http://127.0.0.1:{port}{cat}")[2], "")
        assert (upright.width, upright.height) == (451, 300)

        # Files the gallery leaves out are named with the sidecar's verdict on them.
        (demo.folder / "media" / "notes.txt").write_text("not a picture")
        demo.wait_for(r"^demo: the gallery leaves out notes\.txt: the sidecar refuses it as an original \(422 ")
        iphone = TESTDATA / "formats" / "IMG_5195.HEIC"
        if iphone.is_file():  # a real iPhone HEIC dropped in is shown like the others
            shutil.copyfile(iphone, demo.folder / "media" / "photos" / "IMG_5195.HEIC")
            browser.get(f"http://127.0.0.1:{port}/")
            images = browser.execute_async_script(ALL_LOADED)
            assert ">photos/IMG_5195.HEIC<" in browser.page_source
            shown = [image for image in images if "IMG_5195.HEIC" in image["current"]]
            assert shown and all(image["natural"] > 0 for image in shown), shown
    finally:
        if browser is not None:
            browser.quit()
        demo.process.send_signal(stop_signal)
        demo.process.wait(timeout=60)
    leftovers = [pid for pid in started if alive(pid)]
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)  # so that a failure here leaves nothing running either
    assert demo.process.returncode == 0, "".join(demo.lines)
    assert leftovers == []
    assert [port + offset for offset in (0, 1, 2) if listening(port + offset)] == []


@contextlib.contextmanager
def held_port_after(choose: Callable[[], int]) -> Iterator[int]:
    """A port from ``choose`` whose next one this test listens on; tries again while another test's connection
    has just taken that next one."""
    for _ in range(20):
        port = choose()
        with socket.socket() as holder:
            try:
                holder.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            holder.listen()
            yield port
            return
    raise AssertionError("no port whose next one could be held")


def test_a_port_in_use_stops_the_demo_at_once_with_one_line_and_starts_nothing() -> None:
    nginx_binary()
    with held_port_after(demo_port) as port:
        demo = Demo(port)
        demo.process.wait(timeout=60)
        output = "".join(demo.lines)
        assert demo.process.returncode == 1, output
        assert output == (
            f"demo: port {port + 1} (for the sidecar) is already in use: stop what holds it, or choose other ports, "
            f"e.g. DEMO_PORT={port + 10} make demo\n"
        )
        assert not listening(port) and not listening(port + 2)


def make(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    # As a newcomer's shell runs it, not as a make below `make test` (which would say "make[1]").
    inherited = {name: value for name, value in os.environ.items() if name not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    env = {**inherited, "PATH": path or os.environ["PATH"]}
    return subprocess.run(
        ["make", "--no-print-directory", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )


def test_make_demo_needs_only_the_demos_debian_packages() -> None:
    demo = make("-n", "demo-packages").stdout
    packages = re.search(r"for p in ([^;]+);", demo)
    assert packages, demo
    assert packages[1].split() == ["python3-venv", "nginx", "libnginx-mod-http-js"]
    suite = re.search(r"for p in ([^;]+);", make("-n", "system-packages").stdout)
    assert suite and {"chromium", "chromium-driver", *packages[1].split()} <= set(suite[1].split())
    assert re.search(r"^demo: demo-packages \S+", (REPO / "Makefile").read_text(), re.MULTILINE)


def test_a_missing_package_is_named_on_one_line_with_the_command_to_run(tmp_path: Path) -> None:
    # Not root: `id -u` answers 1000, so make says what to run instead of installing.
    (tmp_path / "id").write_text("#!/bin/sh\necho 1000\n")
    (tmp_path / "id").chmod(0o755)
    result = make(
        "demo-packages", "DEMO_PACKAGES=nginx resize-sidecar-no-such-package other-missing-one",
        path=f"{tmp_path}:{os.environ['PATH']}",
    )  # fmt: skip
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.splitlines()[0] == (
        "missing Debian packages: resize-sidecar-no-such-package other-missing-one; "
        "run: sudo apt-get install resize-sidecar-no-such-package other-missing-one"
    )
    assert result.stderr.splitlines()[1].startswith("make: ***")


def test_a_server_that_cannot_start_stops_the_demo_at_once_with_its_reason_and_the_others_with_it() -> None:
    nginx_binary()
    folder = world_readable_dir("resize-sidecar-demo-")
    (folder / "nginx" / "nginx.pid").mkdir(parents=True)  # nginx cannot write its pid file there
    for _ in range(3):  # another test may take one of the ports meanwhile: the demo then says so, and stops
        demo = Demo(demo_port(), folder)
        demo.process.wait(timeout=60)
        demo.reader.join(timeout=10)
        failure = [line for line in demo.lines if line.startswith("demo: ")]
        if not any("is already in use" in line for line in failure):
            break
    assert demo.process.returncode == 1, "".join(demo.lines)
    assert failure == [
        f'demo: nginx could not start (exit 1): open() "{folder}/nginx/nginx.pid" failed (21: Is a directory)\n'
    ]
    assert "Traceback" not in "".join(demo.lines)
    assert not any(listening(demo.port + offset) for offset in (0, 1, 2))
