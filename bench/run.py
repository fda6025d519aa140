#!/usr/bin/env python3
"""Benchmark the sidecar against its floor and its peers, and write ``bench/results/latest.{md,png,json}``.

``python bench/run.py`` (what ``make bench`` runs): every measurement, interleaved and repeated, ≤ 15 minutes on
2 cores. ``--quick``: fewer cells, one round, for development; writes ``bench/work/quick.*``. ``--smoke``: tiny
images, a Python client instead of wrk, no thumbor, a few seconds; for the test suite (``--out`` a temporary folder).
"""

from __future__ import annotations

import os

# Before pyvips loads (the modules below import it): one libvips thread, as in the sidecar's workers.
os.environ.setdefault("VIPS_CONCURRENCY", "1")
# moto accepts any credentials; boto3 (the harness's and the sidecars') needs some.
for _name, _value in (
    ("AWS_ACCESS_KEY_ID", "bench"),
    ("AWS_SECRET_ACCESS_KEY", "bench"),
    ("AWS_DEFAULT_REGION", "us-east-1"),
):
    os.environ.setdefault(_name, _value)

import datetime  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from contextlib import ExitStack  # noqa: E402
from dataclasses import dataclass, field, replace  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402

import images  # noqa: E402
import inprocess  # noqa: E402
import load  # noqa: E402
import prepare  # noqa: E402
import quality  # noqa: E402
import report  # noqa: E402
import servers  # noqa: E402
from common import BENCH, RESULTS, arguments, log, peak_rss_mb, stop_on_signal  # noqa: E402
from load import OPERATIONS, LoadResult, Operation, UrlPool  # noqa: E402

from resize_sidecar.core.signing import parse_path  # noqa: E402

SECRET = "bench-secret-0123456789abcdef"
MEDIA_URL = "/media/"  # the sidecar's defaults, which the benchmark's sidecars keep
DERIVED_PREFIX = "_r/"


def local_env(media: Path) -> dict[str, str]:
    """The environment of a benchmark sidecar on local storage in ``media``."""
    return {
        "RESIZE_SIDECAR_SECRETS": SECRET,
        "RESIZE_SIDECAR_STORAGE": "local",
        "RESIZE_SIDECAR_LOCAL_ROOT": str(media),
    }


#: Formats each kind of source is rendered to in the in-process table.
RENDER_FORMATS = {"24mp": "jpg", "12mp": "jpg", "1080p": "jpg", "alpha": "webp", "webp": "jpg", "anim": "gif"}


@dataclass(frozen=True)
class Plan:
    """How much to measure."""

    name: str
    scale: float  # of the images' sides
    repeats: int  # rounds of interleaved load runs
    seconds: float  # per load run
    render_repeats: int
    miss_cells: tuple[tuple[str, str], ...]  # (source, operation) for sidecar, floor and thumbor
    s3_cells: tuple[tuple[str, str], ...]  # (source, operation) also through S3
    latency_sources: tuple[str, ...]
    render_sources: tuple[str, ...]
    profile_sources: tuple[str, ...] = ("24mp", "1080p")
    memory_sources: tuple[str, ...] = ("24mp", "50mp")
    bytes_sources: tuple[str, ...] = ("24mp", "1080p")
    workers: int = 2
    connections: int = 4  # the anchors' wrk -c4: two requests per worker in flight
    latency_connections: int = 8  # enough requests in flight to hide S3 waits, if the worker model can
    hit_connections: int = 32
    keys_per_source: int = 1000
    use_wrk: bool = True
    use_thumbor: bool = True
    use_ipx: bool = True
    settle: float = 5.0  # at most, waiting for the servers to finish what the last run left queued
    python_requests: int = 12  # per run, with the Python client (smoke)


FULL = Plan(
    name="full",
    scale=1.0,
    repeats=3,
    seconds=4,
    render_repeats=11,
    miss_cells=(
        ("24mp", "fit-jpg"),
        ("12mp", "fit-jpg"),
        ("1080p", "fit-jpg"),
        ("24mp", "fill-webp"),
        ("1080p", "fill-webp"),
        ("24mp", "fit-avif"),
        ("1080p", "fit-avif"),
    ),
    s3_cells=(("24mp", "fit-jpg"), ("1080p", "fit-jpg")),
    # One source: moto (one Python process) is the bottleneck of a 24 MP miss through S3, not the latency.
    latency_sources=("1080p",),
    render_sources=("24mp", "12mp", "1080p", "alpha", "webp", "anim"),
)
QUICK = replace(
    FULL,
    name="quick",
    repeats=1,
    seconds=2,
    render_repeats=3,
    miss_cells=(("24mp", "fit-jpg"), ("1080p", "fit-jpg"), ("1080p", "fill-webp"), ("1080p", "fit-avif")),
    s3_cells=(("1080p", "fit-jpg"),),
    latency_sources=("1080p",),
    render_sources=("24mp", "1080p"),
    keys_per_source=400,
)
SMOKE = replace(
    QUICK,
    name="smoke",
    scale=0.05,
    seconds=1,
    render_repeats=1,
    miss_cells=(("1080p", "fit-jpg"), ("1080p", "fill-webp")),
    render_sources=("24mp", "alpha", "anim"),
    profile_sources=("1080p",),
    memory_sources=("24mp",),
    bytes_sources=("1080p",),
    workers=1,
    keys_per_source=20,
    use_wrk=False,
    use_thumbor=False,
    use_ipx=False,
    settle=0.0,
    python_requests=4,
)


@dataclass
class Target:
    """A server that answers miss requests, and how to name a new derivative for it."""

    name: str
    url: str
    namespace: str  # servers sharing a namespace share storage, so they must never repeat each other's paths
    keys: dict[str, list[str]]  # source name -> keys it can read
    check_created: bool = False
    backend: str = ""  # the sidecar itself, behind its nginx (for its metrics)

    def serves(self, source: str, op_name: str, plan: Plan) -> bool:
        """Whether this target runs in the cell (source, op): the S3 ones run only their own cells."""
        if source not in self.keys:
            return False
        if self.name == "sidecar-s3":
            return (source, op_name) in plan.s3_cells
        if self.name == "sidecar-latency":
            return op_name == "fit-jpg" and source in plan.latency_sources
        if self.name == "sidecar-direct":
            return op_name == "fit-jpg"
        return True

    def path(self, key: str, op: Operation, variant: int) -> str:
        if self.name.startswith("sidecar"):
            return load.sidecar_path(key, op, variant, SECRET)
        if self.name == "floor":
            return load.floor_path(key, op, variant)
        if self.name == "ipx":
            return load.ipx_path(key, op, variant, quality=55 if op.fmt == "avif" else 80)
        return load.thumbor_path(key, op, variant, quality=55 if op.fmt == "avif" else 80)


@dataclass
class Results:
    """Everything measured, as the report needs it."""

    plan: Plan
    started: str
    notes: list[str] = field(default_factory=list)
    miss: dict[tuple[str, str, str], list[LoadResult]] = field(default_factory=dict)  # (source, op, target)
    hits: dict[str, list[LoadResult]] = field(default_factory=dict)  # "sidecar nginx" / "static nginx"
    hit_sidecar_requests: float = 0.0
    latency: dict[tuple[str, int], list[LoadResult]] = field(default_factory=dict)  # (source, delay ms)
    render: dict[tuple[str, str], inprocess.RenderResult] = field(default_factory=dict)
    render_formats: dict[str, str] = field(default_factory=dict)
    profiles: dict[str, inprocess.MissProfile] = field(default_factory=dict)
    splits: dict[tuple[str, str], inprocess.CostSplit] = field(default_factory=dict)  # (source, op)
    memory: dict[tuple[str, str], float] = field(default_factory=dict)  # (server, source) -> peak MB of a worker
    memory_idle: dict[str, float] = field(default_factory=dict)
    miss_ssim: dict[tuple[str, str], float] = field(default_factory=dict)  # (source, target): one fit JPEG's SSIM
    byte_sizes: dict[tuple[str, str], inprocess.BytesResult] = field(default_factory=dict)
    byte_peer: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    machine: dict[str, str] = field(default_factory=dict)
    source_files: dict[str, str] = field(default_factory=dict)
    thumbor_config: str = ""
    moto_get_ms: dict[str, float] = field(default_factory=dict)  # source -> one GET of the original from moto
    elapsed: float = 0.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = arguments(__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer cells and one round (development)")
    size.add_argument("--smoke", action="store_true", help="tiny inputs, no wrk and no thumbor (test suite)")
    parser.add_argument("--out", type=Path, help="folder for the result files (default: bench/results)")
    parser.add_argument("--work", type=Path, help="folder for images, virtualenvs and logs (default: bench/work)")
    parser.add_argument(
        "--readme",
        type=Path,
        help="also replace this file's text between <!-- bench:start --> and <!-- bench:end --> with the goals",
    )
    args = parser.parse_args(argv)
    plan = SMOKE if args.smoke else QUICK if args.quick else FULL
    work = (args.work or BENCH / "work").resolve()
    out = (args.out or (RESULTS if plan is FULL else work)).resolve()
    stem = "latest" if plan is FULL or args.out else plan.name

    signal.signal(signal.SIGTERM, stop_on_signal)
    started = time.monotonic()
    results = Results(plan, datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"))
    # Other work on the machine takes CPU from every server alike: what the run's numbers were measured against.
    started_load = load_average()
    try:
        with ExitStack() as stack:
            run(plan, work, results, stack)
    except KeyboardInterrupt:
        print("\nbench: interrupted; every server was stopped", file=sys.stderr)
        return 130
    results.elapsed = time.monotonic() - started
    results.notes.append(
        f"load average (1, 5, 15 min): {started_load} when the run started, {load_average()} at its end"
    )
    out.mkdir(parents=True, exist_ok=True)
    written = report.write(results, out, stem)
    if args.readme and not report.update_readme(results, args.readme, stem):
        print(f"bench: {args.readme} has no bench markers; left unchanged", file=sys.stderr)
    print(f"bench: {plan.name} run took {results.elapsed / 60:.1f} min; wrote {', '.join(map(str, written))}")
    return 0


def load_average() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def run(plan: Plan, work: Path, results: Results, stack: ExitStack) -> None:
    logs = work / "logs" / time.strftime("%Y%m%d-%H%M%S")
    logs.mkdir(parents=True, exist_ok=True)
    results.versions, results.machine = report.versions(), report.machine()
    thumbor_venv = prepare_tools(plan, work, results)
    install_ipx = partial(prepare.ensure_ipx, work / "ipx")
    ipx_folder = prepare.peer("ipx", plan.use_ipx, install_ipx, results.versions, results.notes)
    sources, files = prepare_images(plan, work, results)
    data = {name: path.read_bytes() for name, path in files.items()}
    measure_in_process(plan, data, results)

    media = servers.world_readable_dir("bench-media-")
    stack.callback(shutil.rmtree, media, ignore_errors=True)
    keys = {name: images.link_keys(files[name], media, sources[name], plan.keys_per_source) for name in sources}
    running: list[servers.Server] = []
    targets, latency_targets = start_servers(plan, media, keys, thumbor_venv, ipx_folder, logs, stack, results, running)
    loader = Loader(plan, work, sources, running)
    log("warm-up: the first requests of every worker pay for codec start-up")
    for target in [*targets, *latency_targets.values()]:
        loader.warm(target)
    sidecar = targets[0]
    hit_path, static_url, static_path = prepare_hits(loader, sidecar, media, logs, stack)
    hit_urls = {"sidecar nginx": (sidecar.url, hit_path), "static nginx": (static_url, static_path)}

    for round_index in range(plan.repeats):
        log(f"round {round_index + 1}/{plan.repeats}: miss path")
        for source, op_name in plan.miss_cells:
            op = OPERATIONS[op_name]
            for target in rotate([t for t in targets if t.serves(source, op_name, plan)], round_index):
                result = loader.miss(target, source, op, plan.connections)
                results.miss.setdefault((source, op.name, target.name), []).append(result)
                log(f"  {source:6} {op.name:10} {target.name:12} {result.rps:8.1f} req/s {describe(result)}")
        log(f"round {round_index + 1}/{plan.repeats}: hit path")
        for name, (url, path) in rotate(list(hit_urls.items()), round_index):
            before = sidecar_stored_answers(sidecar)
            result = loader.hit(url, path)
            # A hit must never reach Python: count what the sidecar answered from storage meanwhile (0 unless nginx
            # fell back). Not every derivative request: misses of the last miss run may still end in this window.
            results.hit_sidecar_requests += sidecar_stored_answers(sidecar) - before
            results.hits.setdefault(name, []).append(result)
            log(f"  {name:14} {result.rps:9.0f} req/s {describe(result)}")
        log(f"round {round_index + 1}/{plan.repeats}: S3 latency")
        for source in plan.latency_sources:
            for delay, target in rotate(list(latency_targets.items()), round_index):
                result = loader.miss(target, source, OPERATIONS["fit-jpg"], plan.latency_connections)
                results.latency.setdefault((source, delay), []).append(result)
                log(f"  {source:6} {delay:3} ms {result.rps:8.1f} req/s {describe(result)}")

    log("quality: SSIM of one fit JPEG per server")
    measure_ssim(plan, loader, data, targets, results)
    log("memory: peak RSS of a worker")
    measure_memory(plan, loader, media, keys, logs, results)
    log("bytes at matched SSIM")
    measure_bytes(plan, data, next((t for t in targets if t.name == "thumbor"), None), results)


def prepare_tools(plan: Plan, work: Path, results: Results) -> Path | None:
    """wrk (required for real runs) and thumbor's virtualenv (``None`` when not measured, with a note why)."""
    if plan.use_wrk and (reason := prepare.ensure_wrk()):
        raise SystemExit(f"bench: {reason}")
    install = partial(prepare.ensure_thumbor, work / "thumbor-venv")
    return prepare.peer("thumbor", plan.use_thumbor, install, results.versions, results.notes)


def prepare_images(plan: Plan, work: Path, results: Results) -> tuple[dict[str, images.Source], dict[str, Path]]:
    log("images: generating (once; deterministic)")
    sources = {name: images.scaled(source, plan.scale) for name, source in images.SOURCES.items()}
    files = {name: images.ensure(source, work / f"images-{plan.scale:g}") for name, source in sources.items()}
    for name, source in sources.items():
        details = f", {source.frames} frames" if source.frames > 1 else ", alpha" if source.alpha else ""
        size = files[name].stat().st_size / 1e6
        results.source_files[name] = f"{source.width}x{source.height} {source.fmt.upper()}{details}, {size:.2f} MB"
    return sources, files


def measure_in_process(plan: Plan, data: dict[str, bytes], results: Results) -> None:
    log("in-process: render time and quality")
    if not inprocess.HAVE_PILLOW:
        results.notes.append("Pillow is not installed: no in-process Pillow-draft anchor (bench/requirements.txt)")
    results.render_formats = {name: RENDER_FORMATS[name] for name in plan.render_sources}
    for name in plan.render_sources:
        results.render.update(inprocess.render_times({name: data[name]}, plan.render_repeats, RENDER_FORMATS[name]))
    log("in-process: where a miss spends its time")
    for name in plan.profile_sources:
        results.profiles[name] = inprocess.miss_profile(f"{name}/original.jpg", data[name], plan.render_repeats)
    for name, op_name in plan.miss_cells:
        if op_name in inprocess.SPLIT_OPERATIONS and images.SOURCES[name].fmt == "jpg":
            results.splits[name, op_name] = inprocess.cost_split(data[name], op_name, plan.render_repeats)


def measure_ssim(plan: Plan, loader: Loader, data: dict[str, bytes], targets: list[Target], results: Results) -> None:
    """SSIM of one new fit JPEG 400x300 from each server of the miss table, against the same reference."""
    for source in dict.fromkeys(source for source, op_name in plan.miss_cells if op_name == "fit-jpg"):
        references = quality.References(data[source])
        for target in targets:
            if target.serves(source, "fit-jpg", plan) and target.name in ("sidecar", "floor", "thumbor", "ipx"):
                path = loader.paths(target, source, OPERATIONS["fit-jpg"], 1)[0]
                status, body = get(target.url, path)
                if status != 200:
                    raise RuntimeError(f"{target.name} answered {status} for {path}")
                results.miss_ssim[source, target.name] = references.score(body)


def measure_bytes(plan: Plan, data: dict[str, bytes], thumbor: Target | None, results: Results) -> None:
    """The sidecar's output size at the SSIM of thumbor's (or, without thumbor, of its engine in-process)."""
    if thumbor is None and not inprocess.HAVE_PILLOW:
        results.notes.append("bytes not compared: neither thumbor nor Pillow is installed")
        return
    for name in plan.bytes_sources:
        for fmt in ("jpg", "webp"):
            if thumbor is not None:
                path = load.thumbor_path(thumbor.keys[name][0], OPERATIONS[f"fit-{fmt}"], 0, quality=80)
                status, body = get(thumbor.url, path)
                if status != 200:
                    raise RuntimeError(f"thumbor answered {status} for {path}")
                results.byte_peer = "thumbor (HTTP, quality 80)"
            else:
                body = inprocess.pillow_draft(data[name], fmt)
                results.byte_peer = "Pillow draft + LANCZOS in-process (thumbor's engine; thumbor not measured)"
            results.byte_sizes[name, fmt] = inprocess.bytes_at_matched_ssim(data[name], fmt, body)


class Loader:
    """Sends load: new derivatives to miss targets (never one requested before from the same storage), hits."""

    def __init__(
        self, plan: Plan, work: Path, sources: dict[str, images.Source], running: list[servers.Server]
    ) -> None:
        self.plan, self.work, self.sources, self.running = plan, work, sources, running
        self.pools: dict[tuple[str, str, str], UrlPool] = {}

    def settle(self) -> None:
        """Before the next run: let every server finish what the last run left queued."""
        if self.plan.use_wrk:
            servers.wait_idle(self.running, limit=self.plan.settle)

    def paths(self, target: Target, source: str, op: Operation, count: int) -> list[str]:
        index = (target.namespace, source, op.name)
        if index not in self.pools:
            self.pools[index] = UrlPool(target.keys[source], op, target.path)
        return self.pools[index].take(count)

    def warm(self, target: Target) -> None:
        latency_cells = tuple((source, "fit-jpg") for source in self.plan.latency_sources)
        for source, op_name in dict.fromkeys(self.plan.miss_cells + latency_cells):
            if target.serves(source, op_name, self.plan):
                paths = self.paths(target, source, OPERATIONS[op_name], 2 * self.plan.workers)
                load.python_load(target.url, paths, connections=self.plan.workers)

    def miss(self, target: Target, source: str, op: Operation, connections: int) -> LoadResult:
        plan = self.plan
        if not plan.use_wrk:
            paths = self.paths(target, source, op, plan.python_requests)
            return load.python_load(target.url, paths, connections=connections, check_created=target.check_created)
        # Enough new paths for a server far faster than any here; wrk reports it if a run still runs out.
        ceiling = 800 / self.sources[source].megapixels + 20
        paths = self.paths(target, source, op, int(ceiling * plan.seconds) + 50)
        self.settle()
        return load.wrk_load(
            target.url,
            paths,
            connections=connections,
            seconds=plan.seconds,
            threads=2,
            work=self.work,
            check_created=target.check_created,
        )

    def hit(self, url: str, path: str) -> LoadResult:
        plan = self.plan
        if not plan.use_wrk:
            return load.python_load(url, [path] * plan.python_requests * 4, connections=plan.connections)
        self.settle()
        return load.wrk_load(
            url,
            None,
            connections=plan.hit_connections,
            seconds=plan.seconds,
            threads=2,
            work=self.work,
            fixed_path=path,
        )


def describe(result: LoadResult) -> str:
    parts = [f"p50 {result.p50_ms:.0f} ms p99 {result.p99_ms:.0f} ms, {result.requests} requests"]
    if result.created:
        parts.append(f"{result.created} created")
    return ", ".join(parts + result.problems())


def rotate(items: list, by: int) -> list:  # type: ignore[type-arg]
    """Each round starts with another server, so that no server always runs first (or right after another)."""
    by %= max(1, len(items))
    return items[by:] + items[:by]


def start_servers(
    plan: Plan,
    media: Path,
    keys: dict[str, list[str]],
    thumbor_venv: Path | None,
    ipx_folder: Path | None,
    logs: Path,
    stack: ExitStack,
    results: Results,
    launched: list[servers.Server],
) -> tuple[list[Target], dict[int, Target]]:
    """Every server of the run (added to ``launched``), all started before any is waited for.

    The first target is the sidecar on local storage, through its nginx.
    """
    log("servers: starting")

    def launch(server: servers.Server) -> servers.Server:
        stack.callback(server.stop)
        server.launch()
        launched.append(server)
        return server

    local = launch(servers.sidecar(local_env(media), logs, workers=plan.workers))
    local_nginx = launch(servers.Nginx.for_sidecar("sidecar", local_env(media), local.url, logs))
    targets = [Target("sidecar", local_nginx.url, "local", keys, check_created=True, backend=local.url)]
    # The same sidecar without its nginx: what the hop costs, apart from the sidecar's own work.
    targets.append(Target("sidecar-direct", local.url, "local", keys, check_created=True, backend=local.url))
    floor = launch(servers.floor(media, logs, workers=plan.workers))
    targets.append(Target("floor", floor.url, "floor", keys))
    if thumbor_venv is not None:
        config = media.parent / f"{media.name}-thumbor.conf"
        results.thumbor_config = prepare.thumbor_config(media)
        config.write_text(results.thumbor_config)
        stack.callback(config.unlink, missing_ok=True)
        ports = [launch(servers.thumbor(thumbor_venv, config, logs, index)).port for index in range(plan.workers)]
        balancer = launch(servers.Nginx.balancer("thumbor", ports, logs))
        targets.append(Target("thumbor", balancer.url, "thumbor", keys))
    if ipx_folder is not None:
        ports = [launch(servers.ipx(ipx_folder, media, logs, index)).port for index in range(plan.workers)]
        balancer = launch(servers.Nginx.balancer("ipx", ports, logs))
        targets.append(Target("ipx", balancer.url, "ipx", keys))

    # S3: one bucket per sidecar (each its own storage); the latency pair reaches moto through delay proxies.
    moto = launch(servers.moto(logs))
    endpoints = {"sidecar-s3": moto.url}
    for delay in (0, 30):
        endpoints[f"delay-{delay}"] = launch(servers.delay_proxy(moto.port, delay, logs)).url
    s3_stacks: dict[str, str] = {}
    for name, endpoint in endpoints.items():
        env = {
            "RESIZE_SIDECAR_SECRETS": SECRET,
            "RESIZE_SIDECAR_STORAGE": "s3",
            "RESIZE_SIDECAR_S3_BUCKET": f"bench-{name}",
            "RESIZE_SIDECAR_S3_ENDPOINT_URL": endpoint,
        }
        sidecar = launch(servers.sidecar(env, logs, workers=plan.workers, name=f"sidecar-{name}"))
        s3_stacks[name] = launch(servers.Nginx.for_sidecar(name, env, sidecar.url, logs)).url
    for server in launched:
        server.wait_ready()

    s3_sources = {cell[0] for cell in plan.s3_cells} | set(plan.latency_sources)
    latency_targets: dict[int, Target] = {}
    for name, url in s3_stacks.items():
        s3_keys = upload(moto.url, f"bench-{name}", media, keys, s3_sources)
        if name == "sidecar-s3":
            results.moto_get_ms = time_gets(moto.url, f"bench-{name}", s3_keys)
            targets.append(Target(name, url, name, s3_keys, check_created=True))
        else:
            target = Target("sidecar-latency", url, name, s3_keys, check_created=True)
            latency_targets[int(name.removeprefix("delay-"))] = target
    return targets, latency_targets


def upload(
    endpoint: str, bucket: str, media: Path, keys: dict[str, list[str]], sources: set[str]
) -> dict[str, list[str]]:
    """A bucket with two keys of each source (fit boxes give thousands of derivatives per key); derivatives public.

    Public as the README says to deploy it: nginx reads derivatives anonymously, so a stored one is an nginx hit.
    """
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=bucket)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/_r/*"}
        ],
    }
    client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    uploaded: dict[str, list[str]] = {}
    for source in sorted(sources):
        uploaded[source] = keys[source][:2]
        for key in uploaded[source]:
            client.put_object(Bucket=bucket, Key=key, Body=(media / key).read_bytes())
    return uploaded


def time_gets(endpoint: str, bucket: str, keys: dict[str, list[str]]) -> dict[str, float]:
    """Median ms of a GET of each original from moto with boto3: what storage alone costs a miss through S3."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    found = {}
    for source, names in keys.items():
        seconds = []
        for _ in range(5):
            started = time.perf_counter()
            client.get_object(Bucket=bucket, Key=names[0])["Body"].read()
            seconds.append(time.perf_counter() - started)
        found[source] = statistics.median(seconds) * 1000
    return found


def prepare_hits(loader: Loader, sidecar: Target, media: Path, logs: Path, stack: ExitStack) -> tuple[str, str, str]:
    """A derivative stored by one miss, and a static nginx serving the same file, at the same place on disk.

    Returns the sidecar's path for it, the static nginx's URL and its path there.
    """
    path = loader.paths(sidecar, "1080p", OPERATIONS["fit-jpg"], 1)[0]
    status, _ = get(sidecar.url, path)
    if status != 200:
        raise RuntimeError(f"the sidecar answered {status} for {path}")
    # The static server's root is the local storage folder, and the derivative is stored at its unsigned key.
    storage_key = parse_path(path, media_url=MEDIA_URL).storage_key(DERIVED_PREFIX)
    static_path = "/" + urllib.parse.quote(storage_key)
    if not (media / storage_key).is_file():
        raise RuntimeError(f"the miss for {path} stored no file at {static_path} in {media}")
    return path, stack.enter_context(servers.Nginx.static("static", media, logs)).url, static_path


def sidecar_stored_answers(sidecar: Target) -> float:
    """Derivatives the sidecar answered from storage, as a hit that reaches it is (metrics, all workers added up)."""
    status, body = get(sidecar.backend, "/metrics")
    if status != 200:
        raise RuntimeError(f"the sidecar's /metrics answered {status}")
    prefix = "resize_sidecar_existing_derivatives_total"
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.decode().splitlines() if line.startswith(prefix))


def measure_memory(
    plan: Plan, loader: Loader, media: Path, keys: dict[str, list[str]], logs: Path, results: Results
) -> None:
    """Peak RSS (VmHWM) of one fresh worker per source, after one derivative of each operation."""
    env = local_env(media)
    for source in plan.memory_sources:
        for name in ("sidecar", "floor"):
            if name == "sidecar":
                server = servers.sidecar(env, logs, workers=1, name=f"sidecar-memory-{source}")
            else:
                server = servers.floor(media, logs, workers=1)
            # The sidecar writes to the run's local storage: its paths come from the same pool as the main one's.
            target = Target(name, server.url, "local" if name == "sidecar" else "floor", keys)
            with server:
                workers = server.workers()
                results.memory_idle[name] = max(peak_rss_mb(pid) for pid in workers)
                for op_name in ("fit-jpg", "fill-webp", "fit-avif"):
                    path = loader.paths(target, source, OPERATIONS[op_name], 1)[0]
                    status, body = get(server.url, path)
                    if status != 200:
                        raise RuntimeError(f"{name} answered {status} for {path}: {body[:200]!r}")
                results.memory[name, source] = max(peak_rss_mb(pid) for pid in workers)


def get(base_url: str, path: str) -> tuple[int, bytes]:
    host, port = base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


if __name__ == "__main__":
    sys.exit(main())
