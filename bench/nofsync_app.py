"""The sidecar's WSGI app with ``os.fsync`` made a no-op, to measure what durable local writes cost under load.

Not a proposal to drop it (a crash could then leave an empty derivative that nginx serves): a measurement of how
long a sync worker waits for the disk instead of rendering. ``gunicorn ... --pythonpath bench nofsync_app:app``.
"""

from __future__ import annotations

import os
from typing import Any

from resize_sidecar.web.app import make_app


def _no_fsync(fd: Any) -> None:
    """Stand-in for os.fsync in this process only."""


os.fsync = _no_fsync
app = make_app()
