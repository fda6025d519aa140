"""The example gallery's media: a local folder of originals nginx can read, its settings, and the demo's stack."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.servers import SECRET, GunicornServer, NginxServer, SidecarServer, world_readable_dir

#: The original the examples' pages show by name.
KEY = "Été/example photo.jpg"


def make_media_root(originals: dict[str, bytes]) -> Path:
    """A local storage folder holding ``originals``, readable by nginx's workers."""
    root = world_readable_dir("resize-sidecar-examples-")
    for key, data in originals.items():
        path = root / key
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o644)
    return root


def media_env(media_root: Path) -> dict[str, str]:
    return {
        "RESIZE_SIDECAR_STORAGE": "local",
        "RESIZE_SIDECAR_LOCAL_ROOT": str(media_root),
        "RESIZE_SIDECAR_SECRETS": SECRET,
        "RESIZE_SIDECAR_SERVE_ORIGINALS": "true",
        "EXAMPLE_KEY": KEY,
    }


@contextmanager
def run_gallery(env: dict[str, str], logs: Path) -> Iterator[NginxServer]:
    """The demo as ``make demo`` runs it: the sidecar and the gallery under gunicorn, nginx in front of both."""
    demo_env = {**env, "RESIZE_SIDECAR_SERVE_ORIGINALS": "false"}
    with (
        SidecarServer(demo_env, logs) as sidecar,
        GunicornServer("examples.gallery:application", demo_env, logs, workers=2) as gallery,
        NginxServer(demo_env, sidecar_url=sidecar.url, app_url=gallery.url) as nginx,
    ):
        yield nginx
