"""What a legitimate request sees while slow clients hold connections (FAULTS row 35), for ``bench/reliability.py``.

One sidecar (the default two workers of four threads) on a local folder, with the rendered nginx in front. Misses
are timed one at a time, each for a new derivative: alone, then while 16 clients send their headers a byte at a
time and 16 more send API uploads (with a valid token) a byte at a time, all aimed at nginx; then straight at
gunicorn while 16 slow-header clients hold it, which is what exposing it would mean. A request that gets no answer
within ``give_up`` seconds counts as unanswered.
"""

from __future__ import annotations

import http.client
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from common import Spread  # noqa: E402

from resize_sidecar.core.signing import format_path  # noqa: E402
from tests.support.environment import isolate  # noqa: E402
from tests.support.images import photo  # noqa: E402
from tests.support.servers import SECRET, NginxServer, SidecarServer, world_readable_dir  # noqa: E402
from tests.support.slow_clients import SlowClients, slow_body, slow_headers  # noqa: E402

TOKEN = "bench-slow-clients-token-0123456789"
KEY = "bench/slow.jpg"


def _timed(url: str, path: str, give_up: float) -> tuple[int | None, float]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=give_up)
    started = time.perf_counter()
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status, round(time.perf_counter() - started, 3)
    except TimeoutError:
        return None, round(time.perf_counter() - started, 3)
    finally:
        connection.close()


def _misses(url: str, first_width: int, count: int, give_up: float) -> dict[str, Any]:
    runs = [_timed(url, format_path(KEY, f"{first_width + n}x", "jpg", SECRET), give_up) for n in range(count)]
    answered = [seconds for status, seconds in runs if status is not None]
    seconds = Spread.of(answered) if answered else None
    return {
        "statuses": sorted({str(status) for status, _ in runs}),
        "unanswered": sum(1 for status, _ in runs if status is None),
        "median_seconds": round(seconds.median, 3) if seconds else None,
        "max_seconds": seconds.high if seconds else None,
    }


def measure(slow: int = 16, misses: int = 10, give_up: float = 10.0) -> dict[str, Any]:
    """Legitimate misses alone, beside ``slow`` slow-header and ``slow`` slow-body clients at nginx, and beside
    ``slow`` slow-header clients straight at gunicorn."""
    with tempfile.TemporaryDirectory() as logs, ExitStack() as stack:
        root = world_readable_dir("resize-sidecar-bench-slow-")
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        (root / "bench").mkdir(mode=0o755)
        (root / KEY).write_bytes(photo(1600, 1200))
        env = {
            "RESIZE_SIDECAR_SECRETS": SECRET,
            "RESIZE_SIDECAR_LOCAL_ROOT": str(root),
            "RESIZE_SIDECAR_API_SECRET": TOKEN,
        }
        sidecar = stack.enter_context(SidecarServer(env, Path(logs)))
        nginx = stack.enter_context(NginxServer(env, sidecar_url=sidecar.url))
        alone = _misses(nginx.url, 200, misses, give_up)
        headers_path = format_path(KEY, "100x", "jpg", SECRET)
        with (
            SlowClients(nginx.url, slow_headers(headers_path), slow) as headers,
            SlowClients(nginx.url, slow_body("/api/images", TOKEN), slow) as bodies,
        ):
            time.sleep(1)
            at_nginx = _misses(nginx.url, 300, misses, give_up)
            at_nginx["slow_clients_reconnected"] = headers.reopened + bodies.reopened
        with SlowClients(sidecar.url, slow_headers(headers_path), slow):
            time.sleep(1)
            at_gunicorn = _misses(sidecar.url, 400, 6, give_up)
    return {
        "slow_clients": slow,
        "give_up_seconds": give_up,
        "alone": alone,
        "beside_slow_clients_at_nginx": at_nginx,
        "beside_slow_clients_at_gunicorn": at_gunicorn,
    }


def summary_lines(figures: dict[str, Any]) -> list[str]:
    def line(run: dict[str, Any]) -> str:
        answered = (
            "none answered"
            if run["median_seconds"] is None
            else (f"median {run['median_seconds']} s, slowest {run['max_seconds']} s")
        )
        return f"statuses {', '.join(run['statuses'])}; {answered}; unanswered after the give-up: {run['unanswered']}"

    return [
        "## Slow clients, row 35 (`bench/slow_edge.py`)",
        "",
        f"Legitimate misses (a new 1600x1200 JPEG derivative each), one at a time; unanswered = nothing within "
        f"{figures['give_up_seconds']} s.",
        "",
        f"- through nginx, alone: {line(figures['alone'])}",
        f"- through nginx, beside {figures['slow_clients']} slow-header and {figures['slow_clients']} slow-body "
        f"clients held at nginx: {line(figures['beside_slow_clients_at_nginx'])}; slow clients nginx dropped "
        f"(and that came back): {figures['beside_slow_clients_at_nginx']['slow_clients_reconnected']}",
        f"- straight at gunicorn, beside {figures['slow_clients']} slow-header clients (not a supported deployment): "
        f"{line(figures['beside_slow_clients_at_gunicorn'])}",
        "",
    ]


if __name__ == "__main__":
    import json

    isolate()  # credentials moto accepts, and none of the shell's RESIZE_SIDECAR_* settings
    print(json.dumps(measure(), indent=1))
