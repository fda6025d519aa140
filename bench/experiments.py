#!/usr/bin/env python3
"""Tuning experiments behind the sidecar's settings: each option measured, not guessed.

``python bench/experiments.py [--only NAME ...] [--seconds S] [--rounds N]`` writes ``bench/results/experiments.md``.
Experiments: ``shrink`` (JPEG shrink-on-load scale against SSIM and time), ``rule`` (the sidecar's shrink rule
against others, on the benchmark's originals and the shared photos, and its render time), ``copies`` (source bytes
copied on the way to libvips, before and now), ``encoders`` (bytes at equal SSIM with other encoder options),
``cache`` (libvips' operation cache on or off), ``overhead`` (nginx in front and the sidecar's own work, against the
floor), ``hits`` (what the hit path's nginx location costs), ``check`` (what nginx's signature check costs a
hit), ``nopush`` (nginx's ``tcp_nopush`` on cached S3 hits and local hits), ``fsync`` (what durable local writes
cost),
``concurrency`` (VIPS_CONCURRENCY 1 or 2 under load), ``count`` (how many workers on 2 cores), ``workers`` (sync or
threaded workers and transform slots, with and without 30 ms of S3 latency), ``cores`` (renders per second with every
core rendering and no server: the sidecar's render, libvips' thumbnail and thumbor's engine). They reuse the images
of ``run.py``.
"""

from __future__ import annotations

# First: run sets libvips' thread count and moto's credentials before anything here loads pyvips or boto3.
from run import SECRET, local_env, stop_on_signal, upload  # isort: split

import datetime
import gc
import http.client
import io
import multiprocessing
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

import images
import inprocess
import load
import pyvips
import report
import servers
from common import BENCH, RESULTS, arguments, spread
from load import FIT_HEIGHTS, OPERATIONS, LoadResult, UrlPool
from quality import References, luma, ssim

from resize_sidecar.core.signing import parse_path
from resize_sidecar.media import imaging
from resize_sidecar.media.local import LocalStorage
from resize_sidecar.media.storage import read_capped

Section = list[str]


def main(argv: Sequence[str] | None = None) -> int:
    parser = arguments(__doc__, out=RESULTS / "experiments.md", rounds=2, seconds=4.0)
    parser.add_argument("--only", nargs="*", choices=list(EXPERIMENTS), help="experiments to run (default: all)")
    parser.add_argument("--work", type=Path, default=BENCH / "work")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_signal)  # unwind the ExitStack, so that every server stops
    work = args.work.resolve()
    sources = {name: images.SOURCES[name] for name in ("24mp", "12mp", "1080p")}
    files = {name: images.ensure(source, work / "images-1") for name, source in sources.items()}
    lines = [
        "# resize-sidecar tuning experiments",
        "",
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}; `bench/experiments.py`, "
        f"{args.rounds} interleaved rounds of {args.seconds:g} s wrk runs where load is involved. "
        f"Machine: {report.machine()['cpu']}, {report.machine()['cores']} cores. "
        + ", ".join(f"{k} {v}" for k, v in report.versions().items() if k in ("libvips", "pyvips", "gunicorn"))
        + ".",
        "",
    ]
    with ExitStack() as stack:
        logs = work / "logs" / f"experiments-{time.strftime('%Y%m%d-%H%M%S')}"
        media = servers.world_readable_dir("bench-media-")
        stack.callback(shutil.rmtree, media, ignore_errors=True)
        keys = {name: images.link_keys(files[name], media, sources[name], 400) for name in sources}
        context = Context(
            args.seconds, args.rounds, work, logs, media, keys, {n: f.read_bytes() for n, f in files.items()}
        )
        for name in args.only or list(EXPERIMENTS):
            print(f"[{time.strftime('%H:%M:%S')}] experiment {name}", flush=True)
            lines += EXPERIMENTS[name](context)
            args.out.write_text("\n".join(lines) + "\n")  # after each: a long run keeps what it measured
    print(f"wrote {args.out}")
    return 0


class Context:
    """What every experiment needs: run length, folders, the benchmark originals and their keys."""

    def __init__(
        self,
        seconds: float,
        rounds: int,
        work: Path,
        logs: Path,
        media: Path,
        keys: dict[str, list[str]],
        data: dict[str, bytes],
    ) -> None:
        self.seconds, self.rounds, self.work, self.logs = seconds, rounds, work, logs
        self.media, self.keys, self.data = media, keys, data
        self.pools: dict[tuple[str, str, str], UrlPool] = {}

    def paths(self, namespace: str, source: str, op_name: str, count: int, keys: list[str] | None = None) -> list[str]:
        op = OPERATIONS[op_name]
        index = (namespace, source, op_name)
        if index not in self.pools:
            self.pools[index] = UrlPool(
                keys or self.keys[source], op, lambda key, op, variant: load.sidecar_path(key, op, variant, SECRET)
            )
        return self.pools[index].take(count)

    def load(
        self, url: str, namespace: str, source: str, connections: int, keys: list[str] | None = None
    ) -> LoadResult:
        ceiling = 800 / images.SOURCES[source].megapixels + 20
        paths = self.paths(namespace, source, "fit-jpg", int(ceiling * self.seconds) + 50, keys)
        result = load.wrk_load(
            url, paths, connections=connections, seconds=self.seconds, threads=2, work=self.work, check_created=True
        )
        time.sleep(0.5)
        return result

    def load_floor(self, url: str, source: str, connections: int) -> LoadResult:
        op = OPERATIONS["fit-jpg"]
        paths = [load.floor_path(key, op, 0) for key in self.keys[source][: int(40 * self.seconds) + 50]]
        load.python_load(url, paths[:4], connections=2)  # codec start-up in both workers
        result = load.wrk_load(url, paths, connections=connections, seconds=self.seconds, threads=2, work=self.work)
        time.sleep(0.5)
        return result

    def warm(self, url: str, namespace: str, source: str, workers: int, keys: list[str] | None = None) -> None:
        load.python_load(url, self.paths(namespace, source, "fit-jpg", 2 * workers, keys), connections=workers)


def timed(function: Callable[[], object], repeats: int) -> list[float]:
    function()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return seconds


def shrink(context: Context) -> Section:
    """JPEG shrink-on-load: decode at 1/1, 1/2, 1/4 or 1/8 scale, then reduce to the box; SSIM of the pixels."""
    lines = [
        "## JPEG shrink-on-load: which DCT scale keeps quality",
        "",
        "Decode with `jpegload_buffer(shrink=S)`, then `thumbnail_image` to the box; SSIM of the unencoded result "
        "against a full-decode Lanczos-3 reference (so only the decode scale and the resize differ). "
        '`thumbnail_buffer` is libvips\' own choice; `+shrink=8 option` passes `option_string="shrink=8"`. '
        "Time in ms (median of 5, one core, decode + resize, no encode). Margin: decoded width ÷ box width.",
        "",
        "| source | box | method | margin | ms | SSIM |",
        "|---|---|---|---|---|---|",
    ]
    for source in ("24mp", "12mp", "1080p"):
        data = context.data[source]
        references = References(data)
        width = pyvips.Image.new_from_buffer(data, "").width
        for box in (300, 400, 600, 800, 1200, 1600):
            if width < box * 2:
                continue
            methods: list[tuple[str, str, Callable[[], pyvips.Image]]] = [
                (f"shrink={factor}", f"{width / factor / box:.2f}", partial(_dct_thumbnail, data, factor, box))
                for factor in (1, 2, 4, 8)
                if width / factor >= box
            ]
            methods.append(
                ("thumbnail_buffer", "libvips", partial(pyvips.Image.thumbnail_buffer, data, box, height=box))
            )
            methods.append(
                (
                    "thumbnail_buffer +shrink=8 option",
                    "?",
                    partial(pyvips.Image.thumbnail_buffer, data, box, height=box, option_string="shrink=8"),
                )
            )
            for method, margin, make in methods:
                image = make()
                score = ssim(references.luma(image.width, image.height), luma(image))
                ms = statistics.median(timed(partial(_decode, make), 5)) * 1000
                lines.append(f"| {source} | {box} | {method} | {margin} | {ms:.1f} | {score:.4f} |")
        del references  # a full decode of up to 24 MP: free it before the next source
        gc.collect()
    return [*lines, ""]


def _decode(make: Callable[[], pyvips.Image]) -> float:
    """Compute every pixel (an image is lazy until something reads it)."""
    return float(make().avg())


def _dct_thumbnail(data: bytes, factor: int, box: int) -> pyvips.Image:
    return pyvips.Image.jpegload_buffer(data, shrink=factor, access="sequential").thumbnail_image(box, height=box)


def concurrency(context: Context) -> Section:
    """VIPS_CONCURRENCY 1 or 2 in the sidecar's workers as serve runs them, wrk -c4 (local storage, through nginx)."""
    stacks = {}
    with ExitStack() as stack:
        for threads in (1, 2):
            env = {**local_env(context.media), "VIPS_CONCURRENCY": str(threads)}
            sidecar = stack.enter_context(servers.sidecar(env, context.logs, workers=2, name=f"sidecar-vips{threads}"))
            nginx = stack.enter_context(servers.Nginx.for_sidecar(f"vips{threads}", env, sidecar.url, context.logs))
            stacks[f"VIPS_CONCURRENCY={threads}"] = nginx.url
        return compare(
            context,
            "## VIPS_CONCURRENCY in 2 workers of 4 threads (fit JPEG, wrk -c4)",
            stacks,
            ("24mp", "1080p"),
            connections=4,
            namespace="local",
        )


#: Worker models: (workers, threads, extra environment). Sync needs 1 thread (gunicorn makes a sync worker with more
#: threads a threaded one); the slots are MAX_CONCURRENT_TRANSFORMS, two per CPU (4 here) unless given.
WORKER_MODELS: dict[str, tuple[int, int, dict[str, str]]] = {
    "sync 2": (2, 1, {"GUNICORN_CMD_ARGS": "--worker-class sync"}),
    "sync 4": (4, 1, {"GUNICORN_CMD_ARGS": "--worker-class sync"}),
    "gthread 2x4, 2 slots": (2, 4, {"RESIZE_SIDECAR_MAX_CONCURRENT_TRANSFORMS": "2"}),
    "gthread 2x4, 4 slots (serve's default)": (2, 4, {}),
    "gthread 2x8, 4 slots": (2, 8, {}),
}


def workers(context: Context) -> Section:
    """Sync or threaded workers and transform slots, S3 on moto behind a 0 or 30 ms delay proxy, wrk -c8."""
    stacks = {}
    with ExitStack() as stack:
        moto = stack.enter_context(servers.moto(context.logs))
        for delay in (0, 30):
            proxy = stack.enter_context(servers.delay_proxy(moto.port, delay, context.logs))
            for model, (count, threads, extra) in WORKER_MODELS.items():
                name = f"{model}, {delay} ms"
                label = "sidecar-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
                bucket = label.removeprefix("sidecar-")[:60]
                upload(moto.url, bucket, context.media, context.keys, {"24mp", "1080p"})
                env = {
                    "RESIZE_SIDECAR_SECRETS": SECRET,
                    "RESIZE_SIDECAR_STORAGE": "s3",
                    "RESIZE_SIDECAR_S3_BUCKET": bucket,
                    "RESIZE_SIDECAR_S3_ENDPOINT_URL": proxy.url,
                    **extra,
                }
                sidecar = stack.enter_context(
                    servers.sidecar(env, context.logs, workers=count, threads=threads, name=label)
                )
                nginx = stack.enter_context(servers.Nginx.for_sidecar(label, env, sidecar.url, context.logs))
                stacks[name] = nginx.url
        s3_keys = {source: context.keys[source][:2] for source in ("24mp", "1080p")}
        lines = compare(
            context,
            "## Worker model with S3 latency (moto behind a delay proxy, fit JPEG, wrk -c8)",
            stacks,
            ("1080p", "24mp"),
            connections=8,
            namespace="s3",
            keys=s3_keys,
        )
    return lines


def overhead(context: Context) -> Section:
    """Where the sidecar's miss path loses to the floor under load: nginx in front, and the sidecar's own work."""
    with ExitStack() as stack:
        env = local_env(context.media)
        sidecar = stack.enter_context(servers.sidecar(env, context.logs, workers=2, name="sidecar-overhead"))
        nginx = stack.enter_context(servers.Nginx.for_sidecar("overhead", env, sidecar.url, context.logs))
        floor = stack.enter_context(servers.floor(context.media, context.logs, workers=2))
        stacks = {"sidecar through nginx": nginx.url, "sidecar direct (gunicorn)": sidecar.url}
        title = "## Sidecar overhead: through nginx, direct, and the floor app (fit JPEG, wrk -c4)"
        lines = compare(context, title, stacks, ("1080p", "24mp"), connections=4, namespace="local")
        floor_runs = {
            source: [context.load_floor(floor.url, source, 4) for _ in range(context.rounds)]
            for source in ("1080p", "24mp")
        }
    lines.insert(-1, "")
    for source, runs in floor_runs.items():
        lines.insert(
            -1,
            f"Floor app (no nginx, no signature, no storage), {source}: "
            f"{spread([r.rps for r in runs])} req/s, p50 {spread([r.p50_ms for r in runs], 0)} ms.  ",
        )
    return lines


def hits(context: Context) -> Section:
    """What the hit path's nginx location costs: the product's, with parts removed, and plain static files."""
    env = local_env(context.media)
    with ExitStack() as stack:
        sidecar = stack.enter_context(servers.sidecar(env, context.logs, workers=1, name="sidecar-hits"))
        product = stack.enter_context(servers.Nginx.for_sidecar("hits-product", env, sidecar.url, context.logs))
        path = context.paths("local", "1080p", "fit-jpg", 1)[0]
        if load.python_load(product.url, [path], connections=1).non2xx:
            raise RuntimeError(f"the sidecar did not make {path}")
        storage_key = parse_path(path, media_url="/media/").storage_key("_r/")
        stored = context.media / storage_key
        static_root = servers.world_readable_dir("bench-hits-")
        stack.callback(shutil.rmtree, static_root, ignore_errors=True)
        shutil.copyfile(stored, static_root / "hit.jpg")
        (static_root / "hit.jpg").chmod(0o644)
        config = product.config_text
        stacks: dict[str, tuple[str, str]] = {
            "product location (signature check, try_files, 2 add_header, open_file_cache)": (product.url, path)
        }
        variants = {
            "with a method `if`": (
                config.replace(
                    f'root "{context.media}";',
                    f'if ($request_method !~ ^(GET|HEAD)$) {{ return 405; }}\n root "{context.media}";',
                    1,
                ),
                path,
            ),
            "without add_header": (
                re.sub(r"\n\s*add_header (Cache-Control \"public|X-Content)[^;]*;", "", config),
                path,
            ),
        }
        static = stack.enter_context(servers.Nginx.static("hits-static", static_root, context.logs))
        same_file = stack.enter_context(servers.Nginx.static("hits-same", context.media, context.logs))
        same_path = "/" + urllib.parse.quote(storage_key)
        variants["without open_file_cache"] = (_without_open_file_cache(config), path)
        variants["static nginx (same file, same path), without open_file_cache"] = (
            _without_open_file_cache(same_file.config_text),
            same_path,
        )
        for index, (name, (text, url_path)) in enumerate(variants.items()):
            if text == config:
                raise RuntimeError(f"hits: the variant {name!r} changes nothing in the rendered configuration")
            port = servers.free_port()
            text = re.sub(r"listen 127\.0\.0\.1:\d+;", f"listen 127.0.0.1:{port};", text)
            server = stack.enter_context(servers.Nginx(f"hits-{index}", text, port, context.logs))
            stacks[name] = (server.url, url_path)
        stacks["static nginx (root, short path)"] = (static.url, "/hit.jpg")
        stacks["static nginx (same file, same path)"] = (same_file.url, same_path)
        runs: dict[str, list[LoadResult]] = {}
        for round_index in range(context.rounds):
            names = list(stacks)
            for name in names[round_index % len(names) :] + names[: round_index % len(names)]:
                url, url_path = stacks[name]
                result = load.wrk_load(
                    url,
                    None,
                    connections=32,
                    seconds=context.seconds,
                    threads=2,
                    work=context.work,
                    fixed_path=url_path,
                )
                runs.setdefault(name, []).append(result)
                print(f"  {name:58} {result.rps:8.0f} req/s {' '.join(result.problems())}", flush=True)
                time.sleep(0.5)
    lines = [
        "## Hit path: what the nginx location costs (wrk -c32, one 1080p → 400x225 JPEG)",
        "",
        "| nginx | req/s | p99 ms |",
        "|---|---|---|",
    ]
    for name, results in runs.items():
        lines.append(f"| {name} | {spread([r.rps for r in results], 0)} | {spread([r.p99_ms for r in results], 1)} |")
    return [*lines, ""]


def check(context: Context) -> Section:
    """What nginx's signature check (derivatives.js, on every derivative request) costs a local hit: the rendered
    configuration, with one secret and with two (a rotation), against the same one without the check, which reads
    the file at the URL's path as the stored key, as derivatives were stored before their keys dropped the
    signature."""
    env = local_env(context.media)
    rotating = {**env, "RESIZE_SIDECAR_SECRETS": f"bench-rotated-secret-0123456789,{SECRET}"}
    with ExitStack() as stack:
        sidecar = stack.enter_context(servers.sidecar(env, context.logs, workers=1, name="sidecar-check"))
        product = stack.enter_context(servers.Nginx.for_sidecar("check-product", env, sidecar.url, context.logs))
        two = stack.enter_context(servers.Nginx.for_sidecar("check-two", rotating, sidecar.url, context.logs))
        path = context.paths("local", "1080p", "fit-jpg", 1)[0]
        if load.python_load(product.url, [path], connections=1).non2xx:
            raise RuntimeError(f"the sidecar did not make {path}")
        stored = context.media / parse_path(path).storage_key("_r/")
        signed_root = servers.world_readable_dir("bench-check-")
        stack.callback(shutil.rmtree, signed_root, ignore_errors=True)
        copy = signed_root / path.lstrip("/")
        copy.parent.mkdir(parents=True)
        for folder in [copy.parent, *copy.parent.parents]:
            if folder == signed_root:
                break
            folder.chmod(0o755)  # nginx's workers run as another user
        shutil.copyfile(stored, copy)
        copy.chmod(0o644)
        port = servers.free_port()
        unchecked = _without_signature_check(product.config_text, context.media, signed_root, product.port, port)
        plain = stack.enter_context(servers.Nginx("check-none", unchecked, port, context.logs))
        stacks = {
            "rendered: njs check, one secret": product.url,
            "rendered: njs check, two secrets (a rotation)": two.url,
            "no check: try_files $uri, the path as the stored key": plain.url,
        }
        runs: dict[str, list[LoadResult]] = {}
        for round_index in range(context.rounds):
            names = list(stacks)
            for name in names[round_index % len(names) :] + names[: round_index % len(names)]:
                result = load.wrk_load(
                    stacks[name],
                    None,
                    connections=32,
                    seconds=context.seconds,
                    threads=2,
                    work=context.work,
                    fixed_path=path,
                )
                if result.problems():
                    raise RuntimeError(f"{name}: {' '.join(result.problems())}")
                runs.setdefault(name, []).append(result)
                print(f"  {name:54} {result.rps:8.0f} req/s", flush=True)
                time.sleep(0.5)
    baseline = statistics.median(r.rps for r in runs["no check: try_files $uri, the path as the stored key"])
    lines = [
        "## Signature check on hits: what derivatives.js costs nginx (local storage, wrk -c32, one 1080p → 400x225 "
        "JPEG)",
        "",
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}, {context.rounds} interleaved rounds of "
        f"{context.seconds:g} s; load average (1 min) after them {os.getloadavg()[0]:.2f}. Every answer was 200.",
        "",
        "| nginx location | req/s | ÷ no check | p99 ms |",
        "|---|---|---|---|",
    ]
    for name, results in runs.items():
        rps = [r.rps for r in results]
        lines.append(
            f"| {name} | {spread(rps, 0)} | {statistics.median(rps) / baseline:.2f}× "
            f"| {spread([r.p99_ms for r in results], 1)} |"
        )
    return [*lines, ""]


def _without_signature_check(config: str, media: Path, signed_root: Path, old_port: int, port: int) -> str:
    """The rendered configuration with the derivative location's check taken out: ``try_files $uri`` under a root
    holding the file at its public path. Fails rather than measure a configuration that did not change."""
    start = config.index("location ^~ /media/_r/ {")
    # From the check's first input to the end of its `if` block (derivative-check.conf.template).
    check = re.compile(r"\n\s*set \$resize_derivatives .*?return 404;\s*\}", re.DOTALL)
    location, removed = check.subn("", config[start:], count=1)
    if removed != 1:
        raise RuntimeError("the rendered derivative location has changed: no signature check found")
    for old, new in (
        ('try_files "/$resize_derivative" @resize;', "try_files $uri @resize;"),
        (f'root "{media}";', f'root "{signed_root}";'),
        (f'"from={media}"', f'"from={signed_root}"'),
    ):
        if old not in location:
            raise RuntimeError(f"the rendered derivative location has changed: {old!r} not found")
        location = location.replace(old, new, 1)
    listen = f"listen 127.0.0.1:{old_port};"
    return (config[:start] + location).replace(listen, f"listen 127.0.0.1:{port};")


def _without_open_file_cache(config: str) -> str:
    return re.sub(r"\n\s*open_file_cache[^;]*;", "", config)


#: The rate offered in the nopush experiment's paced runs: the workload's (bench/workload.py, warm, paced).
NOPUSH_RATE = 400.0
#: Its originals: fit into the srcset's boxes, the 12 MP one gives answers over 64 KB.
NOPUSH_SOURCES = ("1080p", "12mp")


def nopush(context: Context) -> Section:
    """nginx's ``tcp_nopush`` (beside ``sendfile on``) on hits already stored: S3 behind the delay proxy with nginx's
    cache of hits (every request a cache HIT), and local storage. The rendered configuration with every
    ``tcp_nopush`` on and every one off, wrk for req/s, then the paced client at the workload's rate for p50 and
    p99, in interleaved rounds. A 1080p and a 12 MP original: answers from a few KB to over 64 KB."""
    local = local_env(context.media)
    keys = {source: context.keys[source][:1] for source in NOPUSH_SOURCES}
    with ExitStack() as stack:
        moto = stack.enter_context(servers.moto(context.logs))
        proxy = stack.enter_context(servers.delay_proxy(moto.port, 20, context.logs))
        upload(moto.url, "nopush", context.media, keys, set(NOPUSH_SOURCES))
        paths = _srcset_paths([key for source in NOPUSH_SOURCES for key in keys[source]])
        cached = {
            "RESIZE_SIDECAR_SECRETS": SECRET,
            "RESIZE_SIDECAR_STORAGE": "s3",
            "RESIZE_SIDECAR_S3_BUCKET": "nopush",
            "RESIZE_SIDECAR_S3_ENDPOINT_URL": proxy.url,
            "RESIZE_SIDECAR_NGINX_CACHE_SIZE": "64m",
            # Longer than the experiment: no hit is revalidated with S3 while it is measured.
            "RESIZE_SIDECAR_NGINX_CACHE_VALID": "1h",
        }
        # Each storage: its env and what every hit answers.
        storages = {"S3, nginx cache": (cached, {"200 HIT"}), "local": (local, {"200 -"})}
        stacks: dict[tuple[str, str], tuple[str, set[str]]] = {}
        for storage, (env, expected) in storages.items():
            slug = "s3" if env is cached else "local"
            sidecar = stack.enter_context(servers.sidecar(env, context.logs, workers=1, name=f"sidecar-nopush-{slug}"))
            for setting in ("on", "off"):
                port = servers.free_port()
                config = _with_nopush(servers.Nginx.render_for_sidecar(env, sidecar.url, port), setting)
                nginx = stack.enter_context(servers.Nginx(f"nopush-{slug}-{setting}", config, port, context.logs))
                for _ in range(3):  # made and stored, read from S3 into nginx's cache, then a cache hit
                    load.python_load(nginx.url, paths, connections=1)
                stacks[storage, setting] = (nginx.url, expected)
        for (storage, setting), (url, expected) in stacks.items():
            if _hit_answers(url, paths) != expected:
                raise RuntimeError(f"{storage}, tcp_nopush {setting}: not every path is a hit")
        sizes = [(context.media / parse_path(path).storage_key("_r/")).stat().st_size for path in paths]
        wrk_runs: dict[tuple[str, str], list[LoadResult]] = {}
        paced_runs: dict[tuple[str, str], list[list[float]]] = {}
        for round_index in range(context.rounds):
            names = list(stacks)
            for name in names[round_index % len(names) :] + names[: round_index % len(names)]:
                url, _ = stacks[name]
                result = load.wrk_load(
                    url, paths, connections=16, seconds=context.seconds, threads=2, work=context.work
                )
                if result.non2xx or result.socket_errors or result.timeouts:
                    raise RuntimeError(f"{name}: {' '.join(result.problems())}")
                wrk_runs.setdefault(name, []).append(result)
                time.sleep(0.5)
                due = paths * int(NOPUSH_RATE * context.seconds / len(paths))
                fetched = load.fetch_all(url, due, 16, rate=NOPUSH_RATE)
                if set(fetched.statuses) != {"200"}:
                    raise RuntimeError(f"{name}: paced answers {fetched.statuses}")
                paced_runs.setdefault(name, []).append(sorted(fetched.latencies))
                time.sleep(0.5)
                print(
                    f"  {' '.join(name):24} {result.rps:8.0f} req/s p99 {_quantile(paced_runs[name][-1], 0.99):6.1f} ms"
                )
        for (storage, setting), (url, expected) in stacks.items():
            if _hit_answers(url, paths) != expected:
                raise RuntimeError(f"{storage}, tcp_nopush {setting}: a hit was not one after the rounds")
    lines = [
        "## tcp_nopush on hits: nginx's cache of S3 hits and local files (16 stored derivatives of a page's sizes)",
        "",
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}, {context.rounds} interleaved rounds; load average "
        f"(1 min) after them {os.getloadavg()[0]:.2f}. A 1080p and a 12 MP original fit into 320, 640, 960 and 1600 px "
        f"boxes, JPEG and WebP ({min(sizes)} to {max(sizes)} bytes, {sum(size > 65536 for size in sizes)} over 64 KB). "
        "The rendered configuration (`sendfile on`) with every `tcp_nopush` on, and every one off (the http block's "
        "and the cached locations'); S3 is moto behind the delay proxy (20 ms per request turn) with "
        "`NGINX_CACHE_SIZE` set, every "
        "path in nginx's cache before and after the rounds (`X-Cache-Status: HIT`). req/s: wrk -c16 for "
        f"{context.seconds:g} s; then the paced client offers {NOPUSH_RATE:g} requests/s from 16 connections for "
        f"{context.seconds:g} s (latency from when each request was due). Every answer was 200.",
        "",
        "| hits | tcp_nopush | req/s (wrk) | p50 ms (paced) | p99 ms (paced) | answers over 30 ms (paced) |",
        "|---|---|---|---|---|---|",
    ]
    for (storage, setting), results in wrk_runs.items():
        latencies = paced_runs[storage, setting]
        lines.append(
            f"| {storage} | {setting} | {spread([r.rps for r in results], 0)} | "
            f"{spread([_quantile(run, 0.5) for run in latencies])} | "
            f"{spread([_quantile(run, 0.99) for run in latencies])} | "
            f"{spread([100 * sum(value > 0.030 for value in run) / len(run) for run in latencies], 1, ' %')} |"
        )
    return [*lines, ""]


def _srcset_paths(keys: list[str]) -> list[str]:
    """Each key fit into the workload's srcset widths (320, 640, 960 px boxes, square) and a 1600 px one (a wide
    screen's), in JPEG and WebP: hits of the sizes a page's images have."""
    return [
        load.sidecar_path(key, load.Operation(f"fit-{fmt}", "fit", fmt, width), width - FIT_HEIGHTS[0], SECRET)
        for key in keys
        for width in (320, 640, 960, 1600)
        for fmt in ("jpg", "webp")
    ]


def _with_nopush(config: str, setting: str) -> str:
    """The rendered configuration with every ``tcp_nopush`` set to ``setting`` (the http block's, and the cached
    locations' own); fails rather than measure one unchanged."""
    changed, count = re.subn(r"\btcp_nopush (on|off);", f"tcp_nopush {setting};", config)
    if not count:
        raise RuntimeError("the rendered configuration has no tcp_nopush directive")
    return changed


def _hit_answers(url: str, paths: list[str]) -> set[str]:
    """Each path's status and ``X-Cache-Status`` (``-`` without one), one request each."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    answers: set[str] = set()
    try:
        for path in paths:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            answers.add(f"{response.status} {response.getheader('X-Cache-Status', '-')}")
    finally:
        connection.close()
    return answers


def _quantile(sorted_seconds: list[float], share: float) -> float:
    """The value ``share`` of the way through ``sorted_seconds``, in ms (as bench/workload.py takes p99)."""
    return sorted_seconds[min(len(sorted_seconds) - 1, int(len(sorted_seconds) * share))] * 1000


def fsync(context: Context) -> Section:
    """What the local store's fsync costs under load: the sidecar as serve runs it, with fsync a no-op, and sync."""
    env = local_env(context.media)
    with ExitStack() as stack:
        current = stack.enter_context(servers.sidecar(env, context.logs, workers=2, name="sidecar-fsync"))
        patched = stack.enter_context(
            servers.patched_sidecar("nofsync_app:app", env, context.logs, workers=2, name="sidecar-nofsync")
        )
        sync = stack.enter_context(
            servers.sidecar(
                {**env, "GUNICORN_CMD_ARGS": "--worker-class sync"},
                context.logs,
                workers=2,
                threads=1,
                name="sidecar-sync-local",
            )
        )
        stacks = {
            "gthread 2x4, as it is": current.url,
            "gthread 2x4, fsync a no-op": patched.url,
            "sync 2, as it is": sync.url,
        }
        title = "## Local writes: fsync and the worker model (sidecar direct, fit JPEG, wrk -c4)"
        return compare(context, title, stacks, ("1080p", "12mp"), connections=4, namespace="local")


def count(context: Context) -> Section:
    """How many workers (4 threads each) on 2 cores (local storage, through nginx, wrk -c8)."""
    stacks = {}
    with ExitStack() as stack:
        for number in (2, 3, 4):
            env = local_env(context.media)
            sidecar = stack.enter_context(servers.sidecar(env, context.logs, workers=number, name=f"sidecar-w{number}"))
            nginx = stack.enter_context(servers.Nginx.for_sidecar(f"w{number}", env, sidecar.url, context.logs))
            stacks[f"{number} workers"] = nginx.url
        return compare(
            context,
            "## Worker count on 2 cores, 4 threads each (fit JPEG, wrk -c8)",
            stacks,
            ("24mp", "1080p"),
            connections=8,
            namespace="local",
        )


def compare(
    context: Context,
    title: str,
    stacks: dict[str, str],
    sources: tuple[str, ...],
    *,
    connections: int,
    namespace: str,
    keys: dict[str, list[str]] | None = None,
) -> Section:
    """Interleaved wrk runs of every stack on every source; req/s and p50 as median [min–max] over rounds.

    ``namespace`` "local": the stacks share one local storage, so they share one sequence of new paths (another
    stack's path would be a hit); otherwise each stack has its own bucket and sequence.
    """

    def space(url: str) -> str:
        return namespace if namespace == "local" else f"{namespace}-{url}"

    for url in stacks.values():
        for source in sources:
            context.warm(url, space(url), source, 2, keys[source] if keys else None)
    runs: dict[tuple[str, str], list[LoadResult]] = {}
    for round_index in range(context.rounds):
        for source in sources:
            names = list(stacks)
            names = names[round_index % len(names) :] + names[: round_index % len(names)]
            for name in names:
                url = stacks[name]
                result = context.load(url, space(url), source, connections, keys[source] if keys else None)
                runs.setdefault((source, name), []).append(result)
                print(
                    f"  {source:6} {name:24} {result.rps:7.1f} req/s p50 {result.p50_ms:5.0f} ms "
                    f"{' '.join(result.problems())}",
                    flush=True,
                )
    lines = [title, "", "| source | configuration | req/s | p50 ms | p99 ms |", "|---|---|---|---|---|"]
    for (source, name), results in runs.items():
        lines.append(
            f"| {source} | {name} | {spread([r.rps for r in results])} | "
            f"{spread([r.p50_ms for r in results], 0)} | {spread([r.p99_ms for r in results], 0)} |"
        )
    return [*lines, ""]


#: Shared photos (real JPEGs, upright as stored) the shrink rule is checked on, besides the benchmark's originals.
PHOTOS = (
    "orientation/Landscape_1.jpg",
    "formats/fox.progressive.jpg",
    "exif/DSCN0010.jpg",
    "exif/POC_phpinfo-metadata.jpg",
    "exif/Landscape_9.jpg",
    "exif/32-lens_data.jpeg",
)
TESTDATA = Path(os.environ.get("TESTDATA_IMAGES", BENCH.parents[1] / "shared" / "testdata" / "images"))
#: Results from an original's longer side ÷ these factors: around every change of DCT scale.
_FACTORS = (1.5, 2, 2.4, 3, 3.75, 3.9, 4.8, 5, 6, 7.5, 7.8, 8, 10, 12, 15, 15.5, 20, 30, 40)
_BUCKETS = ((16, 100), (100, 200), (200, 400), (400, 100_000))


def _margin_rule(small_margin: float, margin: float, small_up_to: int, source_side: int, result_side: int) -> int:
    chosen = small_margin if result_side <= small_up_to else margin
    return next((shrink for shrink in (8, 4, 2) if source_side / shrink >= chosen * result_side), 1)


#: DCT-scale rules: the scale a JPEG's longer side is decoded at for a result's longer side.
RULES: dict[str, Callable[[int, int], int]] = {
    "libvips' thumbnail: margin 2": partial(_margin_rule, 2.0, 2.0, 0),
    "1.2 up to 400 px, 1.875 above": partial(_margin_rule, 1.2, 1.875, 400),
    "the sidecar's: 2.5 under 150 px, 1 from 150": imaging._jpeg_shrink,
}


def rule(context: Context) -> Section:
    """The sidecar's JPEG shrink rule against others: SSIM against a full decode, and in-process render time."""
    lines = [
        "## JPEG shrink rule: SSIM against a full decode, on the benchmark's originals and real photos",
        "",
        "Each rule picks the DCT scale from the original's and the result's longer sides; the JPEG is decoded at that "
        "scale and resized to the exact size a full decode gives (`thumbnail_image`, as `imaging` does), then "
        "compared (luma SSIM, unencoded) with the full decode resized by Lanczos-3. Results at the original's longer "
        f"side ÷ {', '.join(f'{factor:g}' for factor in _FACTORS)}, from 16 px. Originals: the benchmark's 24 MP, "
        f"12 MP and 1080p, and the shared photos {', '.join(f'`{name}`' for name in PHOTOS)}. Each cell: the "
        "lowest SSIM of the results that size, and where.",
        "",
        "| rule | "
        + " | ".join(f"{low}–{high - 1} px" if high < 100_000 else f"{low} px and up" for low, high in _BUCKETS)
        + " |",
        "|---|" + "---|" * len(_BUCKETS),
    ]
    originals = {name: context.data[name] for name in ("24mp", "12mp", "1080p")}
    if TESTDATA.is_dir():
        originals |= {name: (TESTDATA / name).read_bytes() for name in PHOTOS}
    else:
        lines.insert(-2, f"(Shared photos not found at {TESTDATA}: set TESTDATA_IMAGES.)\n")
    worst: dict[tuple[str, int], tuple[float, str]] = {}
    for name, data in originals.items():
        references = References(data)
        width, height = references.full.width, references.full.height
        longer = max(width, height)
        for side in sorted({int(longer / factor) for factor in _FACTORS}):
            if side < 16:
                continue
            box = (side, 10_000_000) if width >= height else (10_000_000, side)
            size = imaging._thumbnail_size((width, height), box, "down")
            reference = references.luma(*size)
            scores: dict[int, float] = {}
            for rule_name, choose in RULES.items():
                shrink = choose(longer, max(size))
                if shrink not in scores:
                    image = pyvips.Image.jpegload_buffer(data, shrink=shrink)
                    scores[shrink] = ssim(reference, luma(image.thumbnail_image(size[0], height=size[1], size="force")))
                bucket = next(index for index, (low, high) in enumerate(_BUCKETS) if low <= max(size) < high)
                case = (scores[shrink], f"{Path(name).name} → {size[0]}x{size[1]} at 1/{shrink}")
                worst[rule_name, bucket] = min(worst.get((rule_name, bucket), case), case)
        del references
        gc.collect()
    for rule_name in RULES:
        cells = [worst.get((rule_name, bucket)) for bucket in range(len(_BUCKETS))]
        lines.append(
            f"| {rule_name} | " + " | ".join(f"{cell[0]:.4f} ({cell[1]})" if cell else "–" for cell in cells) + " |"
        )
    lines += [
        "",
        "In-process, one core, fit 400x300 JPEG q80 from the original's bytes (probe, decode, resize, encode): ms per "
        "render, median [min–max] of 9 interleaved; SSIM of a q100 render against the full-decode reference. "
        "`libvips thumbnail` is the floor app's one `thumbnail_buffer` (libvips' own scale, margin 2).",
        "",
        "| source | sidecar ms | libvips thumbnail ms | Pillow draft ms | sidecar SSIM | libvips thumbnail SSIM |",
        "|---|---|---|---|---|---|",
    ]
    for source in ("24mp", "12mp", "1080p"):
        data = context.data[source]
        variants: dict[str, Callable[..., bytes]] = {
            "sidecar": inprocess.sidecar_render,
            "libvips": inprocess.vips_naive,
        }
        if inprocess.HAVE_PILLOW:
            variants["pillow"] = inprocess.pillow_draft
        seconds: dict[str, list[float]] = {name: [] for name in variants}
        for variant in variants.values():
            variant(data, "jpg")  # codec start-up
        for _ in range(9):
            for name, variant in variants.items():
                started = time.perf_counter()
                variant(data, "jpg")
                seconds[name].append(time.perf_counter() - started)
        references = References(data)
        quality = {name: references.score(variants[name](data, "jpg", 100)) for name in ("sidecar", "libvips")}
        ms = {name: spread([value * 1000 for value in values]) for name, values in seconds.items()}
        lines.append(
            f"| {source} | {ms['sidecar']} | {ms['libvips']} | {ms.get('pillow', '–')} | {quality['sidecar']:.4f} | "
            f"{quality['libvips']:.4f} |"
        )
    return [*lines, ""]


def copies(context: Context) -> Section:
    """Copies of the source bytes on the way to libvips: as the sidecar did it before, and as it does now."""
    storage = LocalStorage(context.media)
    lines = [
        "## Copies of the source bytes (24 MP original, in-process, median [min–max] of 15 interleaved runs, ms)",
        "",
        "Before: `LocalStorage.get` read 1 MB chunks into a BytesIO, and `*_buffer` calls copied the whole "
        "original into libvips (pyvips makes a blob of it). Now: one read of the file's known size, and a `Source` "
        "made with `pyvips.Source.new_from_memory` that libvips reads in place.",
        "",
        "| step | before (copied) | now (in place) |",
        "|---|---|---|",
    ]
    key = context.keys["24mp"][0]
    data = context.data["24mp"]
    pairs: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "read the original (local storage)": (
            partial(_read_in_chunks, context.media / key),
            partial(storage.get, key, 25_000_000),
        ),
        "header (probe)": (
            partial(pyvips.Image.new_from_buffer, data, "", access="sequential"),
            partial(_from_memory, data),
        ),
        "thumbnail 400x300 (decode + resize)": (
            partial(_decode, partial(pyvips.Image.thumbnail_buffer, data, 400, height=300)),
            partial(_decode, partial(_thumbnail_from_memory, data)),
        ),
    }
    for step, (before, now) in pairs.items():
        before(), now()
        times: tuple[list[float], list[float]] = ([], [])
        for _ in range(15):
            for index, function in enumerate((before, now)):
                started = time.perf_counter()
                function()
                times[index].append((time.perf_counter() - started) * 1000)
        lines.append(f"| {step} | {spread(times[0], 2)} | {spread(times[1], 2)} |")
    return [*lines, ""]


def _read_in_chunks(path: Path) -> bytes:
    """How ``LocalStorage.get`` read before: 1 MB chunks into a BytesIO (``read_capped``, which S3 bodies still use)."""
    with open(path, "rb", buffering=0) as file:
        return read_capped(file.read, 25_000_000, str(path))


def _from_memory(data: bytes) -> pyvips.Image:
    return pyvips.Image.new_from_source(pyvips.Source.new_from_memory(data), "", access="sequential")


def _thumbnail_from_memory(data: bytes) -> pyvips.Image:
    return pyvips.Image.thumbnail_source(pyvips.Source.new_from_memory(data), 400, height=300)


#: Encoder options to try against the sidecar's (resize_sidecar.media.imaging); JPEG's extra ones need mozjpeg.
ENCODERS: dict[str, dict[str, dict[str, Any]]] = {
    "jpg": {
        "current (optimize_coding)": {"optimize_coding": True},
        "+ quant_table 3": {"optimize_coding": True, "quant_table": 3},
        "+ trellis_quant": {"optimize_coding": True, "trellis_quant": True},
        "+ progressive, optimize_scans": {"optimize_coding": True, "interlace": True, "optimize_scans": True},
        "+ mozjpeg trellis, deringing, scans, table 3": {
            "optimize_coding": True,
            "trellis_quant": True,
            "overshoot_deringing": True,
            "optimize_scans": True,
            "quant_table": 3,
            "interlace": True,
        },
    },
    "webp": {
        "current (defaults)": {},
        "+ smart_subsample": {"smart_subsample": True},
        "+ effort 6": {"effort": 6},
        "+ smart_deblock": {"smart_deblock": True},
    },
}


def encoders(context: Context) -> Section:
    """Bytes at the SSIM of the current encoder's default quality, for other encoder options (same pixels)."""
    lines = [
        "## Encoder options: bytes at the SSIM of today's default (fit 400x300)",
        "",
        "The sidecar's thumbnail (a lossless render) encoded with each option set; quality searched (binary "
        "search) for the lowest whose SSIM against the full-decode reference reaches that of the current encoder at "
        "the default quality (80). Ratio: bytes ÷ the current encoder's bytes. Encode ms: median of 5.",
        "",
        "| source | format | options | quality | bytes | ratio | SSIM | encode ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for source in ("24mp", "1080p"):
        data = context.data[source]
        # The sidecar's own pixels: a lossless render of the derivative.
        image = pyvips.Image.new_from_buffer(inprocess.sidecar_render(data, "png"), "").copy_memory()
        reference = References(data).luma(image.width, image.height)
        for fmt, variants in ENCODERS.items():
            target, baseline = 0.0, 0
            for name, options in variants.items():
                encode = partial(_encode, image, fmt, options)
                quality = 80 if not target else _lowest_quality(reference, encode, target)
                body = encode(quality)
                score = _score(reference, body)
                target, baseline = target or score, baseline or len(body)
                ms = statistics.median(timed(partial(encode, quality), 5)) * 1000
                lines.append(
                    f"| {source} | {fmt} | {name} | {quality} | {len(body)} | {len(body) / baseline:.3f} | "
                    f"{score:.4f} | {ms:.1f} |"
                )
    return [*lines, ""]


def _encode(image: pyvips.Image, fmt: str, options: dict[str, Any], quality: int) -> bytes:
    save = image.jpegsave_buffer if fmt == "jpg" else image.webpsave_buffer
    return bytes(save(Q=quality, keep=pyvips.ForeignKeep.NONE, **options))


def _score(reference: pyvips.Image, body: bytes) -> float:
    return ssim(reference, luma(pyvips.Image.new_from_buffer(body, "")))


def _lowest_quality(reference: pyvips.Image, encode: Callable[[int], bytes], target: float) -> int:
    """The lowest quality whose SSIM reaches ``target`` (SSIM rises with quality: binary search)."""
    low, high = 1, 100
    while low < high:
        middle = (low + high) // 2
        if _score(reference, encode(middle)) >= target:
            high = middle
        else:
            low = middle + 1
    return low


def cache(context: Context) -> Section:
    """libvips' operation cache: time and memory over 30 distinct renders, in a fresh process each way."""
    script = f"""
import os, time, resource, sys
os.environ["VIPS_CONCURRENCY"] = "1"
import pyvips
if sys.argv[1] == "off":
    pyvips.cache_set_max(0)
data = open({str(context.media / context.keys["12mp"][0])!r}, "rb").read()
started = time.perf_counter()
for height in range(300, 330):
    pyvips.Image.thumbnail_buffer(data, 400, height=height).jpegsave_buffer(Q=80)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{{(time.perf_counter() - started) / 30 * 1000:.1f}} {{peak:.0f}}")
"""
    lines = [
        "## libvips operation cache (30 distinct 12 MP renders in one process)",
        "",
        "| cache | ms per render | peak RSS MB |",
        "|---|---|---|",
    ]
    for setting in ("on (libvips default)", "off (cache_set_max(0))"):
        finished = subprocess.run(
            [sys.executable, "-c", script, setting.split()[0]], capture_output=True, text=True, check=True
        )
        ms, rss = finished.stdout.split()
        lines.append(f"| {setting} | {ms} | {rss} |")
    return [*lines, ""]


def cores(context: Context) -> Section:
    """Renders per second with one process per core rendering back to back: what the engines make of the machine
    with no server, no storage and no load generator, and how much of it they leave idle."""
    renderers = {"sidecar": inprocess.sidecar_render, "libvips thumbnail": inprocess.vips_naive}
    if inprocess.HAVE_PILLOW:
        renderers["thumbor's engine (Pillow)"] = inprocess.pillow_draft
    count = os.cpu_count() or 1
    spawn = multiprocessing.get_context("spawn")  # a fresh libvips per process, with one thread per render
    runs: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with spawn.Pool(count) as pool:
        for _ in range(context.rounds):
            for source, fmt in _CORE_CELLS:
                for name, renderer in renderers.items():
                    before = _cpu_times()
                    jobs = [(renderer, context.data[source], fmt, context.seconds)] * count
                    made = sum(pool.starmap(_render_for, jobs))
                    busy, idle = (after - start for after, start in zip(_cpu_times(), before, strict=True))
                    runs.setdefault((source, fmt, name), []).append((made / context.seconds, idle / (busy + idle)))
    lines = [
        f"## Every core rendering, no server ({count} processes, fit into 400x300, {context.seconds:g} s runs)",
        "",
        "| source | to | renderer | renders/s | ÷ thumbor's engine | CPU idle |",
        "|---|---|---|---|---|---|",
    ]
    for (source, fmt, name), results in runs.items():
        peer = runs.get((source, fmt, "thumbor's engine (Pillow)"))
        ratios = [ours / theirs for (ours, _), (theirs, _) in zip(results, peer, strict=True)] if peer else []
        lines.append(
            f"| {source} | {fmt} | {name} | {spread([rate for rate, _ in results])} | {spread(ratios, 2)} | "
            f"{spread([share * 100 for _, share in results], 0)} % |"
        )
    return [*lines, "", *_decodes(context)]


def _decodes(context: Context) -> Section:
    """A JPEG's decode alone at each DCT scale, libvips (as the sidecar loads) and Pillow (as thumbor's engine)."""
    if not inprocess.HAVE_PILLOW:
        return []
    from PIL import Image

    def pillow(data: bytes, scale: int) -> None:
        image = Image.open(io.BytesIO(data))
        image.draft(None, (image.width // scale, image.height // scale))
        image.load()

    def libvips(data: bytes, scale: int) -> None:
        source = pyvips.Source.new_from_memory(data)
        pyvips.Image.jpegload_source(source, shrink=scale, access="sequential").copy_memory()

    lines = [
        "Decode alone, one process (pixels in memory; median of 15 interleaved calls each, ms):",
        "",
        "| source | scale | libvips | Pillow | libvips ÷ Pillow |",
        "|---|---|---|---|---|",
    ]
    for source in ("1080p", "12mp"):
        data = context.data[source]
        for scale in (1, 4, 8):
            seconds: dict[str, list[float]] = {"libvips": [], "pillow": []}
            for _ in range(15):
                for name, decode in (("libvips", libvips), ("pillow", pillow)):
                    started = time.perf_counter()
                    decode(data, scale)
                    seconds[name].append(time.perf_counter() - started)
            ours, theirs = (statistics.median(seconds[name]) * 1000 for name in ("libvips", "pillow"))
            lines.append(f"| {source} | 1/{scale} | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f} |")
    return [*lines, ""]


#: The miss table's fit cells: sources and output formats.
_CORE_CELLS = (("1080p", "jpg"), ("12mp", "jpg"), ("24mp", "jpg"), ("1080p", "avif"), ("24mp", "avif"))


def _render_for(renderer: Callable[[bytes, str], bytes], data: bytes, fmt: str, seconds: float) -> int:
    """Renders of ``data`` into ``fmt`` made in ``seconds`` (after one to warm up)."""
    renderer(data, fmt)
    made, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        renderer(data, fmt)
        made += 1
    return made


def _cpu_times() -> tuple[int, int]:
    """The machine's busy and idle clock ticks so far (/proc/stat; idle includes waiting for I/O)."""
    with open("/proc/stat") as stat:
        ticks = [int(field) for field in stat.readline().split()[1:]]
    idle = ticks[3] + ticks[4]
    return sum(ticks) - idle, idle


EXPERIMENTS: dict[str, Callable[[Context], Section]] = {
    "shrink": shrink,
    "rule": rule,
    "copies": copies,
    "encoders": encoders,
    "cache": cache,
    "overhead": overhead,
    "hits": hits,
    "check": check,
    "nopush": nopush,
    "fsync": fsync,
    "concurrency": concurrency,
    "count": count,
    "workers": workers,
    "cores": cores,
}

if __name__ == "__main__":
    sys.exit(main())
