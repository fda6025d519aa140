"""Run the whole product on this machine: sample photographs in a local folder, the sidecar, the gallery, nginx.

``make demo`` runs this. Everything lives under ``.demo/`` in the checkout (or ``$DEMO_DIR``); Ctrl-C or SIGTERM
stops it all. ``DEMO_PORT`` (default 8080) is nginx's port; the sidecar and the gallery take the next two. The
photographs, and their licences, are in ``deploy/demo-media/`` (NOTICE.md).
"""

from __future__ import annotations

import html
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parents[1]
WORK = Path(os.environ.get("DEMO_DIR", REPO / ".demo")).resolve()
MEDIA = WORK / "media"
PHOTOS = REPO / "deploy" / "demo-media"
#: Keys in the demo's storage and the photographs they are copied from. Sorted by key, as the gallery shows them:
#: the subjects of the coffee and the rocket stand off-centre, for the smart crops.
SAMPLES = {
    "photos/astronaut.jpg": "astronaut.jpg",
    "photos/coffee-cup-right-of-centre.jpg": "coffee.jpg",
    "photos/rocket-right-of-centre.jpg": "rocket.jpg",
}
#: Made from a photograph: its pixels turned, with the EXIF tag that turns them back (see NOTICE.md).
SIDEWAYS = ("photos/cat-stored-sideways-exif-orientation-6.jpg", "chelsea.jpg")
EXAMPLE = ("photos/coffee-cup-right-of-centre.jpg", "thumb.webp")
PRESETS = "thumb=240x240-fill-sm,card=640x400-fill,large=1600x"
#: The folder of derivatives in the media folder (the default DERIVED_PREFIX).
DERIVED = "_r"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: How long a server may take to stop before it and everything it started are killed.
STOP_SECONDS = 10


class Stop(Exception):
    """SIGINT or SIGTERM: stop everything and exit 0."""


class StartError(Exception):
    """The demo cannot start; the message is one line saying why and what to do."""


def main() -> int:
    for number in STOP_SIGNALS:
        signal.signal(number, _stop)
    try:
        return run()
    except StartError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1
    except Stop:
        return 0


def run() -> int:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        raise StartError("nginx is not installed; run: sudo apt-get install nginx libnginx-mod-http-js")
    port = int(os.environ.get("DEMO_PORT", "8080"))
    ports = {"nginx": port, "the sidecar": port + 1, "the gallery": port + 2}
    for name, taken in ports.items():
        if not free(taken):
            raise StartError(
                f"port {taken} (for {name}) is already in use: stop what holds it, or choose other ports, e.g. "
                f"DEMO_PORT={port + 10} make demo"
            )
    prepare_media()
    check_readable_by_nginx_workers(MEDIA)
    env = {
        **os.environ,
        "RESIZE_SIDECAR_STORAGE": "local",
        "RESIZE_SIDECAR_LOCAL_ROOT": str(MEDIA),
        "RESIZE_SIDECAR_SECRETS": demo_secret(),
        "RESIZE_SIDECAR_PRESETS": PRESETS,
        "RESIZE_SIDECAR_SERVE_ORIGINALS": "false",
    }
    nginx_url = f"http://127.0.0.1:{port}"
    sidecar_url, gallery_url = f"http://127.0.0.1:{port + 1}", f"http://127.0.0.1:{port + 2}"
    nginx_prefix = WORK / "nginx"
    nginx_prefix.mkdir(exist_ok=True)
    (nginx_prefix / "nginx.conf").write_text(
        cli(env, "nginx", "--listen", f"127.0.0.1:{port}", "--sidecar", sidecar_url, "--app", gallery_url)
    )
    nginx_log = nginx_prefix / "error.log"
    nginx_log.unlink(missing_ok=True)
    commands = {
        "the sidecar": [sys.executable, "-m", "resize_sidecar.ops.cli", "serve", "--bind", sidecar_url[7:], "--workers",
                        "2"],
        "the gallery": [sys.executable, "-m", "gunicorn", "--bind", gallery_url[7:], "examples.gallery:application"],
        # -e: nginx's start-up errors go to its log, where a failed start is read from.
        "nginx": [nginx, "-p", f"{nginx_prefix}/", "-c", str(nginx_prefix / "nginx.conf"), "-e", str(nginx_log),
                  "-g", "daemon off;"],
    }  # fmt: skip
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, command in commands.items():
            # A session of its own: the terminal's Ctrl-C reaches only this script, which stops each server in turn.
            processes[name] = subprocess.Popen(command, env=env, cwd=REPO, start_new_session=True)
        wait_until_up(processes, nginx_log, f"{sidecar_url}/healthz", f"{nginx_url}/")
        example = cli(env, "url", *EXAMPLE).strip()
        print(
            f"\nresize-sidecar demo is running (Ctrl-C stops it):\n"
            f"  gallery            {nginx_url}/\n"
            f"  one derivative     {nginx_url}{example}\n"
            f"  sidecar metrics    {sidecar_url}/metrics\n"
            f"  originals          {MEDIA} (add images and reload)\n"
            f"  nginx config       {nginx_prefix / 'nginx.conf'}\n",
            flush=True,
        )
        watch(processes, nginx_url, env)
        return 1
    finally:
        for number in STOP_SIGNALS:
            signal.signal(number, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        stop(processes)


def _stop(signum: int, frame: FrameType | None) -> None:
    raise Stop(signal.Signals(signum).name)


def cli(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "resize_sidecar.ops.cli", *args], env=env, check=True, capture_output=True, text=True,
        cwd=REPO,
    ).stdout  # fmt: skip


def free(port: int) -> bool:
    """Whether nginx or gunicorn could listen on the port (both set SO_REUSEADDR)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def prepare_media() -> None:
    """The sample photographs, copied into the media folder unless they are there already."""
    import pyvips

    MEDIA.mkdir(parents=True, exist_ok=True)
    for folder in (WORK, MEDIA):
        folder.chmod(0o755)
    for key, name in SAMPLES.items():
        target = MEDIA / key
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(PHOTOS / name, target)
    key, name = SIDEWAYS
    if not (MEDIA / key).exists():
        # Turned a quarter anticlockwise, with Orientation 6 ("turn 90° clockwise to display") written by libvips.
        turned = pyvips.Image.new_from_file(str(PHOTOS / name)).rot270().copy()
        turned.set_type(pyvips.GValue.gint_type, "orientation", 6)
        turned.jpegsave(str(MEDIA / key), Q=85)
    for path in MEDIA.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def demo_secret() -> str:
    """A secret kept across runs, so URLs stay valid while the demo is restarted."""
    path = WORK / "secret"
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def check_readable_by_nginx_workers(folder: Path) -> None:
    """nginx started by root serves files as another user, who must be able to enter every parent folder."""
    if os.geteuid() != 0:
        return
    for parent in [folder, *folder.parents]:
        if not parent.stat().st_mode & 0o001:
            print(
                f"warning: {parent} is not searchable by other users; nginx's workers cannot read {folder}.\n"
                f"Every hit will then fall back to the sidecar. Fix: chmod o+x {parent}",
                file=sys.stderr,
            )
            return


def wait_until_up(
    processes: dict[str, subprocess.Popen[bytes]], nginx_log: Path, *urls: str, timeout: float = 60.0
) -> None:
    """Return when every URL answers; stop at once if a server exits (a port taken since the check, a bad setting).

    Raises:
        StartError: a server exited, saying why when nginx did, or the URLs did not answer in time.
    """
    deadline = time.monotonic() + timeout
    for url in urls:
        while True:
            for name, process in processes.items():
                if process.poll() is not None:
                    raise StartError(f"{name} could not start (exit {process.returncode}): {why(name, nginx_log)}")
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise StartError(f"{url} did not answer within {timeout:.0f} s") from None
                time.sleep(0.2)


def why(name: str, nginx_log: Path) -> str:
    if name == "nginx" and nginx_log.exists():
        # "2026/01/02 03:04:05 [emerg] 123#123: bind() to 127.0.0.1:8080 failed (98: Address already in use)"
        errors = re.findall(r"\[emerg\] [0-9#]+: (.*)", nginx_log.read_text(errors="replace"))
        if errors:
            return str(errors[-1])
    return "its messages are above"


def watch(processes: dict[str, subprocess.Popen[bytes]], nginx_url: str, env: dict[str, str]) -> None:
    """Until a server stops: say which files dropped into the media folder the gallery leaves out, and why."""
    seen: set[str] = set()
    while all(process.poll() is None for process in processes.values()):
        keys = set(original_keys())
        if keys != seen:
            try:
                for key, reason in left_out(sorted(keys - seen), nginx_url, env):
                    print(f"demo: the gallery leaves out {key}: {reason}", file=sys.stderr, flush=True)
                seen = keys
            except OSError:
                pass  # the gallery did not answer this time: look again at the next round
        time.sleep(1)
    stopped = [name for name, process in processes.items() if process.poll() is not None]
    print(f"demo: stopped unexpectedly: {', '.join(stopped)}", file=sys.stderr)


def original_keys() -> Iterator[str]:
    """Keys of the files in the media folder, without derivatives and hidden files."""
    for folder, folders, files in os.walk(MEDIA):
        top = folder == str(MEDIA)
        folders[:] = [name for name in folders if not name.startswith(".") and not (top and name == DERIVED)]
        for name in files:
            if not name.startswith("."):
                yield (Path(folder) / name).relative_to(MEDIA).as_posix()


def left_out(keys: list[str], nginx_url: str, env: dict[str, str]) -> Iterator[tuple[str, str]]:
    """The keys the gallery's page does not show (it names each original it shows), with the reason."""
    if not keys:
        return
    with urllib.request.urlopen(f"{nginx_url}/", timeout=10) as response:
        page = response.read().decode()
    for key in keys:
        if f">{html.escape(key)}<" not in page:
            yield key, verdict(key, nginx_url, env)


def verdict(key: str, nginx_url: str, env: dict[str, str]) -> str:
    """What the sidecar says of the file as an original, asked for one derivative of it."""
    try:
        path = cli(env, "url", key, "large.jpg").strip()
    except subprocess.CalledProcessError as error:
        return f"its name cannot be a key ({error.stderr.strip().removeprefix('resize-sidecar: ')})"
    try:
        urllib.request.urlopen(f"{nginx_url}{path}", timeout=60).close()
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace").strip()
        return f"the sidecar refuses it as an original ({error.code} {detail})"
    except OSError as error:
        return f"the sidecar did not answer for it ({error})"
    listed = "the gallery lists only JPEG, PNG, WebP, AVIF, GIF, HEIC, TIFF and BMP files"
    return f"{listed}; the sidecar makes derivatives of it: {nginx_url}{path}"


def stop(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    """Stop every server and all it started: SIGTERM, then a kill of its whole session after STOP_SECONDS."""
    for process in processes.values():
        if process.poll() is None:
            # nginx's fast shutdown, gunicorn's graceful one (idle workers end at once); a server still starting up
            # ends without a traceback, as SIGINT would leave.
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    for name, process in processes.items():
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"demo: {name} did not stop in {STOP_SECONDS} s; killing it", file=sys.stderr)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


if __name__ == "__main__":
    sys.exit(main())
