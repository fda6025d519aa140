"""Load: the requests each server gets (a new derivative every time) and the load generators that send them.

wrk (``paths.lua``) is the load generator of real runs; :func:`python_load` is a small threaded client for smoke
runs, where wrk may be missing and numbers do not matter.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from resize_sidecar.core.signing import DerivativeSpec, format_path

BENCH = Path(__file__).resolve().parent
#: The sidecar's gravities and thumbor's alignments that make the same crop; every one costs the same.
GRAVITIES = {
    "c": ("center", "middle"),
    "n": ("center", "top"),
    "s": ("center", "bottom"),
    "e": ("right", "middle"),
    "w": ("left", "middle"),
    "ne": ("right", "top"),
    "nw": ("left", "top"),
    "se": ("right", "bottom"),
    "sw": ("left", "bottom"),
}
#: Fit boxes from 400x300 to 400x4095: distinct derivatives of one key, identical pixels for a landscape original
#: (its width binds), so each fit request is new work of the same cost.
FIT_HEIGHTS = range(300, 4096)
THUMBOR_FORMATS = {"jpg": "jpeg", "webp": "webp", "avif": "avif", "png": "png", "gif": "gif"}


@dataclass(frozen=True)
class Operation:
    """What one request makes: a 400x300 box in a mode and a format."""

    name: str
    mode: str  # fit or fill
    fmt: str
    width: int = 400
    height: int = 300

    @property
    def variants(self) -> int:
        return len(FIT_HEIGHTS) if self.mode == "fit" else len(GRAVITIES)


OPERATIONS = {
    op.name: op
    for op in (
        Operation("fit-jpg", "fit", "jpg"),
        Operation("fill-webp", "fill", "webp"),
        Operation("fit-avif", "fit", "avif"),
        Operation("fit-webp", "fit", "webp"),
    )
}


def sidecar_path(key: str, op: Operation, variant: int, secret: str, quality: int | None = None) -> str:
    if op.mode == "fit":
        spec = DerivativeSpec(op.width, FIT_HEIGHTS[variant], quality=quality)
    else:
        spec = DerivativeSpec(op.width, op.height, mode="fill", gravity=list(GRAVITIES)[variant], quality=quality)
    return format_path(key, spec, op.fmt, secret)


def floor_path(key: str, op: Operation, variant: int) -> str:
    height = FIT_HEIGHTS[variant] if op.mode == "fit" else op.height
    return f"/{op.mode}/{op.width}x{height}/{op.fmt}/{key}"


def thumbor_path(key: str, op: Operation, variant: int, quality: int) -> str:
    filters = f"filters:format({THUMBOR_FORMATS[op.fmt]}):quality({quality})"
    if op.mode == "fit":
        return f"/unsafe/fit-in/{op.width}x{FIT_HEIGHTS[variant]}/{filters}/{key}"
    horizontal, vertical = list(GRAVITIES.values())[variant]
    return f"/unsafe/{op.width}x{op.height}/{horizontal}/{vertical}/{filters}/{key}"


#: sharp's gravities (ipx's ``pos_``) for the sidecar's.
SHARP_GRAVITIES = {
    "c": "centre",
    "n": "north",
    "s": "south",
    "e": "east",
    "w": "west",
    "ne": "northeast",
    "nw": "northwest",
    "se": "southeast",
    "sw": "southwest",
}


def ipx_path(key: str, op: Operation, variant: int, quality: int) -> str:
    options = f"q_{quality},f_{THUMBOR_FORMATS[op.fmt]}"
    if op.mode == "fit":
        return f"/s_{op.width}x{FIT_HEIGHTS[variant]},fit_inside,{options}/{key}"
    return f"/s_{op.width}x{op.height},fit_cover,pos_{SHARP_GRAVITIES[list(GRAVITIES)[variant]]},{options}/{key}"


@dataclass
class UrlPool:
    """Hands out paths that were never requested before from one server's storage: (key, variant) pairs in order."""

    keys: Sequence[str]
    op: Operation
    make: Callable[[str, Operation, int], str]
    used: int = 0

    def take(self, count: int) -> list[str]:
        available = len(self.keys) * self.op.variants - self.used
        if count > available:
            raise RuntimeError(f"only {available} new {self.op.name} derivatives left; make more keys")
        paths = []
        for index in range(self.used, self.used + count):
            key_index, variant = divmod(index, self.op.variants)
            paths.append(self.make(self.keys[key_index], self.op, variant))
        self.used += count
        return paths


@dataclass
class LoadResult:
    """One load run, as the load generator saw it."""

    requests: int
    seconds: float
    non2xx: int = 0
    socket_errors: int = 0
    timeouts: int = 0
    created: int = 0
    wrapped: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    checked: bool = False  # whether ``created`` was counted (the sidecar says X-Derivative: created)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def problems(self) -> list[str]:
        found = []
        if self.non2xx:
            found.append(f"{self.non2xx} non-2xx answers")
        if self.socket_errors or self.timeouts:
            found.append(f"{self.socket_errors} socket errors, {self.timeouts} timeouts")
        if self.wrapped:
            found.append("ran out of new paths (some requests were repeats)")
        if self.checked and self.created < self.requests - self.non2xx:
            found.append(f"{self.requests - self.non2xx - self.created} answered from storage, not made")
        return found


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def wrk_load(
    base_url: str,
    paths: list[str] | None,
    *,
    connections: int,
    seconds: float,
    threads: int,
    work: Path,
    check_created: bool = False,
    fixed_path: str = "/",
) -> LoadResult:
    """Run wrk against ``base_url``: over ``paths`` (each at most once) or, without paths, one ``fixed_path``."""
    env = {**os.environ, "BENCH_THREADS": str(threads)}
    if paths is not None:
        work.mkdir(parents=True, exist_ok=True)
        paths_file = work / f"paths-{os.getpid()}-{time.monotonic_ns()}.txt"
        paths_file.write_text("\n".join(paths) + "\n")
        env["BENCH_PATHS"] = str(paths_file)
    if check_created:
        env["BENCH_CHECK"] = "1"
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-s",
        str(BENCH / "paths.lua"),
        base_url + (fixed_path if paths is None else "/"),
    ]
    try:
        finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 60)
    finally:
        if paths is not None:
            paths_file.unlink(missing_ok=True)
    for line in finished.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            data = json.loads(line.removeprefix("BENCH_JSON "))
            return LoadResult(
                requests=data["requests"],
                seconds=data["duration_us"] / 1e6,
                non2xx=data["non2xx"],
                socket_errors=data["socket_errors"],
                timeouts=data["timeouts"],
                created=data["created"],
                wrapped=data["wrapped"],
                p50_ms=data["p50_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
                checked=check_created,
            )
    raise RuntimeError(f"wrk printed no result (exit {finished.returncode}):\n{finished.stdout}\n{finished.stderr}")


@dataclass
class Fetched:
    """What :func:`fetch_all` saw: each answer's seconds, the count of each status (``error``: a socket error,
    which has no latency) and the answers the sidecar made (``X-Derivative: created``)."""

    latencies: list[float]
    statuses: dict[str, int]
    created: int


def fetch_all(base_url: str, paths: list[str], connections: int, timeout: float = 60, rate: float = 0.0) -> Fetched:
    """Request every path once, in order, from ``connections`` threads, each on one keep-alive connection.

    ``rate`` (requests per second, 0: as fast as answers come) paces the requests: path i is due ``i / rate`` s
    after the start, and its latency counts from then, so a server that falls behind is charged for the wait of
    the requests it delayed (a paced client that timed from the send would leave that wait out).
    """
    host, port = base_url.removeprefix("http://").split(":")
    lock = threading.Lock()
    queue = list(reversed(list(enumerate(paths))))
    fetched = Fetched([], {}, 0)
    begun = time.perf_counter()

    def worker() -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
        try:
            while True:
                with lock:
                    if not queue:
                        return
                    index, path = queue.pop()
                started = time.perf_counter()
                if rate:
                    due = begun + index / rate
                    time.sleep(max(0.0, due - started))
                    started = due
                try:
                    connection.request("GET", path)
                    response = connection.getresponse()
                    response.read()
                except OSError:
                    connection.close()
                    with lock:
                        fetched.statuses["error"] = fetched.statuses.get("error", 0) + 1
                    continue
                with lock:
                    fetched.latencies.append(time.perf_counter() - started)
                    status = str(response.status)
                    fetched.statuses[status] = fetched.statuses.get(status, 0) + 1
                    fetched.created += response.getheader("X-Derivative") == "created"
        finally:
            connection.close()

    workers = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return fetched


def python_load(base_url: str, paths: list[str], *, connections: int, check_created: bool = False) -> LoadResult:
    """Request every path once from ``connections`` threads, each on one keep-alive connection."""
    started = time.perf_counter()
    fetched = fetch_all(base_url, paths, connections)
    seconds = time.perf_counter() - started
    latencies = sorted(fetched.latencies)
    return LoadResult(
        requests=len(latencies),
        seconds=seconds,
        non2xx=sum(count for status, count in fetched.statuses.items() if status != "error" and status[0] != "2"),
        socket_errors=fetched.statuses.get("error", 0),
        created=fetched.created if check_created else 0,
        p50_ms=statistics.median(latencies) * 1000 if latencies else 0.0,
        p99_ms=latencies[int(len(latencies) * 0.99)] * 1000 if latencies else 0.0,
        checked=check_created,
    )
