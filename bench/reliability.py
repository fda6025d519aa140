#!/usr/bin/env python3
"""Measure the reliability figures of FAULTS.md and write ``bench/results/reliability.{md,json}``.

    python bench/reliability.py                    # everything, about 5 to 10 minutes on 2 cores
    python bench/reliability.py --soak-requests 2000 --skip-hardening

- F3, F4 (bombs, crash corpus): ``tests/media/test_corpus.py``, which writes ``corpus.{json,md}``.
- F5 (invalid signatures): the 10,000-example test of ``tests/e2e/test_signatures.py`` (``-m slow``), which writes
  ``signatures.json``.
- F6 (S3 outage): measured here, with the default S3 timeouts (connect 2 s, read 5 s, 2 attempts), through a real
  sidecar and :class:`tests.support.faults.FaultProxy` in front of moto.
- F7 (memory plateau): ``bench/soak.py`` with 10,000 requests, which writes ``soak.{json,md}``.
- F1, F2 and overload: ``tests/web/test_hardening.py``, whose tests assert the figures; their outcome is recorded.
- Hostile originals (rows 30, 31): ``bench/hostile.py``: CPU seconds and peak RSS per hostile original, peak RSS
  per megapixel per format, the deadline against decodes that report no progress, and how long a legitimate miss
  waits beside four clients sending hostile originals. ``--only-hostile`` measures these alone and keeps the other
  figures of the last run.
- Slow clients (row 35): ``bench/slow_edge.py``: how long legitimate misses take while 16 slow-header and 16
  slow-body clients hold connections at nginx, and straight at gunicorn. ``--only-slow-clients`` measures this alone
  and keeps the other figures of the last run.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for folder in (REPO, REPO / "bench"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import hostile  # noqa: E402
import slow_edge  # noqa: E402
import soak  # noqa: E402
from common import RESULTS, arguments, write_results  # noqa: E402

from resize_sidecar.core.settings import Settings  # noqa: E402
from resize_sidecar.core.signing import format_path  # noqa: E402
from tests.support.environment import isolate  # noqa: E402
from tests.support.faults import Fault, FaultProxy, Workers  # noqa: E402
from tests.support.images import photo  # noqa: E402
from tests.support.servers import SECRET, SidecarServer, raw_get  # noqa: E402


def run_pytest(*args: str, results: Path) -> dict[str, Any]:
    """Run pytest on ``args`` with the results folder set; its summary line and per-test durations."""
    env = {**os.environ, "RELIABILITY_RESULTS_DIR": str(results)}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=0", "-rA", *args],
        cwd=REPO, env=env, capture_output=True, text=True,
    )  # fmt: skip
    lines = done.stdout.strip().splitlines()
    durations = {
        name: float(seconds)
        for seconds, phase, name in re.findall(r"^([\d.]+)s (call|setup|teardown)\s+(\S+)$", done.stdout, re.M)
        if phase == "call"
    }
    outcomes = re.findall(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (\S+)", done.stdout, re.MULTILINE)
    return {
        "command": "pytest " + " ".join(args),
        "exit_status": done.returncode,
        "summary": lines[-1] if lines else "",
        "seconds": round(time.monotonic() - started, 1),
        "outcomes": {name: outcome for outcome, name in outcomes},
        "durations": durations,
    }


def s3_outage(workers: int = 2) -> dict[str, Any]:
    """F6: with S3 hanging, how long each of ``workers`` concurrent misses takes to end, and with what; then the
    first request once S3 answers again."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request otherwise
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "reliability")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "reliability")
    import boto3

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        bucket = f"outage-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=bucket)
        keys = [f"outage/{n}.jpg" for n in range(workers)]
        for key in keys:
            s3.put_object(Bucket=bucket, Key=key, Body=photo(800, 600))
        defaults = Settings()
        with FaultProxy(endpoint) as proxy, tempfile.TemporaryDirectory() as scratch:
            env = {
                "RESIZE_SIDECAR_SECRETS": SECRET,
                "RESIZE_SIDECAR_STORAGE": "s3",
                "RESIZE_SIDECAR_S3_BUCKET": bucket,
                "RESIZE_SIDECAR_S3_ENDPOINT_URL": proxy.url,
                "RESIZE_SIDECAR_LOCK_DIR": os.path.join(scratch, "locks"),
            }
            with SidecarServer(env, Path(scratch), workers=workers) as sidecar:
                assert sidecar.process is not None
                watched = Workers.of(sidecar.process.pid, workers)
                urls = [format_path(key, "300x", "jpg", SECRET) for key in keys]
                proxy.fault = Fault.blackhole()

                def timed(url: str) -> tuple[int, float]:
                    started = time.perf_counter()
                    status = raw_get(sidecar.url, url)[0]
                    return status, round(time.perf_counter() - started, 2)

                with ThreadPoolExecutor(max_workers=len(urls)) as pool:
                    during = list(pool.map(timed, urls))
                attempts = proxy.count()
                proxy.clear()
                after = timed(urls[0])
                unchanged = watched.unchanged()
    finally:
        moto.stop()
    return {
        "s3_settings": {
            "connect_timeout": defaults.s3_connect_timeout,
            "read_timeout": defaults.s3_read_timeout,
            "max_attempts": defaults.s3_max_attempts,
        },
        "budget_seconds": defaults.s3_connect_timeout + defaults.s3_read_timeout * defaults.s3_max_attempts,
        "concurrent_misses": len(urls),
        "statuses_during": [status for status, _ in during],
        "seconds_during": [seconds for _, seconds in during],
        "s3_requests_during": attempts,
        "first_after": {"status": after[0], "seconds": after[1]},
        "workers_unchanged": unchanged,
    }


def write_summary(figures: dict[str, Any], out: Path) -> None:
    lines = [
        "# Reliability figures",
        "",
        f"Written by `python bench/reliability.py` on {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, load "
        f"average {os.getloadavg()[0]:.1f} at the end (other work shares the machine: wall-time percentiles are "
        "upper bounds).",
        "",
    ]
    corpus = figures.get("corpus")
    if corpus:
        summary = json.loads((out / "corpus.json").read_text())["summary"] if (out / "corpus.json").exists() else {}
        lines += [
            "## F3, F4: bombs and the crash corpus (`tests/media/test_corpus.py`, details in `corpus.md`)",
            "",
            f"- run: {corpus['summary']} in {corpus['seconds']} s",
            *(f"- {name}: {value}" for name, value in summary.items()),
            "",
        ]
    signatures = figures.get("signatures")
    if signatures:
        numbers = json.loads((out / "signatures.json").read_text()) if (out / "signatures.json").exists() else {}
        lines += [
            "## F5: invalid signatures (`pytest -m slow tests/e2e/test_signatures.py`)",
            "",
            f"- run: {signatures['summary']} in {signatures['seconds']} s",
            *(f"- {name}: {value}" for name, value in numbers.items()),
            "",
        ]
    outage = figures.get("s3_outage")
    if outage:
        lines += [
            "## F6: S3 hanging (measured by this script, default S3 timeouts)",
            "",
            *(f"- {name}: {value}" for name, value in outage.items()),
            "",
        ]
    result = figures.get("soak")
    if result:
        lines += [
            "## F7: soak (`bench/soak.py`, details in `soak.md`)",
            "",
            f"- {result['requests']} requests, {result['workers']} workers, {result['seconds']} s",
            f"- RSS ratio (end / after {result['samples'][0]['requests']}): {result['rss_ratio']}; over the second "
            f"half: {result['rss_ratio_second_half']}",
            f"- open descriptors grew by {result['fd_growth']}; temporary files left: "
            f"{result['samples'][-1]['temp_files']}; 5xx other than shedding: {result['server_errors']}; shed (503 "
            f"with Retry-After): {result['shed']}; same workers: {result['workers_unchanged']}",
            "",
        ]
    hardening = figures.get("hardening")
    if hardening:
        lines += [
            "## F1, F2, overload (`tests/web/test_hardening.py`)",
            "",
            f"- run: {hardening['summary']} (exit status {hardening['exit_status']})",
            *(f"- `{name}`: {outcome}" for name, outcome in hardening["outcomes"].items()),
            "",
        ]
    if figures.get("hostile"):
        lines += _hostile_lines(figures["hostile"])
    if figures.get("slow_clients"):
        lines += slow_edge.summary_lines(figures["slow_clients"])
    write_results(out, "reliability", "\n".join(lines), figures)


def _hostile_lines(figures: dict[str, Any]) -> list[str]:
    def cost(run: dict[str, Any]) -> str:
        return f"{run['outcome']}, {run['cpu_seconds']} s CPU, peak RSS +{run['peak_rss_mb']} MB"

    lines = [
        "## Hostile originals, rows 30 and 31 (`bench/hostile.py`)",
        "",
        "Each decode in a fresh process, to a 400 px JPEG as a miss does; with the default limits, and with them",
        "raised (the decode itself; the floods of 10k scans and more only with `--unguarded-floods`):",
        "",
        "| original | bytes | default limits | limits raised |",
        "|---|---|---|---|",
    ]
    for name, runs in figures["decodes"].items():
        unguarded = cost(runs["unguarded"]) if "unguarded" in runs else "—"
        lines.append(f"| {name} | {runs['defaults']['bytes']} | {cost(runs['defaults'])} | {unguarded} |")
    memory = figures["memory_per_megapixel"]
    lines += [
        "",
        f"Peak RSS of one decode per megapixel, {memory['size']}: "
        + ", ".join(f"{name} {row['mb_per_megapixel']} MB" for name, row in memory["formats"].items())
        + ".",
        "",
        "The transform deadline against decodes that report no progress (limits raised): "
        + "; ".join(
            f"{name}, deadline {run['transform_timeout']} s: {run['outcome']} after {run['wall_seconds']} s "
            f"({run['cpu_seconds']} s CPU)"
            for name, run in figures["deadline"].items()
        )
        + ".",
    ]

    def counts(statuses: dict[str, int]) -> str:
        return ", ".join(f"{count} × {status}" for status, count in statuses.items())

    def misses(run: dict[str, Any]) -> str:
        return (
            f"{run['misses']} misses ({counts(run['statuses'])}), median {run['median_seconds']} s, "
            f"longest {run['max_seconds']} s"
        )

    wait = figures["legitimate_wait"]
    lines += [
        "",
        f"Legitimate misses of a 1600x1200 JPEG, one at a time against gunicorn (default workers and slots): alone, "
        f"{misses(wait['alone'])}; beside {wait['hostile_clients']} clients sending the hostile originals above "
        f"without pause, {misses(wait['beside_hostile'])}. The hostile requests: {counts(wait['hostile_statuses'])}.",
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    isolate()  # credentials moto accepts, and none of the shell's RESIZE_SIDECAR_* settings
    parser = arguments(__doc__, out=RESULTS)
    parser.add_argument("--soak-requests", type=int, default=10_000)
    parser.add_argument("--skip-hardening", action="store_true", help="do not run tests/web/test_hardening.py")
    parser.add_argument("--only-hostile", action="store_true", help="measure the hostile originals alone")
    parser.add_argument("--unguarded-floods", action="store_true", help="decode the large scan floods unguarded")
    parser.add_argument("--only-slow-clients", action="store_true", help="measure the slow clients alone")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {}
    if args.only_slow_clients:
        figures = json.loads((out / "reliability.json").read_text())
        figures["slow_clients"] = slow_edge.measure()
        write_summary(figures, out)
        print((out / "reliability.md").read_text())
        return 0
    if args.only_hostile:
        figures = json.loads((out / "reliability.json").read_text())
        return _finish(figures, out, unguarded_floods=args.unguarded_floods)

    print("F3, F4: corpus replay...", file=sys.stderr)
    figures["corpus"] = run_pytest("tests/media/test_corpus.py", results=out)
    print("F5: 10,000 mutated URLs...", file=sys.stderr)
    figures["signatures"] = run_pytest("-m", "slow", "tests/e2e/test_signatures.py", results=out)
    print("F6: S3 outage...", file=sys.stderr)
    figures["s3_outage"] = s3_outage()
    print(f"F7: soak of {args.soak_requests} requests...", file=sys.stderr)
    with tempfile.TemporaryDirectory() as logs:
        result = soak.run_soak(args.soak_requests, workers=4, clients=8, sample_every=1000, log_dir=Path(logs))
    soak.write_report(result, out, f"python bench/soak.py --requests {args.soak_requests}")
    figures["soak"] = json.loads((out / "soak.json").read_text())
    hardening = REPO / "tests/web/test_hardening.py"
    if hardening.exists() and not args.skip_hardening:
        print("F1, F2, overload: tests/web/test_hardening.py...", file=sys.stderr)
        figures["hardening"] = run_pytest("tests/web/test_hardening.py", results=out)
    print("Row 35: slow clients...", file=sys.stderr)
    figures["slow_clients"] = slow_edge.measure()
    return _finish(figures, out, unguarded_floods=args.unguarded_floods)


def _finish(figures: dict[str, Any], out: Path, *, unguarded_floods: bool) -> int:
    print("Rows 30, 31: hostile originals...", file=sys.stderr)
    figures["hostile"] = hostile.measure(unguarded_floods=unguarded_floods)
    write_summary(figures, out)
    print((out / "reliability.md").read_text())
    failed = [name for name, run in figures.items() if isinstance(run, dict) and run.get("exit_status")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
