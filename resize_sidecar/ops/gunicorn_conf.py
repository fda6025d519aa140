"""gunicorn settings for the sidecar (``resize-sidecar serve`` passes this module as ``--config``).

Command-line options given by ``serve`` (bind, workers, threads) override these.

Worker model, measured on 2 cores (bench/results/experiments.md): threaded workers (``gthread``), one process per
CPU with 4 threads each. A miss waits on storage five times (nginx's look, the sidecar's one under its lock, the
original, the write, and the look at the original that confirms it was not deleted or replaced meanwhile); with
30 ms to S3 (and five waits then too), 2 sync workers made 0.4 to 0.55 of their 0 ms
throughput, 4 sync workers 0.7 to 0.8, and 2 workers of 4 threads 0.97 to 1.0, as fast as sync workers on local
storage. The transform slots (two per CPU) keep the CPU work of those threads to what the machine can do.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import sys
import tempfile
from typing import Any

# mallopt()'s parameter number for the most arenas (glibc's malloc.h).
_M_ARENA_MAX = -8


def _limit_malloc_arenas(count: int) -> None:
    """Let glibc's malloc make at most ``count`` arenas in this process and the workers it forks.

    glibc gives each thread its own arenas; libvips' large, short-lived buffers then fragment memory without bound.
    The MALLOC_ARENA_MAX variable is read when a process starts (setting it here would change nothing, measured:
    8 threads of a forked worker still made 9 arenas), while mallopt() applies to arenas made afterwards.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return  # set before start-up, so glibc has applied it already
    # Without glibc (musl, macOS) there is no mallopt, and nothing to limit.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(_M_ARENA_MAX, count)


# Loopback by default: gunicorn must only ever hear nginx, which reads whole requests before passing them on. Its
# threads read headers and bodies themselves, without a deadline, so clients sending slowly would hold them all.
bind = "127.0.0.1:8000"
workers = 2
worker_class = "gthread"
threads = 4
# A threaded worker's main loop reports to the arbiter while its threads work, so this kills a worker whose process is
# stuck (its locks are then released), not a slow request: an encoder pass libvips cannot stop at the transform
# deadline runs to its end in its thread (bounded by the source limits and encoder efforts; see imaging).
timeout = 30
graceful_timeout = 10
# A backstop against slow growth of native memory in long-lived workers.
max_requests = 1000
max_requests_jitter = 100
# Recent gunicorn opens a control socket at one fixed path per user, which several servers on a host would share;
# nothing here uses it.
control_socket_disable = True
errorlog = "-"
loglevel = "info"


#: Whether the metrics folder was made by this server (and so is removed when it stops).
_metrics_dir_owned = False


def on_starting(server: Any) -> None:
    """Prepare the environment the workers inherit, before the first one is forked; importing this module changes
    nothing. Start from empty metric files: values left from an earlier run would be added to this one's."""
    global _metrics_dir_owned
    # One libvips thread per transform: the transform slots already use every core, and more threads only add
    # contention. libvips reads it when it starts, in each worker as it loads the app.
    os.environ.setdefault("VIPS_CONCURRENCY", "1")
    _limit_malloc_arenas(2)
    # Metrics from every worker are added up from files in this folder (prometheus-client's multiprocess mode).
    # It must be set before prometheus_client is imported, which happens when the app loads in the workers.
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="resize-sidecar-metrics-")
        _metrics_dir_owned = True
    metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    for name in os.listdir(metrics_dir):
        if name.endswith(".db"):
            os.unlink(os.path.join(metrics_dir, name))


def post_fork(server: Any, worker: Any) -> None:
    """Print the app's request log, one JSON line per request, bare on stderr (gunicorn's access log stays off)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    request_log = logging.getLogger("resize_sidecar.requests")
    request_log.addHandler(handler)
    request_log.setLevel(logging.INFO)
    request_log.propagate = False


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:
    if _metrics_dir_owned:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
