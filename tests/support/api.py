"""The media API behind real nginx and gunicorn: its secret, a small upload cap, and the stack that serves it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from resize_sidecar.core.settings import StorageKind
from tests.support.servers import Stack, media_stack

API_SECRET = "api-secret-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {API_SECRET}"}
#: Small enough that an oversized body is cheap to announce.
MAX_SOURCE_BYTES = 3_000_000


@contextmanager
def serve_api(mode: StorageKind, moto_endpoint: str, log_dir: Path) -> Iterator[Stack]:
    """nginx and the sidecar with the media API on, over local storage or a bucket on moto (``mode``)."""
    env = {
        "RESIZE_SIDECAR_API_SECRET": API_SECRET,
        "RESIZE_SIDECAR_PRESETS": "thumb=120x120-fill",
        "RESIZE_SIDECAR_MAX_SOURCE_BYTES": str(MAX_SOURCE_BYTES),
    }
    with media_stack(mode, moto_endpoint, log_dir, env) as stack:
        yield stack
