#!/usr/bin/env python3
"""Soak: many mixed requests through nginx and gunicorn over local storage, watching the workers (FAULTS row 29, F7).

    python bench/soak.py                      # 10,000 requests, 4 workers: writes bench/results/soak.{md,json}
    python bench/soak.py --requests 2000 --out /tmp/soak

The mix, from a fixed seed: hits (derivatives nginx serves from storage), misses (a new derivative each), bombs
(a pixel flood refused from its header) and bad signatures. A bounded pool of clients keeps a fixed number of
requests in flight. Every ``--sample-every`` requests the workers' resident memory and open descriptors are
sampled and the storage folder is searched for temporary files left behind. gunicorn's
``max_requests`` recycling is turned off for the run, so the same workers serve every request and a leak shows
instead of being recycled away; a worker that died shows as a changed pid. A miss that finds every transform slot
busy for the whole overload wait is shed with 503 and ``Retry-After`` (by design, under overload): such answers
are counted apart from other 5xx.

``tests/e2e/test_soak.py`` runs a short soak in every test run and asserts what is not a timing.
"""

from __future__ import annotations

import http.client
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
# The tests load this file by its path: the benchmark's folder then comes last, where it shadows nothing.
if str(REPO / "bench") not in sys.path:
    sys.path.append(str(REPO / "bench"))

from common import RESULTS, arguments, command_line, write_results  # noqa: E402

from resize_sidecar.core.signing import format_path  # noqa: E402
from resize_sidecar.media.local import LocalStorage  # noqa: E402
from tests.support.environment import isolate  # noqa: E402
from tests.support.faults import Workers, open_fds, png_header_only, rss_kib  # noqa: E402
from tests.support.images import photo  # noqa: E402
from tests.support.servers import SECRET, NginxServer, SidecarServer, world_readable_dir  # noqa: E402

#: Share of each kind of request in the mix.
MIX = {"hit": 0.5, "miss": 0.25, "bomb": 0.125, "bad_signature": 0.125}
EXPECTED = {"hit": 200, "miss": 200, "bomb": 422, "bad_signature": 403}
ORIGINALS = 4
HOT_DERIVATIVES = 40
TEMP_PREFIX = ".resize-sidecar-tmp-"


@dataclass
class Sample:
    """The workers, after ``requests`` requests."""

    requests: int
    rss_mib: dict[int, float]  # per worker pid
    open_fds: dict[int, int]
    temp_files: int

    @property
    def rss_total_mib(self) -> float:
        return sum(self.rss_mib.values())

    @property
    def fds_total(self) -> int:
        return sum(self.open_fds.values())


@dataclass
class SoakResult:
    requests: int
    workers: int
    clients: int
    seconds: float
    statuses: dict[str, dict[str, int]]  # kind -> status -> count
    unexpected: int  # answers whose status is not the one their kind must get (shed misses included)
    server_errors: int  # 5xx other than shedding, or no answer at all
    shed: int  # 503 with Retry-After: every transform slot stayed busy
    latency_ms: dict[str, dict[str, float]]  # kind -> p50, p99
    samples: list[Sample] = field(default_factory=list)
    workers_unchanged: bool = True

    @property
    def rss_ratio(self) -> float:
        """F7: the workers' memory at the end over their memory at the first sample."""
        return self.samples[-1].rss_total_mib / self.samples[0].rss_total_mib

    @property
    def rss_ratio_second_half(self) -> float:
        """The same over the second half of the run only: near 1 once memory has levelled off."""
        middle = self.samples[(len(self.samples) - 1) // 2]
        return self.samples[-1].rss_total_mib / middle.rss_total_mib

    @property
    def fd_growth(self) -> int:
        return self.samples[-1].fds_total - self.samples[0].fds_total


class Client:
    """One keep-alive connection per thread to nginx; reconnects when nginx closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.local = threading.local()

    def get(self, path: str) -> tuple[int, bool]:
        """The status of the answer, and whether it said when to retry."""
        for attempt in range(2):
            connection = getattr(self.local, "connection", None)
            if connection is None:
                connection = self.local.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                connection.request("GET", path, headers={"Accept-Encoding": "identity"})
                response = connection.getresponse()
                response.read()
                return response.status, response.getheader("Retry-After") is not None
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # nginx closed a keep-alive connection between requests: once more on a new one.
                connection.close()
                self.local.connection = None
                if attempt:
                    raise
        raise AssertionError("not reached")


def plan(requests: int, seed: int = 29) -> list[tuple[str, str]]:
    """The requests of the run, in order, as (kind, path): the same every time for the same count."""
    chooser = random.Random(seed)
    keys = [f"soak/original-{n}.jpg" for n in range(ORIGINALS)]
    hot = [format_path(keys[n % ORIGINALS], f"{160 + n}x", "webp", SECRET) for n in range(HOT_DERIVATIVES)]
    bomb = format_path("soak/bomb.png", "300x", "jpg", SECRET)
    # Every miss is a derivative never asked for before, drawn from one shuffled set of sizes and formats: the
    # work of a miss is the same early and late in the run, so memory that keeps growing is not the mix growing.
    unseen = [(key, width, fmt) for key in keys for width in range(200, 1400) for fmt in ("jpg", "webp")]
    chooser.shuffle(unseen)
    kinds, weights = list(MIX), list(MIX.values())
    steps: list[tuple[str, str]] = []
    for n in range(requests):
        kind = chooser.choices(kinds, weights)[0]
        if kind == "hit":
            path = hot[n % HOT_DERIVATIVES]
        elif kind == "miss":
            key, width, fmt = unseen.pop()
            path = format_path(key, f"{width}x", fmt, SECRET)
        elif kind == "bomb":
            path = bomb
        else:
            good = hot[chooser.randrange(HOT_DERIVATIVES)]
            flip = chooser.randrange(good.rindex("-") + 1, good.rindex("."))  # a digit of the signature
            path = good[:flip] + ("0" if good[flip] != "0" else "1") + good[flip + 1 :]
        steps.append((kind, path))
    return steps


def sample(workers: Workers, root: Path, requests: int) -> Sample:
    pids = workers.current()
    return Sample(
        requests=requests,
        rss_mib={pid: round(rss_kib(pid) / 1024, 1) for pid in pids},
        open_fds={pid: open_fds(pid) for pid in pids},
        temp_files=sum(1 for _ in root.rglob(f"{TEMP_PREFIX}*")),
    )


@contextmanager
def stack(workers: int, log_dir: Path, slots: int) -> Iterator[tuple[NginxServer, SidecarServer, Path]]:
    """nginx in front of gunicorn over a fresh local folder holding the originals; torn down afterwards."""
    root = world_readable_dir("resize-sidecar-soak-")
    storage = LocalStorage(root)
    for n in range(ORIGINALS):
        storage.put(f"soak/original-{n}.jpg", photo(1200 + 40 * n, 800), "image/jpeg", "")
    storage.put("soak/bomb.png", png_header_only(100_000, 100_000), "image/png", "")
    env = {
        "RESIZE_SIDECAR_SECRETS": SECRET,
        "RESIZE_SIDECAR_STORAGE": "local",
        "RESIZE_SIDECAR_LOCAL_ROOT": str(root),
        # Transform slots are shared by every sidecar using one lock folder: keep other runs out of ours.
        "RESIZE_SIDECAR_LOCK_DIR": str(world_readable_dir("resize-sidecar-soak-locks-")),
        "RESIZE_SIDECAR_MAX_CONCURRENT_TRANSFORMS": str(slots),
        # The same workers for the whole run: recycling would hide a leak.
        "GUNICORN_CMD_ARGS": "--max-requests 0",
    }
    try:
        sidecar = SidecarServer(env, log_dir, workers=workers)
        with sidecar:
            nginx = NginxServer(env, sidecar_url=sidecar.url)
            with nginx:
                yield nginx, sidecar, root
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(env["RESIZE_SIDECAR_LOCK_DIR"], ignore_errors=True)


def run_soak(
    requests: int, *, workers: int, clients: int, sample_every: int, log_dir: Path, slots: int = 0
) -> SoakResult:
    """Drive the mix, sampling the workers every ``sample_every`` requests (and at the end).

    ``slots``: transforms at once on the machine (``MAX_CONCURRENT_TRANSFORMS``; 0, the default, is two per CPU).
    """
    steps = plan(requests)
    with stack(workers, log_dir, slots) as (nginx, sidecar, root):
        assert sidecar.process is not None
        watched = Workers.of(sidecar.process.pid, workers)
        client = Client(nginx.port)
        # Warm-up: make the hot derivatives once, so that from here on they are hits nginx serves.
        for _, path in {step for step in steps if step[0] == "hit"}:
            client.get(path)
        answers: list[tuple[str, int, bool, float]] = []

        def one(step: tuple[str, str]) -> tuple[str, int, bool, float]:
            started = time.perf_counter()
            try:
                status, retry_after = client.get(step[1])
            except OSError:
                status, retry_after = 0, False
            return step[0], status, retry_after, time.perf_counter() - started

        samples = []
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=clients) as pool:
            for first in range(0, len(steps), sample_every):
                answers += pool.map(one, steps[first : first + sample_every])
                samples.append(sample(watched, root, len(answers)))
        seconds = time.perf_counter() - started
        unchanged = watched.unchanged()

    statuses: dict[str, Counter[int]] = {kind: Counter() for kind in MIX}
    latencies: dict[str, list[float]] = {kind: [] for kind in MIX}
    for kind, status, _, took in answers:
        statuses[kind][status] += 1
        latencies[kind].append(1000 * took)
    shed = sum(1 for _, status, retry_after, _ in answers if status == 503 and retry_after)
    return SoakResult(
        requests=len(answers),
        workers=workers,
        clients=clients,
        seconds=round(seconds, 2),
        statuses={kind: {str(s): n for s, n in sorted(counts.items())} for kind, counts in statuses.items()},
        unexpected=sum(1 for kind, status, _, _ in answers if status != EXPECTED[kind]),
        server_errors=sum(1 for _, status, _, _ in answers if status >= 500 or status == 0) - shed,
        shed=shed,
        latency_ms={kind: percentiles(values) for kind, values in latencies.items() if values},
        samples=samples,
        workers_unchanged=unchanged,
    )


def percentiles(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {"p50": round(values[0], 2), "p99": round(values[0], 2)}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(cuts[49], 2), "p99": round(cuts[98], 2)}


def write_report(result: SoakResult, out: Path, command: str) -> None:
    data = asdict(result) | {
        "rss_ratio": round(result.rss_ratio, 3),
        "rss_ratio_second_half": round(result.rss_ratio_second_half, 3),
        "fd_growth": result.fd_growth,
    }
    first, last = result.samples[0], result.samples[-1]
    lines = [
        f"# Soak: {result.requests} mixed requests through nginx and gunicorn (local storage)",
        "",
        f"Command: `{command}`. {result.workers} sync workers (max_requests off), {result.clients} clients,",
        f"{result.seconds} s ({result.requests / result.seconds:.0f} requests/s), load average at the end "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.",
        "",
        "| after requests | workers' RSS, total (MiB) | largest worker (MiB) | open descriptors | temporary files |",
        "|---|---|---|---|---|",
        *(
            f"| {s.requests} | {s.rss_total_mib:.1f} | {max(s.rss_mib.values()):.1f} | {s.fds_total} | {s.temp_files} |"
            for s in result.samples
        ),
        "",
        f"- RSS after {last.requests} / after {first.requests}: **{result.rss_ratio:.3f}** (target ≤ 1.1); "
        f"over the second half of the run: **{result.rss_ratio_second_half:.3f}**",
        f"- open descriptors grew by **{result.fd_growth}**; temporary files left: **{last.temp_files}**",
        f"- 5xx other than shedding, or no answer: **{result.server_errors}**; misses shed with 503 and "
        f"Retry-After: **{result.shed}**; answers other than expected: **{result.unexpected}**",
        f"- same worker pids from start to end: **{result.workers_unchanged}**",
        "",
        "| kind | share | statuses | p50 (ms) | p99 (ms) |",
        "|---|---|---|---|---|",
    ]
    for kind, share in MIX.items():
        counts = ", ".join(f"{status}: {n}" for status, n in result.statuses[kind].items())
        latency = result.latency_ms.get(kind, {"p50": 0.0, "p99": 0.0})
        lines.append(f"| {kind} | {share:.0%} | {counts} | {latency['p50']} | {latency['p99']} |")
    write_results(out, "soak", "\n".join(lines) + "\n", data)


def main(argv: list[str] | None = None) -> int:
    isolate()  # credentials moto accepts, and none of the shell's RESIZE_SIDECAR_* settings
    parser = arguments(__doc__, out=RESULTS)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--clients", type=int, default=8, help="requests in flight at once")
    parser.add_argument("--sample-every", type=int, default=1000, help="sample the workers every N requests")
    parser.add_argument("--slots", type=int, default=0, help="MAX_CONCURRENT_TRANSFORMS (0: two per CPU)")
    args = parser.parse_args(argv)
    log_dir = Path(tempfile.mkdtemp(prefix="resize-sidecar-soak-logs-"))
    print(f"server logs in {log_dir}", file=sys.stderr)
    result = run_soak(
        args.requests,
        workers=args.workers,
        clients=args.clients,
        sample_every=args.sample_every,
        log_dir=log_dir,
        slots=args.slots,
    )
    write_report(result, args.out, command_line("soak.py", argv))
    print((args.out / "soak.md").read_text())
    return 0 if result.server_errors == 0 and result.samples[-1].temp_files == 0 and result.workers_unchanged else 1


if __name__ == "__main__":
    sys.exit(main())
