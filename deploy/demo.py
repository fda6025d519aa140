"""Run the whole product on this machine: sample images in a local folder, the sidecar, the gallery, nginx.

``make demo`` runs this. Everything lives under ``.demo/`` in the checkout (or ``$DEMO_DIR``); Ctrl-C stops it
all. ``DEMO_PORT`` (default 8080) is nginx's port; the sidecar and the gallery take the next two.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = Path(os.environ.get("DEMO_DIR", REPO / ".demo")).resolve()
MEDIA = WORK / "media"
SHARED_IMAGES = REPO.parent / "shared" / "testdata" / "images"
# Real photos that show what the sidecar does: EXIF rotation, GPS stripping, CMYK, progressive, animation.
SHARED_SAMPLES = {
    "photos/rotated-exif-6.jpg": "orientation/Landscape_6.jpg",
    "photos/camera-with-gps.jpg": "exif/DSCN0010.jpg",
    "photos/fox-progressive.jpg": "formats/fox.progressive.jpg",
    "photos/cmyk-print.jpg": "formats/Channel_digital_image_CMYK_color.jpg",
    "animations/loop.webp": "formats/animated-loop-3.webp",
}
PRESETS = "thumb=240x240-fill-sm,card=640x400-fill,large=1600x"


def main() -> int:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        print("nginx is not installed: run `make demo` (installs it as root) or `sudo apt-get install nginx`")
        return 1
    prepare_media()
    check_readable_by_nginx_workers(MEDIA)
    port = int(os.environ.get("DEMO_PORT", "8080"))
    env = {
        **os.environ,
        "RESIZE_SIDECAR_STORAGE": "local",
        "RESIZE_SIDECAR_LOCAL_ROOT": str(MEDIA),
        "RESIZE_SIDECAR_SECRETS": demo_secret(),
        "RESIZE_SIDECAR_PRESETS": PRESETS,
        "RESIZE_SIDECAR_SERVE_ORIGINALS": "false",
    }
    sidecar_url, gallery_url = f"http://127.0.0.1:{port + 1}", f"http://127.0.0.1:{port + 2}"
    python = sys.executable
    nginx_prefix = WORK / "nginx"
    nginx_prefix.mkdir(exist_ok=True)
    config = subprocess.run(
        [python, "-m", "resize_sidecar.cli", "nginx", "--listen", f"127.0.0.1:{port}",
         "--sidecar", sidecar_url, "--app", gallery_url],
        env=env, check=True, capture_output=True, text=True, cwd=REPO,
    ).stdout  # fmt: skip
    (nginx_prefix / "nginx.conf").write_text(config)
    commands = {
        "sidecar": [python, "-m", "resize_sidecar.cli", "serve", "--bind", sidecar_url[7:], "--workers", "2"],
        "gallery": [python, "-m", "gunicorn", "--bind", gallery_url[7:], "examples.gallery:application"],
        "nginx": [nginx, "-p", f"{nginx_prefix}/", "-c", str(nginx_prefix / "nginx.conf"), "-e", "stderr",
                  "-g", "daemon off;"],
    }  # fmt: skip
    processes = {name: subprocess.Popen(command, env=env, cwd=REPO) for name, command in commands.items()}
    try:
        wait_until_up(f"{sidecar_url}/healthz", f"http://127.0.0.1:{port}/")
        example = subprocess.run(
            [python, "-m", "resize_sidecar.cli", "url", "generated/dawn.jpg", "card.webp"],
            env=env, check=True, capture_output=True, text=True, cwd=REPO,
        ).stdout.strip()  # fmt: skip
        print(
            f"\nresize-sidecar demo is running (Ctrl-C stops it):\n"
            f"  gallery            http://127.0.0.1:{port}/\n"
            f"  one derivative     http://127.0.0.1:{port}{example}\n"
            f"  sidecar metrics    {sidecar_url}/metrics\n"
            f"  originals          {MEDIA}\n"
            f"  nginx config       {nginx_prefix / 'nginx.conf'}\n",
            flush=True,
        )
        while all(process.poll() is None for process in processes.values()):
            time.sleep(0.5)
        stopped = [name for name, process in processes.items() if process.poll() is not None]
        print(f"stopped unexpectedly: {', '.join(stopped)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            process.wait(timeout=15)


def prepare_media() -> None:
    """Sample originals: generated ones always, and a few real photos when the shared test images are here."""
    MEDIA.mkdir(parents=True, exist_ok=True)
    for folder in (WORK, MEDIA):
        folder.chmod(0o755)
    import pyvips

    for name, (width, height, hue) in {
        "generated/dawn.jpg": (3000, 2000, (250, 140, 90)),
        "generated/tower.jpg": (1600, 2400, (90, 150, 240)),
        "generated/square.png": (1200, 1200, (120, 220, 160)),
    }.items():
        target = MEDIA / name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            sample_image(pyvips, width, height, hue).write_to_file(str(target))
    if SHARED_IMAGES.is_dir():
        for name, source in SHARED_SAMPLES.items():
            target = MEDIA / name
            if not target.exists() and (SHARED_IMAGES / source).is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(SHARED_IMAGES / source, target)
    for path in MEDIA.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def sample_image(pyvips: object, width: int, height: int, hue: tuple[int, int, int]) -> object:
    """A soft gradient with rings: enough structure to see crops and sharpness at a glance."""
    xy = pyvips.Image.xyz(width, height)  # type: ignore[attr-defined]
    fade = xy[1] / height
    rings = ((((xy[0] - width / 2) ** 2 + (xy[1] - height / 2) ** 2) ** 0.5) % 160) / 160
    bands = [(fade * channel + rings * (255 - channel) * 0.35) for channel in hue]
    return bands[0].bandjoin(bands[1:]).cast("uchar")


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


def wait_until_up(*urls: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    for url in urls:
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s") from None
                time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
