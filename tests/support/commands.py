"""What an operator's command gave when run in this process (the ``cli`` fixture runs it): its exit code, output
and errors; and the settings of a bucket on moto that make a silent store fail fast."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.servers import SECRET


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def lines(self) -> list[str]:
        """The lines of stdout, runs of spaces (column padding) made one."""
        return [" ".join(line.split()) for line in self.out.splitlines()]

    def items(self, status: str) -> list[str]:
        """What the lines of one status name (a URL, a file, a key)."""
        return [line.split()[-1] for line in self.out.splitlines() if line.startswith(f"{status} ")]


Run = Callable[..., Result]


def local_env(root: Path, **more: str) -> dict[str, str]:
    """Settings for local storage under ``root`` (made if missing), with one preset."""
    root.mkdir(exist_ok=True)
    return {
        "RESIZE_SIDECAR_SECRETS": SECRET,
        "RESIZE_SIDECAR_LOCAL_ROOT": str(root),
        "RESIZE_SIDECAR_PRESETS": "thumb=100x100-fill",
        **more,
    }


def s3_env(endpoint: str, bucket: str, **more: str) -> dict[str, str]:
    """Settings for a bucket on moto; short timeouts and no retries, so a silent store fails within a second."""
    return {
        "RESIZE_SIDECAR_SECRETS": SECRET,
        "RESIZE_SIDECAR_STORAGE": "s3",
        "RESIZE_SIDECAR_S3_BUCKET": bucket,
        "RESIZE_SIDECAR_S3_ENDPOINT_URL": endpoint,
        "RESIZE_SIDECAR_S3_CONNECT_TIMEOUT": "1",
        "RESIZE_SIDECAR_S3_READ_TIMEOUT": "1",
        "RESIZE_SIDECAR_S3_MAX_ATTEMPTS": "1",
        "RESIZE_SIDECAR_PRESETS": "thumb=100x100-fill",
        "RESIZE_SIDECAR_PUBLIC_BASE_URL": "https://cdn.example.com",
        **more,
    }
