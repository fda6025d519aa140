#!/usr/bin/env python3
"""Tuning experiments behind the sidecar's settings: each option measured, not guessed.

``python bench/experiments.py [--only NAME ...] [--seconds S] [--rounds N]`` writes ``bench/results/experiments.md``.
Experiments: ``shrink`` (JPEG shrink-on-load scale against SSIM and time), ``proposal`` (the measured shrink rule
of ``proposals.py``, in-process and under load), ``copies`` (source bytes copied on the way to libvips), ``encoders``
(bytes at equal SSIM with other encoder options), ``cache`` (libvips' operation cache on or off), ``overhead``
(nginx in front and the sidecar's own work, against the floor), ``hits`` (what the hit path's nginx location costs),
``fsync`` (what durable local writes cost sync workers), ``concurrency`` (VIPS_CONCURRENCY 1 or 2 under load),
``count`` (how many sync workers on 2 cores), ``workers`` (sync or gthread workers, with and without 30 ms of S3
latency). They reuse the generated images of ``run.py``.
"""

from __future__ import annotations

import os

os.environ.setdefault("VIPS_CONCURRENCY", "1")
for _name, _value in (
    ("AWS_ACCESS_KEY_ID", "bench"),
    ("AWS_SECRET_ACCESS_KEY", "bench"),
    ("AWS_DEFAULT_REGION", "us-east-1"),
):
    os.environ.setdefault(_name, _value)

import argparse  # noqa: E402
import datetime  # noqa: E402
import gc  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from contextlib import ExitStack  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import images  # noqa: E402
import inprocess  # noqa: E402
import load  # noqa: E402
import proposals  # noqa: E402
import pyvips  # noqa: E402
import report  # noqa: E402
import servers  # noqa: E402
from load import OPERATIONS, LoadResult, UrlPool  # noqa: E402
from quality import References, luma, ssim  # noqa: E402
from run import SECRET, stop_on_signal, upload  # noqa: E402

BENCH = Path(__file__).resolve().parent
Section = list[str]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=list(EXPERIMENTS), help="experiments to run (default: all)")
    parser.add_argument("--seconds", type=float, default=4, help="per load run (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of load runs (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "experiments.md")
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
        media = servers.world_readable_dir(None, "bench-media-")
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
    """VIPS_CONCURRENCY 1 or 2 in the sidecar's two sync workers, under wrk -c4 (local storage, through nginx)."""
    stacks = {}
    with ExitStack() as stack:
        for threads in (1, 2):
            env = {
                "RESIZE_SIDECAR_SECRETS": SECRET,
                "RESIZE_SIDECAR_STORAGE": "local",
                "RESIZE_SIDECAR_LOCAL_ROOT": str(context.media),
                "VIPS_CONCURRENCY": str(threads),
            }
            sidecar = stack.enter_context(servers.sidecar(env, context.logs, workers=2, name=f"sidecar-vips{threads}"))
            nginx = stack.enter_context(servers.Nginx.for_sidecar(f"vips{threads}", env, sidecar.url, context.logs))
            stacks[f"VIPS_CONCURRENCY={threads}"] = nginx.url
        return compare(
            context,
            "## VIPS_CONCURRENCY in 2 sync workers (fit JPEG, wrk -c4)",
            stacks,
            ("24mp", "1080p"),
            connections=4,
            namespace="local",
        )


def workers(context: Context) -> Section:
    """sync or gthread workers, S3 on moto behind a 0 or 30 ms delay proxy, wrk -c8."""
    stacks = {}
    with ExitStack() as stack:
        moto = stack.enter_context(servers.moto(context.logs))
        models = {
            "sync 2": "",
            "gthread 2x4": "--worker-class gthread --threads 4",
            "gthread 2x8": "--worker-class gthread --threads 8",
        }
        for delay in (0, 30):
            proxy = stack.enter_context(servers.delay_proxy(moto.port, delay, context.logs))
            for model, arguments in models.items():
                name = f"{model}, {delay} ms"
                bucket = f"bench-{model.replace(' ', '-')}-{delay}"
                upload(moto.url, bucket, context.media, context.keys, {"24mp", "1080p"})
                env = {
                    "RESIZE_SIDECAR_SECRETS": SECRET,
                    "RESIZE_SIDECAR_STORAGE": "s3",
                    "RESIZE_SIDECAR_S3_BUCKET": bucket,
                    "RESIZE_SIDECAR_S3_ENDPOINT_URL": proxy.url,
                    "GUNICORN_CMD_ARGS": arguments,
                }
                label = f"sidecar-{model.replace(' ', '-')}-{delay}"
                sidecar = stack.enter_context(servers.sidecar(env, context.logs, workers=2, name=label))
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
        env = {
            "RESIZE_SIDECAR_SECRETS": SECRET,
            "RESIZE_SIDECAR_STORAGE": "local",
            "RESIZE_SIDECAR_LOCAL_ROOT": str(context.media),
        }
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
            f"{report.spread([r.rps for r in runs])} req/s, p50 {report.spread([r.p50_ms for r in runs], 0)} ms.  ",
        )
    return lines


def hits(context: Context) -> Section:
    """What the hit path's nginx location costs: the product's, with parts removed, and plain static files."""
    env = {
        "RESIZE_SIDECAR_SECRETS": SECRET,
        "RESIZE_SIDECAR_STORAGE": "local",
        "RESIZE_SIDECAR_LOCAL_ROOT": str(context.media),
    }
    with ExitStack() as stack:
        sidecar = stack.enter_context(servers.sidecar(env, context.logs, workers=1, name="sidecar-hits"))
        product = stack.enter_context(servers.Nginx.for_sidecar("hits-product", env, sidecar.url, context.logs))
        path = context.paths("local", "1080p", "fit-jpg", 1)[0]
        if load.python_load(product.url, [path], connections=1).non2xx:
            raise RuntimeError(f"the sidecar did not make {path}")
        stored = context.media / path.removeprefix("/media/")
        static_root = servers.world_readable_dir(None, "bench-hits-")
        stack.callback(shutil.rmtree, static_root, ignore_errors=True)
        shutil.copyfile(stored, static_root / "hit.jpg")
        (static_root / "hit.jpg").chmod(0o644)
        config = product.config_text
        stacks: dict[str, tuple[str, str]] = {
            "product location (if, alias, try_files, 2 add_header)": (product.url, path)
        }
        variants = {
            "without the method `if`": (re.sub(r"\n\s*if \(\$request_method[^}]*\}", "", config, count=1), path),
            "without add_header": (
                re.sub(r"\n\s*add_header (Cache-Control \"public|X-Content)[^;]*;", "", config),
                path,
            ),
            "root instead of alias + try_files": (
                config.replace("try_files $uri @resize;", "").replace(
                    f'alias "{context.media}/_r/";', f'root "{context.media}"; rewrite ^/media/(.*)$ /$1 break;'
                ),
                path,
            ),
        }
        for index, (name, (text, url_path)) in enumerate(variants.items()):
            port = servers.free_port()
            text = re.sub(r"listen 127\.0\.0\.1:\d+;", f"listen 127.0.0.1:{port};", text)
            server = stack.enter_context(servers.Nginx(f"hits-{index}", text, port, context.logs))
            stacks[name] = (server.url, url_path)
        static = stack.enter_context(servers.Nginx.static("hits-static", static_root, context.logs))
        stacks["static nginx (root, short path)"] = (static.url, "/hit.jpg")
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
        lines.append(
            f"| {name} | {report.spread([r.rps for r in results], 0)} | "
            f"{report.spread([r.p99_ms for r in results], 1)} |"
        )
    return [*lines, ""]


def fsync(context: Context) -> Section:
    """What the local store's fsync costs sync workers under load: the sidecar as it is, and with fsync a no-op."""
    env = {
        "RESIZE_SIDECAR_SECRETS": SECRET,
        "RESIZE_SIDECAR_STORAGE": "local",
        "RESIZE_SIDECAR_LOCAL_ROOT": str(context.media),
    }
    with ExitStack() as stack:
        current = stack.enter_context(servers.sidecar(env, context.logs, workers=2, name="sidecar-fsync"))
        patched = stack.enter_context(
            servers.patched_sidecar("nofsync_app:app", env, context.logs, workers=2, name="sidecar-nofsync")
        )
        gthread = stack.enter_context(
            servers.sidecar(
                {**env, "GUNICORN_CMD_ARGS": "--worker-class gthread --threads 2"},
                context.logs,
                workers=2,
                name="sidecar-gthread-local",
            )
        )
        stacks = {
            "sync 2, as it is": current.url,
            "sync 2, fsync a no-op": patched.url,
            "gthread 2x2, as it is": gthread.url,
        }
        title = "## Local writes: fsync and the worker model (sidecar direct, fit JPEG, wrk -c4)"
        return compare(context, title, stacks, ("1080p", "12mp"), connections=4, namespace="local")


def count(context: Context) -> Section:
    """How many sync workers on 2 cores (local storage, through nginx, wrk -c8)."""
    stacks = {}
    with ExitStack() as stack:
        for number in (2, 3, 4):
            env = {
                "RESIZE_SIDECAR_SECRETS": SECRET,
                "RESIZE_SIDECAR_STORAGE": "local",
                "RESIZE_SIDECAR_LOCAL_ROOT": str(context.media),
            }
            sidecar = stack.enter_context(servers.sidecar(env, context.logs, workers=number, name=f"sidecar-w{number}"))
            nginx = stack.enter_context(servers.Nginx.for_sidecar(f"w{number}", env, sidecar.url, context.logs))
            stacks[f"{number} sync workers"] = nginx.url
        return compare(
            context,
            "## Sync worker count on 2 cores (fit JPEG, wrk -c8)",
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
            f"| {source} | {name} | {report.spread([r.rps for r in results])} | "
            f"{report.spread([r.p50_ms for r in results], 0)} | {report.spread([r.p99_ms for r in results], 0)} |"
        )
    return [*lines, ""]


def proposal(context: Context) -> Section:
    """The JPEG shrink-on-load proposal (proposals.py): in-process, then under load against the current code."""
    lines = [
        "## Proposal: JPEG decoded at the smallest DCT scale that keeps the measured margin (`bench/proposals.py`)",
        "",
        "In-process, one core, fit 400x300 JPEG q80: ms per render (median [min–max] of 7, interleaved), "
        "SSIM of a q100 render against the full-decode reference.",
        "",
        "| source | current ms | proposal ms | Pillow draft ms | current SSIM | proposal SSIM | bytes now → proposal |",
        "|---|---|---|---|---|---|---|",
    ]
    for source in ("24mp", "12mp", "1080p"):
        data = context.data[source]
        variants: dict[str, Callable[[], object]] = {
            "current": partial(_render_with, False, data),
            "proposal": partial(_render_with, True, data),
        }
        if inprocess.HAVE_PILLOW:
            variants["pillow"] = partial(inprocess.pillow_draft, data, "jpg")
        seconds: dict[str, list[float]] = {name: [] for name in variants}
        for variant in variants.values():
            variant()  # codec start-up
        for _ in range(7):
            for name, variant in variants.items():
                started = time.perf_counter()
                variant()
                seconds[name].append(time.perf_counter() - started)
        references = References(data)
        quality = {
            name: references.score(_render_with(name == "proposal", data, 100)) for name in ("current", "proposal")
        }
        sizes = {name: len(_render_with(name == "proposal", data)) for name in ("current", "proposal")}
        ms = {name: report.spread([value * 1000 for value in values]) for name, values in seconds.items()}
        lines.append(
            f"| {source} | {ms['current']} | {ms['proposal']} | {ms.get('pillow', '–')} | {quality['current']:.4f} | "
            f"{quality['proposal']:.4f} | {sizes['current']} → {sizes['proposal']} |"
        )
    stacks = {}
    with ExitStack() as stack:
        env = {
            "RESIZE_SIDECAR_SECRETS": SECRET,
            "RESIZE_SIDECAR_STORAGE": "local",
            "RESIZE_SIDECAR_LOCAL_ROOT": str(context.media),
        }
        current = stack.enter_context(servers.sidecar(env, context.logs, workers=2, name="sidecar-current"))
        patched = stack.enter_context(
            servers.patched_sidecar("proposal_app:app", env, context.logs, workers=2, name="sidecar-proposal")
        )
        for name, server in (("current", current), ("proposal", patched)):
            stacks[name] = stack.enter_context(servers.Nginx.for_sidecar(name, env, server.url, context.logs)).url
        title = "Under load: the sidecar through nginx, local storage, fit JPEG, wrk -c4"
        lines += ["", *compare(context, title, stacks, ("24mp", "12mp", "1080p"), connections=4, namespace="local")]
    return lines


def _render_with(proposal: bool, data: bytes, quality: int | None = None) -> bytes:
    (proposals.apply if proposal else proposals.revert)()
    try:
        return inprocess.sidecar_render(data, "jpg", quality)
    finally:
        proposals.revert()


def copies(context: Context) -> Section:
    """Copies of the source bytes: how the sidecar reads and hands an original to libvips, against no copy."""
    from resize_sidecar.storage import LocalStorage

    storage = LocalStorage(context.media)
    lines = [
        "## Copies of the source bytes (24 MP original, in-process, median [min–max] of 15 interleaved runs, ms)",
        "",
        "`*_buffer` calls copy the whole original into libvips (pyvips makes a blob of it); a `Source` made with "
        "`pyvips.Source.new_from_memory` reads the Python bytes in place. `LocalStorage.get` reads 1 MB chunks into "
        "a BytesIO; `read()` is one allocation of the known size.",
        "",
        "| step | as the sidecar does it | without the copy |",
        "|---|---|---|",
    ]
    key = context.keys["24mp"][0]
    data = context.data["24mp"]
    pairs: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "read the original (local storage)": (
            partial(storage.get, key, 25_000_000),
            partial((context.media / key).read_bytes),
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
    for step, (current, candidate) in pairs.items():
        current(), candidate()
        times: tuple[list[float], list[float]] = ([], [])
        for _ in range(15):
            for index, function in enumerate((current, candidate)):
                started = time.perf_counter()
                function()
                times[index].append((time.perf_counter() - started) * 1000)
        lines.append(f"| {step} | {report.spread(times[0], 2)} | {report.spread(times[1], 2)} |")
    return [*lines, ""]


def _from_memory(data: bytes) -> pyvips.Image:
    return pyvips.Image.new_from_source(pyvips.Source.new_from_memory(data), "", access="sequential")


def _thumbnail_from_memory(data: bytes) -> pyvips.Image:
    return pyvips.Image.thumbnail_source(pyvips.Source.new_from_memory(data), 400, height=300)


#: Encoder options to try against the sidecar's (resize_sidecar.imaging); JPEG's extra ones need mozjpeg.
ENCODERS: dict[str, dict[str, dict[str, Any]]] = {
    "jpg": {
        "current (optimize_coding)": {"optimize_coding": True},
        "+ progressive": {"optimize_coding": True, "interlace": True},
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
        "+ smart_subsample, effort 6": {"smart_subsample": True, "effort": 6},
    },
}


def encoders(context: Context) -> Section:
    """Bytes at the SSIM of the current encoder's default quality, for other encoder options (same pixels)."""
    lines = [
        "## Encoder options: bytes at the SSIM of today's default (fit 400x300)",
        "",
        "The same thumbnail encoded with each option set; quality searched (binary search) for the lowest whose SSIM "
        "against the full-decode reference reaches that of the current encoder at the default quality (80). "
        "Ratio: bytes ÷ the current encoder's bytes. Encode ms: median of 5.",
        "",
        "| source | format | options | quality | bytes | ratio | SSIM | encode ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for source in ("24mp", "1080p"):
        data = context.data[source]
        image = pyvips.Image.thumbnail_buffer(data, 400, height=300).copy_memory()
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


EXPERIMENTS: dict[str, Callable[[Context], Section]] = {
    "shrink": shrink,
    "proposal": proposal,
    "copies": copies,
    "encoders": encoders,
    "cache": cache,
    "overhead": overhead,
    "hits": hits,
    "fsync": fsync,
    "concurrency": concurrency,
    "count": count,
    "workers": workers,
}

if __name__ == "__main__":
    sys.exit(main())
