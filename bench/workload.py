#!/usr/bin/env python3
"""What a site sees: Zipf-distributed page views over thousands of originals, the sidecar stack against thumbor.

``python bench/workload.py`` (part of ``make bench``): a few thousand originals on S3 (moto's server behind the delay
proxy), page views drawn from a Zipf distribution, each image of a page asked for once in the width and format its
visitor's browser picks from the page's srcset (WebP and JPEG, built by ``MediaURLs`` as the middleware builds them).
The same page views are played through nginx to the sidecar and through nginx to thumbor with its result storage on,
reading the same originals from the same bucket. Each server plays them twice: cold (nothing derived yet) and warm
(everything stored). Writes ``bench/results/workload.{md,json}``. ``--smoke``: a few tiny originals and page views,
no thumbor, a few seconds (tests/e2e/test_bench_smoke.py).
"""

from __future__ import annotations

import datetime
import json
import multiprocessing
import os
import random
import shutil
import signal
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import images
import load
import prepare
import report
import servers
from common import BENCH, RESULTS, arguments, command_line, log, moto_credentials, stop_on_signal, write_results

from resize_sidecar.core.settings import load as load_settings
from resize_sidecar.core.urls import MediaURLs

SECRET = "bench-workload-secret-0123456789"
BUCKET = "bench-workload"
#: The sidecar's default qualities (JPEG and WebP 80): thumbor is asked for the same.
QUALITY = 80
THUMBOR_FORMATS = {"webp": "webp", "jpg": "jpeg"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: The processes standing in for S3: their CPU is shown apart (a real S3 is not on the site's machine).
S3_GROUP = "S3 (moto, delay proxy)"


@dataclass(frozen=True)
class Plan:
    """How big a workload to play."""

    name: str
    originals: int  # distinct keys
    scenes: int  # distinct images among them (making one costs a third of a second; keys reuse them in turn)
    width: int  # of every original
    height: int
    page_views: int
    images_per_page: int
    widths: tuple[int, ...]  # the srcset's
    webp_share: float  # of visitors whose browser picks WebP over JPEG
    zipf_s: float  # the popularity exponent: the image of rank r is viewed in proportion to 1 / r**s
    delay_ms: float  # added by the delay proxy to every S3 request turn
    connections: int  # of the client: visitors at once
    client_processes: int
    warm_rounds: int  # plays of the page views in the warm pass: hits are fast, a single play is over too soon
    wrk_seconds: float = 10.0  # of the warm pass played by wrk, when it is installed
    use_wrk: bool = True
    workers: int = 2  # gunicorn workers; thumbor instances
    use_thumbor: bool = True
    seed: int = 20261203


FULL = Plan(
    name="full",
    originals=2000,
    scenes=48,
    width=1200,
    height=800,
    page_views=1000,
    images_per_page=4,
    widths=(320, 640, 960),
    webp_share=0.8,
    zipf_s=1.0,
    delay_ms=20,
    connections=16,
    client_processes=2,
    warm_rounds=5,
)
SMOKE = replace(
    FULL,
    name="smoke",
    originals=12,
    scenes=2,
    width=160,
    height=120,
    page_views=10,
    images_per_page=2,
    widths=(48, 96),
    delay_ms=5,
    connections=2,
    client_processes=1,
    warm_rounds=1,
    workers=1,
    use_wrk=False,
    use_thumbor=False,
)


@dataclass
class Pass:
    """One server's play of the page views, as the client and /proc saw it."""

    requests: int
    seconds: float
    statuses: dict[str, int]
    created: int  # answers the sidecar made (X-Derivative: created); 0 for thumbor, which does not say
    p50_ms: float
    p99_ms: float
    cpu_seconds: dict[str, float]  # process group -> CPU seconds spent during the pass
    client_cpu_seconds: float  # the load generator's, on the same cores
    page_views: int
    server: str = ""
    phase: str = ""  # cold, warm or "warm, wrk"
    bytes_stored: int = 0  # derivatives in storage after the pass
    objects_stored: int = 0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def cpu_per_thousand_views(self, groups: Sequence[str]) -> float:
        return sum(self.cpu_seconds.get(group, 0.0) for group in groups) * 1000 / self.page_views


@dataclass
class Workload:
    plan: Plan
    started: str
    command: str
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    passes: list[Pass] = field(default_factory=list)
    distinct_urls: dict[str, int] = field(default_factory=dict)
    top_share: float = 0.0  # of requests that go to the most viewed 1% of originals
    original_bytes: int = 0
    versions: dict[str, str] = field(default_factory=dict)
    machine: dict[str, str] = field(default_factory=dict)
    thumbor_config: str = ""
    notes: list[str] = field(default_factory=list)
    elapsed: float = 0.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = arguments(__doc__)
    parser.add_argument("--smoke", action="store_true", help="a few tiny originals, no thumbor (test suite)")
    parser.add_argument("--out", type=Path, help="folder for the result files (default: bench/results)")
    parser.add_argument("--work", type=Path, help="folder for originals, virtualenvs and logs (default: bench/work)")
    parser.add_argument("--originals", type=int, help="distinct originals (default: the plan's)")
    parser.add_argument("--page-views", type=int, help="page views per pass (default: the plan's)")
    args = parser.parse_args(argv)
    plan = SMOKE if args.smoke else FULL
    if args.originals:
        plan = replace(plan, originals=args.originals)
    if args.page_views:
        plan = replace(plan, page_views=args.page_views)
    work = (args.work or BENCH / "work").resolve()
    out = (args.out or (RESULTS if plan is not SMOKE else work)).resolve()

    signal.signal(signal.SIGTERM, stop_on_signal)
    moto_credentials()
    started = time.monotonic()
    workload = Workload(
        plan,
        datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        command_line("workload.py", argv),
        os.getloadavg(),
    )
    workload.versions, workload.machine = report.versions(), report.machine()
    try:
        with ExitStack() as stack:
            run(plan, work, workload, stack)
    except KeyboardInterrupt:
        print("\nworkload: interrupted; every server was stopped", file=sys.stderr)
        return 130
    workload.elapsed = time.monotonic() - started
    workload.load_after = os.getloadavg()
    written = write_results(out, "workload", markdown(workload), raw(workload))
    print(f"workload: {plan.name} run took {workload.elapsed / 60:.1f} min; wrote {written}")
    return 0


def run(plan: Plan, work: Path, workload: Workload, stack: ExitStack) -> None:
    logs = work / "logs" / f"workload-{time.strftime('%Y%m%d-%H%M%S')}"
    logs.mkdir(parents=True, exist_ok=True)
    install = partial(prepare.ensure_thumbor, work / "thumbor-venv")
    thumbor_venv = prepare.peer("thumbor", plan.use_thumbor, install, workload.versions, workload.notes)
    use_wrk = plan.use_wrk
    if use_wrk and (reason := prepare.ensure_wrk()):
        workload.notes.append(f"no warm pass from wrk: {reason}")
        use_wrk = False
    log(f"originals: {plan.scenes} distinct {plan.width}x{plan.height} photos (made once)")
    scenes = make_scenes(plan, work / f"workload-{plan.width}x{plan.height}")
    keys = [f"photos/p{index:05d}.jpg" for index in range(plan.originals)]

    log("servers: starting")
    launched: list[servers.Server] = []

    def launch(server: servers.Server) -> servers.Server:
        stack.callback(server.stop)
        server.launch()
        launched.append(server)
        return server

    moto = launch(servers.moto(logs))
    proxy = launch(servers.delay_proxy(moto.port, plan.delay_ms, logs))
    env = {
        "RESIZE_SIDECAR_SECRETS": SECRET,
        "RESIZE_SIDECAR_STORAGE": "s3",
        "RESIZE_SIDECAR_S3_BUCKET": BUCKET,
        "RESIZE_SIDECAR_S3_ENDPOINT_URL": proxy.url,
    }
    sidecar = launch(servers.sidecar(env, logs, workers=plan.workers, name="sidecar-workload"))
    nginx = launch(servers.Nginx.for_sidecar("workload", env, sidecar.url, logs))
    # The same stack on local storage: its hits are nginx reading files, as thumbor's result storage is files.
    media = servers.world_readable_dir("bench-workload-media-")
    stack.callback(shutil.rmtree, media, ignore_errors=True)
    local_env = {
        "RESIZE_SIDECAR_SECRETS": SECRET,
        "RESIZE_SIDECAR_STORAGE": "local",
        "RESIZE_SIDECAR_LOCAL_ROOT": str(media),
    }
    local = launch(servers.sidecar(local_env, logs, workers=plan.workers, name="sidecar-workload-local"))
    local_nginx = launch(servers.Nginx.for_sidecar("workload-local", local_env, local.url, logs))
    thumbor_group: list[servers.Server] = []
    result_root = servers.world_readable_dir("bench-thumbor-results-")
    stack.callback(shutil.rmtree, result_root, ignore_errors=True)
    if thumbor_venv is not None:
        config = result_root.parent / f"{result_root.name}.conf"
        workload.thumbor_config = prepare.thumbor_workload_config(result_root)
        config.write_text(workload.thumbor_config)
        stack.callback(config.unlink, missing_ok=True)
        instances = [launch(servers.thumbor(thumbor_venv, config, logs, index)) for index in range(plan.workers)]
        balancer = launch(servers.Nginx.balancer("thumbor-workload", [s.port for s in instances], logs))
        thumbor_group = [*instances, balancer]
    for server in launched:
        server.wait_ready()

    log(f"S3: uploading {plan.originals} originals to moto")
    workload.original_bytes = upload(moto.url, keys, scenes)
    link_originals(media, keys, scenes)
    settings = load_settings(environ={**env, "RESIZE_SIDECAR_MEDIA_URL": "/media/"})
    views = page_views(plan, keys)
    workload.top_share = top_share(views, len(keys))
    urls = MediaURLs(settings)
    sidecar_paths = [sidecar_path(urls, plan, key, width, fmt) for key, width, fmt in views]
    s3: list[servers.Server] = [moto, proxy]
    groups = {"sidecar": [sidecar], "nginx": [nginx], S3_GROUP: s3}
    # (name, nginx's URL, the requests, the process groups, what it has stored: bytes and objects)
    targets: list[tuple[str, str, list[str], dict[str, list[servers.Server]], Callable[[], tuple[int, int]]]] = [
        ("sidecar", nginx.url, sidecar_paths, groups, lambda: derived_bytes(moto.url, settings.derived_prefix))
    ]
    local_groups = {"sidecar": [local], "nginx": [local_nginx]}
    derived = media / settings.derived_prefix
    targets.append(("sidecar-local", local_nginx.url, sidecar_paths, local_groups, lambda: folder_bytes(derived)))
    workload.distinct_urls["sidecar"] = len(set(sidecar_paths))
    if thumbor_group:
        origin = f"{proxy.url.removeprefix('http://')}/{BUCKET}"
        thumbor_paths = [thumbor_path(origin, key, width, fmt) for key, width, fmt in views]
        workload.distinct_urls["thumbor"] = len(set(thumbor_paths))
        thumbor_groups = {"thumbor": thumbor_group[:-1], "nginx": thumbor_group[-1:], S3_GROUP: s3}
        url = thumbor_group[-1].url
        targets.append(("thumbor", url, thumbor_paths, thumbor_groups, lambda: folder_bytes(result_root)))

    for name, url, paths, server_groups, stored in targets:
        for phase in ("cold", "warm", "warm, wrk") if use_wrk else ("cold", "warm"):
            servers.wait_idle(launched, limit=10.0 if plan is not SMOKE else 0.0)
            if phase == "warm, wrk":
                log(f"{name} {phase}: {plan.wrk_seconds:g} s over the same requests")
                result = play_wrk(plan, url, paths, server_groups, work)
            else:
                rounds = plan.warm_rounds if phase == "warm" else 1
                log(f"{name} {phase}: {plan.page_views * rounds} page views, {len(paths) * rounds} requests")
                result = play(plan, url, paths * rounds, server_groups, plan.page_views * rounds)
            size, count = stored()
            result = replace(result, server=name, phase=phase, bytes_stored=size, objects_stored=count)
            workload.passes.append(result)
            log(describe(result))


def describe(result: Pass) -> str:
    return (
        f"  {result.rps:7.1f} req/s, p50 {result.p50_ms:.0f} ms, p99 {result.p99_ms:.0f} ms, "
        f"{result.created} made, statuses {result.statuses}, {result.bytes_stored / 1e6:.1f} MB stored"
    )


def make_scenes(plan: Plan, folder: Path) -> list[bytes]:
    """The distinct originals' bytes: photo-like scenes (bench/images.py) at JPEG q85, 4:2:0, made once."""
    folder.mkdir(parents=True, exist_ok=True)
    found = []
    for index in range(plan.scenes):
        path = folder / f"scene-{index:03d}.jpg"
        if not path.exists():
            image = images.scene(plan.width, plan.height, plan.seed + index)
            temp = path.with_name(f".{path.name}.tmp")
            temp.write_bytes(image.jpegsave_buffer(Q=85, subsample_mode="on"))
            os.replace(temp, path)
        found.append(path.read_bytes())
    return found


def upload(endpoint: str, keys: list[str], scenes: list[bytes]) -> int:
    """The bucket, its originals (key i is scene i mod scenes) and the policy of the README's deployment: nginx
    reads derivatives anonymously, and here thumbor reads originals so too. The originals' bytes in all."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    statement = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/*"}
    client.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({"Version": "2012-10-17", "Statement": [statement]}))

    def put(index: int) -> int:
        body = scenes[index % len(scenes)]
        client.put_object(Bucket=BUCKET, Key=keys[index], Body=body, ContentType="image/jpeg")
        return len(body)

    with ThreadPoolExecutor(8) as pool:
        return sum(pool.map(put, range(len(keys))))


def link_originals(media: Path, keys: list[str], scenes: list[bytes]) -> None:
    """The originals on local storage: one file per scene, each key a hard link to its scene's file."""
    for index, body in enumerate(scenes):
        (media / f"scene-{index:03d}.jpg").write_bytes(body)
        (media / f"scene-{index:03d}.jpg").chmod(0o644)  # nginx's workers (another user) read it
    for index, key in enumerate(keys):
        (media / key).parent.mkdir(parents=True, exist_ok=True)
        (media / key).parent.chmod(0o755)
        os.link(media / f"scene-{index % len(scenes):03d}.jpg", media / key)


def page_views(plan: Plan, keys: list[str]) -> list[tuple[str, int, str]]:
    """(key, width, format) of every image request, page after page: the keys by Zipf popularity, the width and
    format as each visitor's browser picks them from the srcset (its screen, and WebP support); seeded."""
    rng = random.Random(plan.seed)
    weights = [1 / rank**plan.zipf_s for rank in range(1, len(keys) + 1)]
    order = keys[:]
    rng.shuffle(order)  # popularity is not the upload order
    cumulative = []
    total = 0.0
    for weight in weights:
        total += weight
        cumulative.append(total)
    requests = []
    for _ in range(plan.page_views):
        # A page shows distinct images: drawn by popularity, without repeats within the page.
        shown: list[str] = []
        while len(shown) < min(plan.images_per_page, len(keys)):
            key = rng.choices(order, cum_weights=cumulative)[0]
            if key not in shown:
                shown.append(key)
        width = rng.choice(plan.widths)  # one visitor, one screen: every image of the page at that width
        fmt = "webp" if rng.random() < plan.webp_share else "jpg"
        requests += [(key, width, fmt) for key in shown]
    return requests


def top_share(views: list[tuple[str, int, str]], originals: int) -> float:
    counts: dict[str, int] = {}
    for key, _, _ in views:
        counts[key] = counts.get(key, 0) + 1
    top = sorted(counts.values(), reverse=True)[: max(1, originals // 100)]
    return sum(top) / len(views)


def sidecar_path(urls: MediaURLs, plan: Plan, key: str, width: int, fmt: str) -> str:
    """The candidate of ``width`` in the page's srcset of ``fmt``, as the middleware builds it."""
    srcset = urls.srcset(key, plan.widths, format=fmt)
    for candidate in srcset.split(", "):
        url, descriptor = candidate.rsplit(" ", 1)
        if descriptor == f"{width}w":
            return url
    raise AssertionError(f"no {width}w candidate in {srcset}")


def thumbor_path(origin: str, key: str, width: int, fmt: str) -> str:
    """thumbor's URL of the same operation (fit to ``width``, any height) on the original in the same bucket."""
    filters = f"filters:format({THUMBOR_FORMATS[fmt]}):quality({QUALITY})"
    return f"/unsafe/fit-in/{width}x0/{filters}/{origin}/{key}"


def derived_bytes(endpoint: str, prefix: str) -> tuple[int, int]:
    """Bytes and count of the derivatives in the bucket (the keys under the derived ``prefix``)."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    size = count = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for item in page.get("Contents", []):
            size += item["Size"]
            count += 1
    return size, count


def folder_bytes(root: Path) -> tuple[int, int]:
    """Bytes and count of the files under ``root`` (thumbor's result storage, local derivatives)."""
    files = [path for path in root.rglob("*") if path.is_file()]
    return sum(path.stat().st_size for path in files), len(files)


class Meter:
    """Wall time, the servers' CPU by process group and the client's CPU, from its creation to :meth:`stop`."""

    def __init__(self, groups: dict[str, list[servers.Server]]) -> None:
        self.groups = groups
        self.ticks = {name: sum(server.cpu_ticks() for server in members) for name, members in groups.items()}
        self.client = client_cpu()
        self.started = time.perf_counter()

    def stop(self) -> tuple[float, dict[str, float], float]:
        seconds = time.perf_counter() - self.started
        client_seconds = client_cpu() - self.client
        cpu = {
            name: (sum(server.cpu_ticks() for server in members) - self.ticks[name]) / CLOCK_TICKS
            for name, members in self.groups.items()
        }
        return seconds, cpu, client_seconds


def play(
    plan: Plan,
    base_url: str,
    paths: list[str],
    groups: dict[str, list[servers.Server]],
    views: int,
) -> Pass:
    """Every path once, in page order, from ``plan.connections`` keep-alive connections split over the client's
    processes (one Python process cannot keep nginx busy on hits); the servers' CPU over the same time."""
    per_process = max(1, plan.connections // plan.client_processes)
    shares = [(base_url, paths[index :: plan.client_processes], per_process) for index in range(plan.client_processes)]
    meter = Meter(groups)
    if plan.client_processes == 1:
        answers = [load.fetch_all(*shares[0], timeout=120)]
    else:
        # The client processes keep SIGTERM's default: the pool ends them with it, which is no interruption.
        context = multiprocessing.get_context("fork")
        with context.Pool(plan.client_processes, signal.signal, (signal.SIGTERM, signal.SIG_DFL)) as pool:
            answers = pool.starmap(load.fetch_all, [(*share, 120) for share in shares])
    seconds, cpu, client_seconds = meter.stop()
    latencies = sorted(value for answer in answers for value in answer.latencies)
    statuses: dict[str, int] = {}
    for answer in answers:
        for status, count in answer.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
    return Pass(
        requests=len(latencies),
        seconds=seconds,
        statuses=statuses,
        created=sum(answer.created for answer in answers),
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        cpu_seconds=cpu,
        client_cpu_seconds=client_seconds,
        page_views=views,
    )


def play_wrk(
    plan: Plan,
    base_url: str,
    paths: list[str],
    groups: dict[str, list[servers.Server]],
    work: Path,
) -> Pass:
    """The warm page views from wrk (``paths.lua``: each thread walks its share of the list, over and over) for
    ``plan.wrk_seconds``: what the stack serves when the client is not the bound."""
    meter = Meter(groups)
    result = load.wrk_load(
        base_url, paths, connections=plan.connections, seconds=plan.wrk_seconds, threads=2, work=work
    )
    seconds, cpu, client_seconds = meter.stop()
    statuses = {"200": result.requests - result.non2xx}
    statuses.update({"other": result.non2xx, "error": result.socket_errors + result.timeouts})
    return Pass(
        requests=result.requests,
        seconds=result.seconds,
        statuses={status: n for status, n in statuses.items() if n},
        created=0,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        # wrk's CPU and the servers' over the whole run, scaled to wrk's measured window.
        cpu_seconds={name: value * result.seconds / seconds for name, value in cpu.items()},
        client_cpu_seconds=client_seconds * result.seconds / seconds,
        page_views=round(result.requests / plan.images_per_page),
    )


def client_cpu() -> float:
    """CPU seconds of this process and of its ended children (the client's processes, once the pool joined)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def find(workload: Workload, server: str, phase: str) -> Pass | None:
    return next((p for p in workload.passes if p.server == server and p.phase == phase), None)


def warmest(workload: Workload, server: str) -> Pass | None:
    """The server's warm pass from wrk when there is one (the client is not its bound), else from Python."""
    return find(workload, server, "warm, wrk") or find(workload, server, "warm")


def markdown(workload: Workload) -> str:
    plan = workload.plan
    load_before = ", ".join(f"{value:.2f}" for value in workload.load_before)
    load_after = ", ".join(f"{value:.2f}" for value in workload.load_after)
    lines = [
        "# Workload: what a site sees",
        "",
        f"Run {workload.started}: `{workload.command}` ({plan.name} plan), {workload.elapsed / 60:.1f} min. "
        f"Load average (1, 5, 15 min) before: {load_before}; after: {load_after}.",
        "",
    ]
    if plan.name == "full" and (plan.originals, plan.page_views) != (FULL.originals, FULL.page_views):
        lines += [
            f"A reduced run ({plan.originals} originals and {plan.page_views} page views instead of "
            f"{FULL.originals} and {FULL.page_views}) on a machine shared with other work (the load average "
            "above): numbers move from run to run; the full run is `make bench`.",
            "",
        ]
    lines += [
        f"{plan.page_views} page views of {plan.images_per_page} images each over {plan.originals} originals "
        f"({plan.width}x{plan.height} JPEG, {workload.original_bytes / 1e6:.0f} MB on S3), popularity Zipf "
        f"s={plan.zipf_s:g} (the most viewed 1% of originals get {workload.top_share:.0%} of the requests); "
        f"each visitor's browser picks one width of the srcset ({', '.join(map(str, plan.widths))}) and WebP "
        f"({plan.webp_share:.0%} of visitors) or JPEG. "
        + ", ".join(f"{name}: {count} distinct URLs" for name, count in workload.distinct_urls.items())
        + f". S3 is moto's server behind a delay proxy adding {plan.delay_ms:g} ms per request turn; "
        f"{plan.connections} connections from {plan.client_processes} client process(es). "
        "Each server plays the page views cold (an empty derivative store), then warm (the same page views "
        f"{plan.warm_rounds} times over, everything stored).",
        "",
        "## Results",
        "",
        "| server | pass | requests | req/s | p50 ms | p99 ms | CPU s / 1,000 page views (server, nginx) "
        "| CPU s / 1,000 page views (S3 stand-in) | derivatives made | bytes stored | answers |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in workload.passes:
        server_groups = [group for group in run.cpu_seconds if group != S3_GROUP]
        made = "–" if run.server == "thumbor" else str(run.created)
        answers = ", ".join(f"{count} × {status}" for status, count in sorted(run.statuses.items()))
        lines.append(
            f"| {run.server} | {run.phase} | {run.requests} | {run.rps:.1f} | {run.p50_ms:.1f} | {run.p99_ms:.1f} "
            f"| {run.cpu_per_thousand_views(server_groups):.1f} | {run.cpu_per_thousand_views([S3_GROUP]):.1f} "
            f"| {made} | {run.bytes_stored / 1e6:.2f} MB ({run.objects_stored} objects) | {answers} |"
        )
    lines += ["", *goals(workload), "", *bounds(workload), "", *method(workload)]
    return "\n".join(lines) + "\n"


def goals(workload: Workload) -> list[str]:
    lines = ["## Goals", ""]
    theirs, cold_theirs = warmest(workload, "thumbor"), find(workload, "thumbor", "cold")
    if theirs is None or cold_theirs is None:
        return [*lines, "Not compared: thumbor was not measured in this run."]
    for name, label in (("sidecar", "sidecar stack on S3"), ("sidecar-local", "sidecar stack on local storage")):
        ours, cold_ours = warmest(workload, name), find(workload, name, "cold")
        if ours is None or cold_ours is None:
            continue
        ratio = ours.rps / theirs.rps
        lines.append(
            f"- Warm ({ours.phase}), {label} ÷ thumbor-with-result-storage req/s = **{ratio:.2f}×** (goal ≥ 10×: "
            f"{'met' if ratio >= 10 else 'not met'}); p99 {ours.p99_ms:.0f} ms against {theirs.p99_ms:.0f} ms "
            f"({'lower' if ours.p99_ms < theirs.p99_ms else 'not lower'}). "
            f"Cold: {cold_ours.rps / cold_theirs.rps:.2f}×, "
            f"p99 {cold_ours.p99_ms:.0f} ms against {cold_theirs.p99_ms:.0f} ms."
        )
    return lines


def bounds(workload: Workload) -> list[str]:
    """Where each pass's CPU went, against what the machine has: what bounds it, as far as CPU tells."""
    cores = int(workload.machine.get("cores", "2"))
    lines = ["## What bounds each pass", ""]
    for run in workload.passes:
        spent = sum(run.cpu_seconds.values())
        # thumbor does not say what it made; a cold pass starts from an empty result storage.
        made = run.objects_stored if run.server == "thumbor" and run.phase == "cold" else run.created
        busiest = max(run.cpu_seconds, key=lambda group: run.cpu_seconds[group])
        shares = ", ".join(f"{group} {seconds / spent:.0%}" for group, seconds in run.cpu_seconds.items() if spent)
        lines.append(
            f"- {run.server} {run.phase}: the servers used {spent / run.seconds:.2f} of {cores} cores "
            f"({shares}); the busiest is {busiest}. The client used {run.client_cpu_seconds / run.seconds:.2f}"
            + (", more than the servers: it is the likelier bound." if run.client_cpu_seconds > spent else ".")
            + (f" {spent * 1000 / made:.0f} ms of the servers' CPU per derivative made." if made else "")
        )
    lines += [
        "",
        "A cold pass is bounded by the misses: each first request of a (key, width, format) renders once, while the "
        "repeats of popular images are hits. On local storage that is the renders' CPU; on S3 a miss also waits on "
        "S3 round trips (each one the delay proxy's latency plus moto's time), so a cold pass through S3 can leave "
        "cores idle while the workers wait. A warm pass on S3 is bounded by reading stored objects from S3: here one "
        "Python moto process behind the delay proxy, far slower than a real S3 endpoint, so the warm sidecar-on-S3 "
        "numbers are a floor of what nginx in front of S3 serves; on local storage it is nginx, or the client.",
    ]
    return lines


def method(workload: Workload) -> list[str]:
    plan = workload.plan
    lines = [
        "## Method",
        "",
        f"- sidecar: `resize-sidecar serve --workers {plan.workers}` on S3 (moto through the delay proxy), behind "
        "the nginx configuration `resize-sidecar nginx` renders: a stored derivative is an nginx hit read from S3, "
        "a missing one falls back to the sidecar, which renders and stores it. URLs: `MediaURLs.srcset` with the "
        "sidecar's default qualities.",
        f"- thumbor: {plan.workers} single-process instances behind nginx (`least_conn`, keepalive), its HTTP "
        "loader reading the same originals from the same bucket through the same delay proxy, its file result "
        "storage on (unsafe URLs stored), URLs `/unsafe/fit-in/Wx0/filters:format(webp|jpeg):quality(80)/…`.",
        "- CPU: utime + stime from /proc/PID/stat of each server's process and its children (gunicorn's and "
        "nginx's workers), before and after a pass. The S3 stand-in's CPU is shown apart: a real S3 is not on "
        "the site's machine.",
        "- Bytes stored: the derivatives in the bucket (the sidecar) and the files of thumbor's result storage.",
        "- One run, cold then warm per server; no timing assertion is made anywhere.",
    ]
    lines += ["", "Versions: " + ", ".join(f"{name} {value}" for name, value in workload.versions.items()) + "."]
    lines += ["Machine: " + ", ".join(f"{name} {value}" for name, value in workload.machine.items()) + "."]
    lines += [f"- Note: {note}" for note in workload.notes]
    if workload.thumbor_config:
        lines += ["", "thumbor's configuration:", "", "```python", workload.thumbor_config.strip(), "```"]
    return lines


def raw(workload: Workload) -> dict[str, object]:
    data = asdict(workload)
    data["passes"] = [{**asdict(run), "rps": run.rps} for run in workload.passes]
    return data


if __name__ == "__main__":
    sys.exit(main())
