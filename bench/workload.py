#!/usr/bin/env python3
"""What a site sees: Zipf-distributed page views over thousands of originals, the sidecar stack against thumbor.

``python bench/workload.py`` (part of ``make bench``): a few thousand originals on S3 (moto's server behind the delay
proxy), page views drawn from a Zipf distribution, each image of a page asked for once in the width and format its
visitor's browser picks from the page's srcset (WebP and JPEG, built by ``MediaURLs`` as the middleware builds them).
The same page views are played through nginx to the sidecar (on S3, on S3 with nginx's cache of hits, on local
storage) and through nginx to thumbor with its result storage on, reading the same originals from the same bucket.
Each server plays them cold (nothing derived yet), then warm (everything stored): as fast as it answers, and at one
offered rate for all. Then each sidecar stack rotates its secret (``SECRETS=new,old``, the store kept) and plays the
warm page views again with URLs signed by the new secret, counting the renders. Writes
``bench/results/workload.{md,json}``. ``--smoke``: a few tiny originals and page views, no thumbor, no nginx cache
row, a few seconds (tests/e2e/test_bench_smoke.py).
"""

from __future__ import annotations

import datetime
import http.client
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

from resize_sidecar.core.settings import Settings
from resize_sidecar.core.settings import load as load_settings
from resize_sidecar.core.urls import MediaURLs

SECRET = "bench-workload-secret-0123456789"
#: The secret a rotation brings in; SECRET stays second, so URLs already in pages still verify.
NEW_SECRET = "bench-workload-rotated-secret-0123"
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
    # Requests per second offered to every server in the paced warm pass (0: no such pass): below what thumbor and
    # nginx serve warm, so that p99 there compares latency at equal load, not throughput.
    paced_rps: float = 400.0
    use_cache: bool = True  # the sidecar on S3 again, with nginx's cache of S3 hits on
    cache_size: str = "2g"  # RESIZE_SIDECAR_NGINX_CACHE_SIZE of that row
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
    paced_rps=0.0,
    use_cache=False,
    use_thumbor=False,
)


@dataclass
class Pass:
    """One server's play of the page views, as the client and /proc saw it."""

    requests: int
    seconds: float
    statuses: dict[str, int]
    # Derivatives the sidecar rendered: the increase of its transform counter (its answers' X-Derivative would
    # count again the answers nginx's cache keeps); 0 for thumbor, which does not say.
    created: int
    p50_ms: float
    p99_ms: float
    cpu_seconds: dict[str, float]  # process group -> CPU seconds spent during the pass
    client_cpu_seconds: float  # the load generator's, on the same cores
    page_views: int
    server: str = ""
    phase: str = ""  # cold, warm, "warm, wrk", "warm, paced" or "rotated, warm"
    bytes_stored: int = 0  # derivatives in storage after the pass
    objects_stored: int = 0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def cpu_per_thousand_views(self, groups: Sequence[str]) -> float:
        return sum(self.cpu_seconds.get(group, 0.0) for group in groups) * 1000 / self.page_views


@dataclass
class Rotation:
    """A sidecar stack's warm page views played again after its secret was rotated, URLs signed by the new one."""

    played: Pass  # its bytes_stored and objects_stored: after the pass
    renders: int  # the increase of the sidecar's resize_sidecar_transforms_total over the pass
    sidecar_requests: int  # of resize_sidecar_requests_total{route="derivative"}: what nginx did not serve itself
    bytes_before: int  # derivatives stored before the rotation
    objects_before: int


@dataclass
class SidecarStack:
    """What a rotation restarts: the sidecar and the nginx in front of it, with their settings."""

    env: dict[str, str]
    sidecar: servers.Server
    nginx: servers.Nginx


@dataclass
class Target:
    """A server the page views are played against: its nginx, its requests, its processes, what it stored."""

    name: str
    url: str
    paths: list[str]
    groups: dict[str, list[servers.Server]]
    stored: Callable[[], tuple[int, int]]  # bytes and objects
    stack: SidecarStack | None = None  # a sidecar's, which can rotate its secret


@dataclass
class Workload:
    plan: Plan
    started: str
    command: str
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    passes: list[Pass] = field(default_factory=list)
    rotations: list[Rotation] = field(default_factory=list)
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

    def sidecar_stack(name: str, stack_env: dict[str, str]) -> SidecarStack:
        sidecar = launch(servers.sidecar(stack_env, logs, workers=plan.workers, name=f"sidecar-{name}"))
        nginx = servers.Nginx.for_sidecar(name, stack_env, sidecar.url, logs)
        launch(nginx)
        return SidecarStack(stack_env, sidecar, nginx)

    on_s3 = sidecar_stack("workload", env)
    # The same stack with nginx's cache of S3 hits, as production sets it: the peer of thumbor's local result
    # storage. Its derivatives go under their own prefix of the same bucket, so that its cold pass starts cold.
    cache_env = {**env, "RESIZE_SIDECAR_NGINX_CACHE_SIZE": plan.cache_size, "RESIZE_SIDECAR_DERIVED_PREFIX": "_c/"}
    cached = sidecar_stack("workload-cache", cache_env) if plan.use_cache else None
    # The same stack on local storage: its hits are nginx reading files, as thumbor's result storage is files.
    media = servers.world_readable_dir("bench-workload-media-")
    stack.callback(shutil.rmtree, media, ignore_errors=True)
    local_env = {
        "RESIZE_SIDECAR_SECRETS": SECRET,
        "RESIZE_SIDECAR_STORAGE": "local",
        "RESIZE_SIDECAR_LOCAL_ROOT": str(media),
    }
    local = sidecar_stack("workload-local", local_env)
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
    views = page_views(plan, keys)
    workload.top_share = top_share(views, len(keys))
    s3: list[servers.Server] = [moto, proxy]

    def sidecar_target(name: str, sidecar: SidecarStack, stored: Callable[[], tuple[int, int]]) -> Target:
        groups: dict[str, list[servers.Server]] = {"sidecar": [sidecar.sidecar], "nginx": [sidecar.nginx]}
        if sidecar.env["RESIZE_SIDECAR_STORAGE"] == "s3":
            groups[S3_GROUP] = s3
        url = sidecar.nginx.url
        return Target(name, url, sidecar_paths(plan, sidecar.env, views), groups, stored, sidecar)

    def in_bucket(sidecar: SidecarStack) -> Callable[[], tuple[int, int]]:
        return partial(derived_bytes, moto.url, settings_of(sidecar.env).derived_prefix)

    targets = [sidecar_target("sidecar", on_s3, in_bucket(on_s3))]
    if cached is not None:
        targets.append(sidecar_target("sidecar, nginx cache", cached, in_bucket(cached)))
    derived = media / settings_of(local_env).derived_prefix
    targets.append(sidecar_target("sidecar-local", local, partial(folder_bytes, derived)))
    workload.distinct_urls["sidecar"] = len(set(targets[0].paths))
    if thumbor_group:
        origin = f"{proxy.url.removeprefix('http://')}/{BUCKET}"
        thumbor_paths = [thumbor_path(origin, key, width, fmt) for key, width, fmt in views]
        workload.distinct_urls["thumbor"] = len(set(thumbor_paths))
        thumbor_groups = {"thumbor": thumbor_group[:-1], "nginx": thumbor_group[-1:], S3_GROUP: s3}
        url = thumbor_group[-1].url
        targets.append(Target("thumbor", url, thumbor_paths, thumbor_groups, partial(folder_bytes, result_root)))

    phases = ["cold", "warm"] + ["warm, wrk"] * use_wrk + ["warm, paced"] * bool(plan.paced_rps)
    for target in targets:
        for phase in phases:
            servers.wait_idle(launched, limit=10.0 if plan is not SMOKE else 0.0)
            counted = sidecar_counts(target.stack.sidecar.url) if target.stack else (0, 0)
            result = play_phase(plan, target, phase, work)
            renders = sidecar_counts(target.stack.sidecar.url)[0] - counted[0] if target.stack else 0
            size, count = target.stored()
            result = replace(
                result, server=target.name, phase=phase, created=renders, bytes_stored=size, objects_stored=count
            )
            workload.passes.append(result)
            log(describe(result))
        if target.stack is not None:
            rotation = rotate(plan, target, views, logs, launched, stack)
            workload.rotations.append(rotation)
            log(f"{describe(rotation.played)}; {rotation.renders} renders after the rotation")


def play_phase(plan: Plan, target: Target, phase: str, work: Path) -> Pass:
    """One pass of the page views: once (cold), or ``plan.warm_rounds`` times as fast as answers come (warm) or at
    the plan's offered rate (warm, paced), or from wrk for ``plan.wrk_seconds``."""
    if phase == "warm, wrk":
        log(f"{target.name} {phase}: {plan.wrk_seconds:g} s over the same requests")
        return play_wrk(plan, target.url, target.paths, target.groups, work)
    rounds = 1 if phase == "cold" else plan.warm_rounds
    paced = phase == "warm, paced"
    offered = f", offered at {plan.paced_rps:g} requests/s" if paced else ""
    log(f"{target.name} {phase}: {plan.page_views * rounds} page views, {len(target.paths) * rounds} requests{offered}")
    return play(plan, target.url, target.paths * rounds, target.groups, plan.page_views * rounds, paced=paced)


def settings_of(env: dict[str, str]) -> Settings:
    """A stack's settings, with the media URL its nginx serves (the default's)."""
    return load_settings(environ={**env, "RESIZE_SIDECAR_MEDIA_URL": "/media/"})


def sidecar_paths(plan: Plan, env: dict[str, str], views: list[tuple[str, int, str]]) -> list[str]:
    """The sidecar URLs of the page views, signed with the first of the stack's secrets."""
    urls = MediaURLs(settings_of(env))
    return [sidecar_path(urls, plan, key, width, fmt) for key, width, fmt in views]


def rotate(
    plan: Plan,
    target: Target,
    views: list[tuple[str, int, str]],
    logs: Path,
    launched: list[servers.Server],
    stack: ExitStack,
) -> Rotation:
    """Rotate the stack's secret as an operator does, then play the warm page views with the new secret's URLs.

    The sidecar restarts with ``SECRETS=new,old``; nginx takes the configuration rendered from them by a reload
    (its cache stays, as on ``nginx -s reload``); the store is kept. What nginx then does not find goes to the
    sidecar, whose transform counter says what was rendered again.
    """
    assert target.stack is not None
    before = target.stored()
    env = {**target.stack.env, "RESIZE_SIDECAR_SECRETS": f"{NEW_SECRET},{SECRET}"}
    old = target.stack.sidecar
    # Started before the old one stops, so on another port: until the reload, nginx sends what it cannot verify
    # to the stopped one (502).
    sidecar = servers.sidecar(env, logs, workers=plan.workers, name=f"{old.name}-rotated")
    stack.callback(sidecar.stop)
    sidecar.start()
    launched.append(sidecar)
    old.stop()
    launched.remove(old)
    # Counted from here: the request that sees the reload through is one of the page views, and may be a render.
    counted = sidecar_counts(sidecar.url)
    nginx = target.stack.nginx
    nginx.reload(servers.Nginx.render_for_sidecar(env, sidecar.url, nginx.port))
    paths = sidecar_paths(plan, env, views)
    wait_for_new_secret(nginx, paths[0])
    groups = {**target.groups, "sidecar": [sidecar]}
    target.stack = SidecarStack(env, sidecar, nginx)
    servers.wait_idle(launched, limit=10.0 if plan is not SMOKE else 0.0)
    log(f"{target.name} rotated, warm: SECRETS=new,old, {plan.page_views * plan.warm_rounds} page views")
    played = play(plan, target.url, paths * plan.warm_rounds, groups, plan.page_views * plan.warm_rounds)
    renders, requests = (after - start for after, start in zip(sidecar_counts(sidecar.url), counted, strict=True))
    size, count = target.stored()
    played = replace(
        played, server=target.name, phase="rotated, warm", created=renders, bytes_stored=size, objects_stored=count
    )
    return Rotation(played, renders, requests, *before)


def wait_for_new_secret(nginx: servers.Nginx, path: str, limit: float = 20.0) -> None:
    """Wait until nginx answers ``path`` (signed by the new secret) with 200: the reload has taken effect.

    Before it, the old workers do not verify the path and send it to the old sidecar, which has stopped (502).
    """
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=5)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                return
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.1)
    raise RuntimeError(f"nginx did not serve {path} with the new secret within {limit:g} s:\n{nginx.log_tail()}")


def sidecar_counts(sidecar_url: str) -> tuple[int, int]:
    """The sidecar's renders (resize_sidecar_transforms_total, every format) and derivative requests
    (resize_sidecar_requests_total{route="derivative"}, every status), from its /metrics."""
    host, port = sidecar_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    renders = requests = 0.0
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name.startswith("resize_sidecar_transforms_total"):
            renders += float(value)
        elif name.startswith("resize_sidecar_requests_total{") and 'route="derivative"' in name:
            requests += float(value)
    return round(renders), round(requests)


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
    *,
    paced: bool = False,
) -> Pass:
    """Every path once, in page order, from ``plan.connections`` keep-alive connections split over the client's
    processes (one Python process cannot keep nginx busy on hits); the servers' CPU over the same time.
    ``paced``: offered at ``plan.paced_rps`` in all, latency counted from when each request was due."""
    per_process = max(1, plan.connections // plan.client_processes)
    rate = plan.paced_rps / plan.client_processes if paced else 0.0
    shares = [
        (base_url, paths[index :: plan.client_processes], per_process, 120, rate)
        for index in range(plan.client_processes)
    ]
    meter = Meter(groups)
    if plan.client_processes == 1:
        answers = [load.fetch_all(*shares[0])]
    else:
        # The client processes keep SIGTERM's default: the pool ends them with it, which is no interruption.
        context = multiprocessing.get_context("fork")
        with context.Pool(plan.client_processes, signal.signal, (signal.SIGTERM, signal.SIG_DFL)) as pool:
            answers = pool.starmap(load.fetch_all, shares)
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
        f"{plan.warm_rounds} times over, everything stored)"
        + (f", then warm again offered at {plan.paced_rps:g} requests/s (warm, paced)" if plan.paced_rps else "")
        + ". Each sidecar stack then rotates its secret and plays the warm page views with the new secret's URLs "
        "(rotated, warm).",
        "",
        "## Results",
        "",
        "| server | pass | requests | req/s | p50 ms | p99 ms | CPU s / 1,000 page views (server, nginx) "
        "| CPU s / 1,000 page views (S3 stand-in) | derivatives made | bytes stored | answers |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in every_pass(workload):
        server_groups = [group for group in run.cpu_seconds if group != S3_GROUP]
        made = "–" if run.server == "thumbor" else str(run.created)
        answers = ", ".join(f"{count} × {status}" for status, count in sorted(run.statuses.items()))
        lines.append(
            f"| {run.server} | {run.phase} | {run.requests} | {run.rps:.1f} | {run.p50_ms:.1f} | {run.p99_ms:.1f} "
            f"| {run.cpu_per_thousand_views(server_groups):.1f} | {run.cpu_per_thousand_views([S3_GROUP]):.1f} "
            f"| {made} | {run.bytes_stored / 1e6:.2f} MB ({run.objects_stored} objects) | {answers} |"
        )
    lines += ["", *goals(workload), "", *rotations(workload), "", *bounds(workload), "", *method(workload)]
    return "\n".join(lines) + "\n"


def every_pass(workload: Workload) -> list[Pass]:
    """The passes in the order they ran: each server's, and after a sidecar stack's, its rotation's."""
    rotated = {rotation.played.server: rotation.played for rotation in workload.rotations}
    found: list[Pass] = []
    for index, run in enumerate(workload.passes):
        found.append(run)
        last_of_server = index + 1 == len(workload.passes) or workload.passes[index + 1].server != run.server
        if last_of_server and run.server in rotated:
            found.append(rotated[run.server])
    return found


#: The sidecar rows, what each is, and which goal it answers.
SIDECAR_ROWS = (
    (
        "sidecar, nginx cache",
        "sidecar stack on S3 with nginx's cache of S3 hits (the peer of thumbor's local result storage: the warm "
        "goal's comparison)",
    ),
    ("sidecar-local", "sidecar stack on local storage (the warm goal's comparison where derivatives are files)"),
    (
        "sidecar",
        "sidecar stack on S3 without nginx's cache (every hit read from S3: it shows the S3 bound, here one moto "
        "process, and answers no goal)",
    ),
)


def goals(workload: Workload) -> list[str]:
    lines = ["## Goals", ""]
    lines += rotation_goal(workload)
    theirs, cold_theirs = warmest(workload, "thumbor"), find(workload, "thumbor", "cold")
    if theirs is None or cold_theirs is None:
        return [*lines, "- Warm and cold: not compared, thumbor was not measured in this run."]
    paced_theirs = find(workload, "thumbor", "warm, paced")
    for name, label in SIDECAR_ROWS:
        ours, cold_ours = warmest(workload, name), find(workload, name, "cold")
        if ours is None or cold_ours is None:
            continue
        ratio = ours.rps / theirs.rps
        paced_ours = find(workload, name, "warm, paced")
        if paced_ours is not None and paced_theirs is not None:
            lower = paced_ours.p99_ms < paced_theirs.p99_ms
            p99 = (
                f"p99 at {workload.plan.paced_rps:g} requests/s offered to both (warm, paced) "
                f"{paced_ours.p99_ms:.1f} ms against {paced_theirs.p99_ms:.1f} ms "
                f"({'lower' if lower else 'not lower'}{kept_up(workload, paced_ours, paced_theirs)})"
            )
        else:
            lower = ours.p99_ms < theirs.p99_ms
            p99 = f"p99 ({ours.phase}) {ours.p99_ms:.0f} ms against {theirs.p99_ms:.0f} ms"
        met = "met" if ratio >= 10 and lower else "not met"
        lines.append(
            f"- Warm, {label}: req/s ({ours.phase}) ÷ thumbor-with-result-storage = **{ratio:.2f}×**; {p99}. "
            f"Goal (≥ 10× at lower p99): {met}. Cold: {cold_ours.rps / cold_theirs.rps:.2f}×, "
            f"p99 {cold_ours.p99_ms:.0f} ms against {cold_theirs.p99_ms:.0f} ms (what bounds it: below)."
        )
    lines += [
        "",
        "Req/s comes from the wrk pass, where each server runs at its own maximum. Its p99 is not a fair latency "
        "comparison: with a fixed number of connections each kept busy, latency is connections ÷ throughput, so "
        "it restates the req/s. The p99 of the goal comes from the paced pass instead, where the same client offers "
        "every server the same requests per second (below what the goal's servers serve), and counts each "
        "request's latency from when it was due, so waiting behind a slow answer counts.",
    ]
    return lines


def kept_up(workload: Workload, *runs: Pass) -> str:
    """A warning when a paced pass answered markedly fewer requests per second than were offered."""
    behind = [run for run in runs if run.rps < 0.95 * workload.plan.paced_rps]
    if not behind:
        return ""
    named = ", ".join(f"{run.server} answered {run.rps:.0f}/s" for run in behind)
    return f"; did not keep up with the offered rate: {named}, so its p99 is mostly queueing"


def rotation_goal(workload: Workload) -> list[str]:
    if not workload.rotations:
        return []
    renders = sum(rotation.renders for rotation in workload.rotations)
    unchanged = all(
        (r.bytes_before, r.objects_before) == (r.played.bytes_stored, r.played.objects_stored)
        for r in workload.rotations
    )
    each = ", ".join(f"{rotation.played.server} {rotation.renders}" for rotation in workload.rotations)
    return [
        f"- Rotation: **{renders} renders** after rotating SECRETS on a warm store (goal 0: "
        f"{'met' if renders == 0 else 'not met'}; {each}, counted by each sidecar's "
        f"`resize_sidecar_transforms_total`); bytes stored {'unchanged' if unchanged else 'changed'} (below)."
    ]


def rotations(workload: Workload) -> list[str]:
    if not workload.rotations:
        return []
    lines = [
        "## Rotation",
        "",
        "After its warm passes each sidecar stack rotates its secret: the sidecar restarts with "
        "`SECRETS=new,old`, nginx reloads the configuration rendered from them (its cache kept), the store stays. "
        f"The warm page views are then played again ({workload.plan.warm_rounds} times), every URL signed by the "
        "new secret. Renders and sidecar requests are the increases of the sidecar's `resize_sidecar_transforms_total` "
        'and `resize_sidecar_requests_total{route="derivative"}` over the pass (from its /metrics).',
        "",
        "| server | renders | sidecar requests | requests | req/s | p50 ms | p99 ms | bytes stored before | after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for rotation in workload.rotations:
        run = rotation.played
        lines.append(
            f"| {run.server} | {rotation.renders} | {rotation.sidecar_requests} | {run.requests} | {run.rps:.1f} "
            f"| {run.p50_ms:.1f} | {run.p99_ms:.1f} "
            f"| {rotation.bytes_before} ({rotation.objects_before} objects) "
            f"| {run.bytes_stored} ({run.objects_stored} objects) |"
        )
    return lines


def bounds(workload: Workload) -> list[str]:
    """Where each pass's CPU went, against what the machine has: what bounds it, as far as CPU tells."""
    cores = int(workload.machine.get("cores", "2"))
    lines = ["## What bounds each pass", ""]
    for run in every_pass(workload):
        spent = sum(run.cpu_seconds.values())
        # thumbor does not say what it made; a cold pass starts from an empty result storage.
        made = run.objects_stored if run.server == "thumbor" and run.phase == "cold" else run.created
        busiest = max(run.cpu_seconds, key=lambda group: run.cpu_seconds[group])
        shares = ", ".join(f"{group} {seconds / spent:.0%}" for group, seconds in run.cpu_seconds.items() if spent)
        lines.append(
            f"- {run.server} {run.phase}: the servers used {spent / run.seconds:.2f} of {cores} cores "
            f"({shares}); the busiest is {busiest}. The client used {run.client_cpu_seconds / run.seconds:.2f}"
            + (", more than the servers: it is the likelier bound." if run.client_cpu_seconds > spent else ".")
            + (
                " Together they used under half the cores without a set rate: the pass waits on something else."
                if run.phase != "warm, paced" and (spent + run.client_cpu_seconds) / run.seconds < cores / 2
                else ""
            )
            + (f" {spent * 1000 / made:.0f} ms of the servers' CPU per derivative made." if made else "")
        )
    lines += [
        "",
        "A cold pass is bounded by the misses: each first request of a (key, width, format) renders once, while the "
        "repeats of popular images are hits. On local storage that is the renders' CPU; on S3 a miss also waits on "
        "S3 round trips (each one the delay proxy's latency plus moto's time), so a cold pass through S3 can leave "
        "cores idle while the workers wait. A warm pass on S3 without nginx's cache is bounded by reading stored "
        "objects from S3: here one Python moto process behind the delay proxy, far slower than a real S3 endpoint, "
        "so those numbers are a floor of what nginx in front of S3 serves. With nginx's cache, a warm hit reads "
        "nginx's cache files (after one read of each object from S3); on local storage it reads the stored files. "
        "Both are bounded by nginx, or by the client. nginx checks a cached hit with S3 after `NGINX_CACHE_VALID` "
        "(10 minutes by default, longer than these passes, so none is checked here), behind the request that found "
        "it expired; what that costs is measured apart (`experiments.md`, decision 7). A paced pass is bounded by the "
        "offered rate unless the server cannot keep up.",
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
        f"- sidecar, nginx cache: the same, with `RESIZE_SIDECAR_NGINX_CACHE_SIZE={plan.cache_size}` (nginx caches "
        "S3 hits on its disk, `deploy/nginx/cache.conf.template`) and its derivatives under their own prefix "
        "(`_c/`) of the same bucket.",
        "- sidecar-local: the same on local storage (originals hard-linked from the same scenes).",
        f"- thumbor: {plan.workers} single-process instances behind nginx (`least_conn`, keepalive), its HTTP "
        "loader reading the same originals from the same bucket through the same delay proxy, its file result "
        "storage on (unsafe URLs stored), URLs `/unsafe/fit-in/Wx0/filters:format(webp|jpeg):quality(80)/…`.",
        "- Paced pass: the Python client's request i is due i ÷ rate seconds after the start; it waits for that "
        "moment (or goes late when every connection is busy), and its latency counts from it.",
        "- Rotation: a new sidecar starts with `SECRETS=new,old` and the old one stops; nginx gets the configuration "
        "`resize-sidecar nginx` renders from them by SIGHUP (as `nginx -s reload`), on the same port and cache; "
        "the pass starts once a URL signed by the new secret answers 200 (before the reload it goes to the stopped "
        "sidecar: 502). The counters are read before that first request.",
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
    data["rotations"] = [
        {**asdict(rotation), "played": {**asdict(rotation.played), "rps": rotation.played.rps}}
        for rotation in workload.rotations
    ]
    return data


if __name__ == "__main__":
    sys.exit(main())
