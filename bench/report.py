"""The results files: ``{stem}.md`` (tables, goals, method), ``{stem}.json`` (raw numbers), ``{stem}.png`` (chart).

Every ratio is taken round by round (the servers ran interleaved, so a round's numbers share the machine's state),
then summarised as the median and the min–max over the rounds.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common import RESULTS, spread, write_results

if TYPE_CHECKING:
    from run import Results

TARGET_LABELS = {
    "sidecar": "sidecar (nginx, local)",
    "sidecar-direct": "sidecar (gunicorn direct, local)",
    "sidecar-s3": "sidecar (nginx, S3 on moto)",
    "floor": "floor (gunicorn + pyvips)",
    "thumbor": "thumbor (nginx, least_conn)",
    "ipx": "ipx (sharp; nginx, least_conn)",
}
#: The servers the sidecar's miss req/s is divided by, each a column of the miss table.
MISS_PEERS = ("thumbor", "ipx", "floor")


@dataclass
class Goal:
    """One goal of the issue: a measured ratio (or value) against its bound."""

    name: str
    values: list[float]  # one per round (or a single value)
    bound: float
    at_least: bool  # True: measured >= bound passes; False: measured <= bound passes
    unit: str = "×"
    why: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def passed(self) -> bool:
        return self.median >= self.bound if self.at_least else self.median <= self.bound

    @property
    def score(self) -> float:
        """Measured over bound, oriented so that 1 or more passes (for the chart)."""
        if self.at_least:
            return self.median / self.bound
        return self.bound / self.median if self.median else float("inf")

    def verdict(self) -> str:
        if self.passed:
            return "PASS"
        if self.at_least:
            return f"MISS: {self.bound / self.median - 1:.1%} short"
        return f"MISS: {self.median / self.bound - 1:.1%} over"


def ratios(numerators: Sequence[Any], denominators: Sequence[Any]) -> list[float]:
    """Round-by-round ratios of two series of load runs (or of numbers)."""
    pairs = zip(numerators, denominators, strict=False)
    return [_value(a) / _value(b) for a, b in pairs if _value(b)]


def _value(item: Any) -> float:
    return float(item.rps) if hasattr(item, "rps") else float(item)


#: Issue 17's bounds on every miss cell: at least thumbor's req/s (at equal or better SSIM), and 0.95× the floor's.
MISS_OVER_THUMBOR, MISS_OVER_FLOOR = 1.0, 0.95


def goals(results: Results) -> list[Goal]:
    found: list[Goal] = []
    miss = results.miss
    for (source, op, target), runs in miss.items():
        if target != "sidecar":
            continue
        thumbor, floor = miss.get((source, op, "thumbor")), miss.get((source, op, "floor"))
        label = _operation_label(op)
        if thumbor:
            evidence = [
                _render_why(results, source) if op == "fit-jpg" else "",
                _ssim_why(results, source) if op == "fit-jpg" else "",
                _budget_why(results, source, op, thumbor, MISS_OVER_THUMBOR),
                _floor_why(floor, thumbor),
            ]
            found.append(
                Goal(
                    f"miss {label} {source}: sidecar ÷ thumbor",
                    ratios(runs, thumbor),
                    MISS_OVER_THUMBOR,
                    True,
                    why="; ".join(filter(None, evidence)),
                )
            )
        if floor:
            found.append(
                Goal(
                    f"miss {label} {source}: sidecar ÷ floor",
                    ratios(runs, floor),
                    MISS_OVER_FLOOR,
                    True,
                    why=_overhead_why(results, source) if op == "fit-jpg" else "",
                )
            )
    render = results.render
    if ("24mp", "sidecar") in render and ("24mp", "pillow-draft") in render:
        ours, pillow = render["24mp", "sidecar"], render["24mp", "pillow-draft"]
        found.append(
            Goal(
                "in-process 24 MP render: sidecar ÷ Pillow draft (time)",
                ratios(ours.seconds, pillow.seconds),
                1.05,
                False,
                why=f"SSIM of a q100 render against the full-decode reference: "
                f"{ours.ssim:.4f} (Pillow draft {pillow.ssim:.4f})",
            )
        )
        found.append(Goal("in-process 24 MP render: SSIM vs full-decode reference", [ours.ssim], 0.99, True, unit=""))
    hits = results.hits
    if "sidecar nginx" in hits and "static nginx" in hits:
        found.append(
            Goal(
                "hit: sidecar's nginx ÷ static nginx",
                ratios(hits["sidecar nginx"], hits["static nginx"]),
                0.9,
                True,
                why=f"hits the sidecar answered during the hit runs: {results.hit_sidecar_requests:.0f}",
            )
        )
    for source in sorted({source for source, _ in results.latency}):
        slow, fast = results.latency.get((source, 30)), results.latency.get((source, 0))
        if slow and fast:
            found.append(
                Goal(
                    f"S3 latency {source}: 30 ms ÷ 0 ms",
                    ratios(slow, fast),
                    0.85,
                    True,
                    why=_latency_why(results, source),
                )
            )
    limits = {"24mp": 80.0, "50mp": 150.0}
    for (server, source), megabytes in results.memory.items():
        if server == "sidecar" and source in limits:
            found.append(
                Goal(
                    f"peak RSS of a worker, {source} source",
                    [megabytes],
                    limits[source],
                    False,
                    unit=" MB",
                    why=f"of which an idle worker (imports, no image yet) "
                    f"{results.memory_idle.get('sidecar', 0):.0f} MB; floor app "
                    f"{results.memory.get(('floor', source), 0):.0f} MB (idle "
                    f"{results.memory_idle.get('floor', 0):.0f} MB)",
                )
            )
    for (source, fmt), sizes in results.byte_sizes.items():
        why = f"sidecar q{sizes.quality}: SSIM {sizes.sidecar_ssim:.4f} vs {sizes.peer_ssim:.4f}" + (
            "" if sizes.matched else " (not matched within ±0.002)"
        )
        found.append(
            Goal(f"bytes at matched SSIM, {fmt.upper()} {source}: sidecar ÷ peer", [sizes.ratio], 0.9, False, why=why)
        )
    return found


def _operation_label(op: str) -> str:
    """``fit-jpg`` as the goals name it: ``fit JPEG``."""
    mode, fmt = op.split("-")
    return f"{mode} {'WebP' if fmt == 'webp' else fmt.upper()}"


def _ssim_why(results: Results, source: str) -> str:
    """The SSIM of one answer of each, so that a ratio is read at the quality it came with."""
    ours, peer = results.miss_ssim.get((source, "sidecar")), results.miss_ssim.get((source, "thumbor"))
    if ours is None or peer is None:
        return ""
    return f"SSIM of one answer against a full-decode reference: sidecar {ours:.4f}, thumbor {peer:.4f}"


def _floor_why(floor: list[Any] | None, thumbor: list[Any]) -> str:
    """How the floor itself compares with thumbor: what libvips alone gives, before any overhead of ours."""
    if not floor:
        return ""
    return f"the floor app (libvips alone) makes {statistics.median(ratios(floor, thumbor)):.2f}× thumbor's req/s"


def _budget_why(results: Results, source: str, op: str, thumbor: list[Any], factor: float) -> str:
    """The CPU a miss may take for the goal's req/s, against what the decode and the encode alone take."""
    split = results.splits.get((source, op))
    if split is None or not thumbor:
        return ""
    cores = int(results.machine.get("cores", "0")) or len(os.sched_getaffinity(0))
    budget_ms = cores * 1000 / (factor * statistics.median(_value(run) for run in thumbor))
    pillow = f" (Pillow's draft decode {split.pillow_decode_ms:.0f} ms)" if split.pillow_decode_ms else ""
    return (
        f"{factor:g}× thumbor's req/s leaves {budget_ms:.0f} ms of CPU per miss on {cores} cores, nginx and wrk "
        f"included; the decode alone at 1/{split.shrink} takes {split.decode_ms:.0f} ms{pillow} and the encode "
        f"{split.encode_ms:.0f} ms (see *What bounds a miss*)"
    )


def _render_why(results: Results, source: str) -> str:
    ours, pillow = results.render.get((source, "sidecar")), results.render.get((source, "pillow-draft"))
    if not (ours and pillow):
        return ""
    ours_ms, pillow_ms = statistics.median(ours.seconds) * 1000, statistics.median(pillow.seconds) * 1000
    return f"one render in-process: sidecar {ours_ms:.0f} ms, Pillow draft (thumbor's engine) {pillow_ms:.0f} ms"


def _overhead_why(results: Results, source: str) -> str:
    """Where the gap to the floor lies: nginx's hop (the sidecar direct), and the sidecar's own work (in-process)."""
    found = []
    direct, floor = (
        results.miss.get((source, "fit-jpg", "sidecar-direct")),
        results.miss.get((source, "fit-jpg", "floor")),
    )
    if direct and floor:
        ours = results.miss[source, "fit-jpg", "sidecar"]
        found.append(
            f"the same sidecar without nginx makes {statistics.median(ratios(direct, floor)):.2f}× the floor "
            f"(through nginx, {statistics.median(ratios(ours, direct)):.2f}× of direct)"
        )
    profile = results.profiles.get(source)
    if profile is not None:
        phases = profile.phases_ms
        render = phases.get("render (decode, resize, encode)", 0.0)
        found.append(
            f"in-process miss {phases['total']:.0f} ms (render {render:.0f} ms, storage put with its fsync "
            f"{phases.get('storage put', 0.0):.1f} ms) vs floor {profile.floor_ms:.0f} ms; see the profile"
        )
    return "; ".join(found)


def _latency_why(results: Results, source: str) -> str:
    slow, fast = results.latency.get((source, 30), []), results.latency.get((source, 0), [])
    if not (slow and fast):
        return ""
    slow_ms = statistics.median(run.p50_ms for run in slow)
    fast_ms = statistics.median(run.p50_ms for run in fast)
    workers = results.plan.workers
    return f"p50 latency {fast_ms:.0f} → {slow_ms:.0f} ms, {workers} workers as `resize-sidecar serve` runs them"


def write(results: Results, out: Path, stem: str) -> list[Path]:
    found = goals(results)
    have_matplotlib = importlib.util.find_spec("matplotlib") is not None
    if not have_matplotlib:
        results.notes.append("no chart: matplotlib is not installed (pip install -r bench/requirements.txt)")
    markdown_file = write_results(out, stem, markdown(results, found, stem), as_json(results, found))
    paths = [markdown_file, out / f"{stem}.json"]
    if have_matplotlib:
        paths.append(out / f"{stem}.png")
        chart(results, found, paths[-1])
    return paths


README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"


def update_readme(results: Results, readme: Path, stem: str) -> bool:
    """Replace the README's text between the bench markers with this run's goals and chart; False without markers."""
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return False
    found = goals(results)
    folder = os.path.relpath(RESULTS, readme.parent)
    section = [
        README_START,
        f"Measured by `make bench` on {results.started} ({results.machine.get('cpu', '?')}, "
        f"{results.machine.get('cores', '?')} cores; every ratio within one run, median [min–max] over "
        f"{results.plan.repeats} rounds). Details, versions and method: [{folder}/{stem}.md]({folder}/{stem}.md).",
        "",
        "| goal | measured | bound | result |",
        "|---|---|---|---|",
        *[f"| {goal.name} | {_measured(goal)} | {_bound(goal)} | {goal.verdict()} |" for goal in found],
        "",
        f"![benchmark]({folder}/{stem}.png)",
        README_END,
    ]
    before, rest = text.split(README_START, 1)
    after = rest.split(README_END, 1)[1]
    readme.write_text(before + "\n".join(section) + after)
    return True


def _measured(goal: Goal) -> str:
    return spread(goal.values, 4 if goal.unit == "" else 1 if goal.unit == " MB" else 2, goal.unit)


def _bound(goal: Goal) -> str:
    return f"{'≥' if goal.at_least else '≤'} {goal.bound:g}{goal.unit}"


def as_json(results: Results, found: list[Goal]) -> dict[str, Any]:
    def runs(items: dict[Any, list[Any]]) -> dict[str, Any]:
        return {
            " ".join(map(str, key)) if isinstance(key, tuple) else key: [dataclasses.asdict(r) for r in value]
            for key, value in items.items()
        }

    return {
        "started": results.started,
        "plan": dataclasses.asdict(results.plan),
        "versions": results.versions,
        "machine": results.machine,
        "miss": runs(results.miss),
        "hits": runs(results.hits),
        "latency": runs(results.latency),
        "render": {" ".join(key): dataclasses.asdict(value) for key, value in results.render.items()},
        "profiles": {key: dataclasses.asdict(value) for key, value in results.profiles.items()},
        "splits": {" ".join(key): dataclasses.asdict(value) for key, value in results.splits.items()},
        "memory_mb": {" ".join(key): value for key, value in results.memory.items()},
        "miss_ssim": {" ".join(key): value for key, value in results.miss_ssim.items()},
        "bytes": {" ".join(key): dataclasses.asdict(value) for key, value in results.byte_sizes.items()},
        "goals": [{"name": g.name, "values": g.values, "bound": g.bound, "passed": g.passed} for g in found],
    }


def markdown(results: Results, found: list[Goal], stem: str) -> str:
    plan = results.plan
    lines = [
        "# resize-sidecar benchmark",
        "",
        f"{results.started}, `{plan.name}` run ({plan.repeats} interleaved rounds of {plan.seconds:g} s load runs), "
        f"{results.elapsed / 60:.1f} min. Produced by `make bench` (`bench/run.py`); raw numbers in `{stem}.json`.",
        "Numbers are medians over the rounds with [min–max]; every ratio is taken within a round, then summarised.",
        "",
        f"**Machine**: {results.machine.get('cpu', '?')}, {results.machine.get('cores', '?')} cores, "
        f"{results.machine.get('memory', '?')}, {results.machine.get('system', '?')}.  ",
        "**Versions**: " + ", ".join(f"{name} {version}" for name, version in results.versions.items()) + ".",
        "",
    ]
    if results.notes:
        lines += ["**Notes**:", *[f"- {note}" for note in results.notes], ""]
    lines += ["## Goals", "", "| goal | measured | bound | result | why / evidence |", "|---|---|---|---|---|"]
    for goal in found:
        lines.append(f"| {goal.name} | {_measured(goal)} | {_bound(goal)} | {goal.verdict()} | {goal.why} |")
    lines += ["", *miss_section(results), *hits_section(results), *latency_section(results)]
    lines += [*render_section(results), *split_section(results), *profile_section(results)]
    lines += [*memory_section(results), *bytes_section(results)]
    lines += method_section(results)
    return "\n".join(lines) + "\n"


def miss_section(results: Results) -> list[str]:
    names = [name for name in TARGET_LABELS if any(key[2] == name for key in results.miss)]
    lines = [
        "## Miss path (a new derivative per request), req/s",
        "",
        f"{_generator(results)}, {results.plan.connections} connections, {results.plan.seconds:g} s per run; "
        "400x300 box, default qualities (JPEG 80, WebP 80, AVIF 55).",
        "",
        "| source | operation | "
        + " | ".join(TARGET_LABELS[name] for name in names)
        + "".join(f" | sidecar ÷ {peer}" for peer in MISS_PEERS)
        + " |",
        "|---|---|" + "---|" * (len(names) + len(MISS_PEERS)),
    ]
    cells = dict.fromkeys((source, op) for source, op, _ in results.miss)
    for source, op in cells:
        row = [spread([run.rps for run in results.miss.get((source, op, name), [])]) for name in names]
        ours = results.miss.get((source, op, "sidecar"), [])
        versus = [spread(ratios(ours, results.miss.get((source, op, peer), [])), 2) for peer in MISS_PEERS]
        lines.append(f"| {source} | {op} | " + " | ".join(row + versus) + " |")
    latencies = [
        f"{TARGET_LABELS[name]} {source} {op}: p50 {statistics.median(r.p50_ms for r in runs):.0f} ms, "
        f"p99 {statistics.median(r.p99_ms for r in runs):.0f} ms"
        for (source, op, name), runs in results.miss.items()
        if op == "fit-jpg"
    ]
    problems = sorted(
        {
            f"{name} {source} {op}: {p}"
            for (source, op, name), runs in results.miss.items()
            for run in runs
            for p in run.problems()
        }
    )
    lines += ["", "Latency under that load (fit JPEG): " + "; ".join(latencies) + "."]
    if results.miss_ssim:
        scores = [
            f"{TARGET_LABELS[name]} {source} {score:.4f}" for (source, name), score in results.miss_ssim.items()
        ]
        lines += ["", "SSIM of one fit JPEG from each, against a full-decode Lanczos-3 reference: " + "; ".join(scores)]
    if problems:
        lines += ["", "Load problems: " + "; ".join(problems) + "."]
    if results.moto_get_ms:
        gets = ", ".join(f"{source} {ms:.0f} ms" for source, ms in results.moto_get_ms.items())
        lines += [
            "",
            f"One GET of the original from moto's S3 server (boto3, median of 5): {gets}. A miss through S3 also "
            "makes nginx's GET, the sidecar's look for the derivative (under its lock) and the PUT.",
        ]
    return [*lines, ""]


def _generator(results: Results) -> str:
    return "wrk, 2 threads" if results.plan.use_wrk else "a Python client (smoke run: numbers mean nothing)"


def hits_section(results: Results) -> list[str]:
    if not results.hits:
        return []
    lines = [
        "## Hit path, req/s",
        "",
        f"{_generator(results)}, {results.plan.hit_connections} connections, one stored "
        "derivative (1080p → 400x225 JPEG) served by the sidecar's nginx (`try_files` on local storage) while "
        "the sidecar runs, against a static nginx with the same http settings serving the same file (`root` at the "
        "storage folder, so the same path on disk).",
        "",
        "| server | req/s | p99 ms |",
        "|---|---|---|",
    ]
    for name, runs in results.hits.items():
        lines.append(f"| {name} | {spread([r.rps for r in runs], 0)} | {spread([r.p99_ms for r in runs], 2)} |")
    lines += [
        "",
        f"Hits the sidecar answered from storage (nginx fell back to it) during the hit runs: "
        f"{results.hit_sidecar_requests:.0f}.",
        "",
    ]
    return lines


def latency_section(results: Results) -> list[str]:
    if not results.latency:
        return []
    lines = [
        "## S3 latency tolerance, req/s (fit JPEG)",
        "",
        "The sidecar on moto's S3 behind a TCP proxy that adds "
        "the delay once per request turn, for both nginx's and the sidecar's S3 calls; a miss makes five "
        "(nginx's GET, the sidecar's look for the derivative, the original, the PUT, and the look at the original "
        "that confirms it is still the version read). "
        f"{results.plan.latency_connections} connections, {results.plan.workers} workers as `resize-sidecar serve` "
        "runs them.",
        "",
        "| source | 0 ms | 30 ms | 30 ÷ 0 | p50 ms at 0 → 30 |",
        "|---|---|---|---|---|",
    ]
    for source in dict.fromkeys(source for source, _ in results.latency):
        fast, slow = results.latency.get((source, 0), []), results.latency.get((source, 30), [])
        p50 = f"{statistics.median(r.p50_ms for r in fast):.0f} → {statistics.median(r.p50_ms for r in slow):.0f}"
        lines.append(
            f"| {source} | {spread([r.rps for r in fast])} | {spread([r.rps for r in slow])} | "
            f"{spread(ratios(slow, fast), 2)} | {p50} |"
        )
    return [*lines, ""]


def render_section(results: Results) -> list[str]:
    if not results.render:
        return []
    names = list(dict.fromkeys(name for _, name in results.render))
    lines = [
        "## In-process render (one core), ms",
        "",
        "Fit into 400x300. Time: decode, resize and encode at the "
        "default quality. SSIM: of a q100 encode of the same render against a full-decode Lanczos-3 reference, "
        "so it measures the decode and resize path rather than the codec. `vips-naive` is one "
        "`thumbnail_buffer` with libvips' defaults; `pillow-draft` is thumbor's engine (`draft()` to the result's "
        "size, which picks the DCT scale; LANCZOS; JPEG saved with Huffman optimisation), JPEG and WebP output only.",
        "",
        "| source | to | " + " | ".join(f"{n} ms | {n} bytes | {n} SSIM" for n in names) + " |",
        "|---|---|" + "---|---|---|" * len(names),
    ]
    for source, fmt in results.render_formats.items():
        row = []
        for name in names:
            result = results.render.get((source, name))
            row += (
                [spread([s * 1000 for s in result.seconds]), str(result.bytes), f"{result.ssim:.4f}"]
                if result
                else ["–", "–", "–"]
            )
        lines.append(f"| {source} | {fmt} | " + " | ".join(row) + " |")
    return [*lines, ""]


def split_section(results: Results) -> list[str]:
    if not results.splits:
        return []
    lines = [
        "## What bounds a miss: the decode and the encode alone (in-process, one core), ms",
        "",
        "A JPEG is entropy-decoded whole at any DCT scale, so its decode alone is a floor that no resize kernel, "
        "encoder setting or server shortens; the encode is the other part the format fixes. `decode`: "
        "`jpegload` at the scale the sidecar picks, pixels made; `Pillow decode`: `draft()` and `load()`, as "
        "thumbor's engine decodes; `encode`: the 400x300 result from pixels in memory, the sidecar's settings. "
        "Medians of interleaved calls.",
        "",
        "| source | operation | scale | sidecar render | decode | encode | Pillow decode |",
        "|---|---|---|---|---|---|---|",
    ]
    for (source, op), split in results.splits.items():
        pillow = f"{split.pillow_decode_ms:.1f}" if split.pillow_decode_ms else "–"
        lines.append(
            f"| {source} | {op} | 1/{split.shrink} | {split.render_ms:.1f} | {split.decode_ms:.1f} | "
            f"{split.encode_ms:.1f} | {pillow} |"
        )
    return [*lines, ""]


def profile_section(results: Results) -> list[str]:
    lines = []
    for source, profile in results.profiles.items():
        lines += [
            f"## Where a miss spends its time: {source} → 400x300 JPEG (in-process, local storage)",
            "",
            "| phase | ms per miss |",
            "|---|---|",
        ]
        lines += [f"| {phase} | {ms:.1f} |" for phase, ms in profile.phases_ms.items()]
        lines += [
            f"| floor app: read + thumbnail_buffer + encode | {profile.floor_ms:.1f} |",
            "",
            "cProfile of the same misses, by own time:",
            "",
            "```",
            profile.top,
            "```",
            "",
        ]
    return lines


def memory_section(results: Results) -> list[str]:
    if not results.memory:
        return []
    lines = [
        "## Peak RSS of one worker (VmHWM), MB",
        "",
        "A fresh single-worker server per source, after one fit JPEG, one fill WebP and one fit AVIF of that source.",
        "",
        "| server | idle | " + " | ".join(dict.fromkeys(s for _, s in results.memory)) + " |",
    ]
    sources = list(dict.fromkeys(source for _, source in results.memory))
    lines.append("|---|---|" + "---|" * len(sources))
    for server in dict.fromkeys(server for server, _ in results.memory):
        row = [f"{results.memory.get((server, source), 0):.0f}" for source in sources]
        lines.append(f"| {server} | {results.memory_idle.get(server, 0):.0f} | " + " | ".join(row) + " |")
    return [*lines, ""]


def bytes_section(results: Results) -> list[str]:
    if not results.byte_sizes:
        return []
    lines = [
        "## Bytes at matched SSIM (fit 400x300)",
        "",
        f"Peer: {results.byte_peer}. The sidecar's quality is the "
        "lowest whose SSIM against the full-decode reference is within 0.002 below the peer's (binary search).",
        "",
        "| source | format | peer bytes | peer SSIM | sidecar q | sidecar bytes | sidecar SSIM | ratio | "
        "sidecar default q: bytes, SSIM |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (source, fmt), r in results.byte_sizes.items():
        lines.append(
            f"| {source} | {fmt} | {r.peer_bytes} | {r.peer_ssim:.4f} | {r.quality} | {r.sidecar_bytes} | "
            f"{r.sidecar_ssim:.4f} | {r.ratio:.2f} | {r.default_bytes}, {r.default_ssim:.4f} |"
        )
    return [*lines, ""]


def method_section(results: Results) -> list[str]:
    plan = results.plan
    lines = [
        "## Method",
        "",
        "- Originals (generated by `bench/images.py`, deterministic: seeded noise fields, hard edges, grain): "
        + "; ".join(f"{name} {text}" for name, text in results.source_files.items())
        + ".",
        f"- sidecar: `resize-sidecar serve --workers {plan.workers}` (the package's gunicorn settings), behind "
        "the nginx configuration `resize-sidecar nginx` renders; local storage on the same disk, or moto's S3 "
        "server (one process). Each miss request names a derivative never requested before (distinct keys "
        "hard-linked to one original, distinct fit boxes 400x300…400x4095 that give identical pixels, or "
        "distinct fill gravities), and wrk counts the sidecar's `X-Derivative: created` answers. "
        "`gunicorn direct` is the same sidecar asked without its nginx (fit JPEG only), to tell nginx's hop "
        "from the sidecar's own work.",
        f"- floor: `bench/floor_app.py`, gunicorn, {plan.workers} sync workers, `VIPS_CONCURRENCY=1`, one "
        "`thumbnail_buffer` from a local file with the sidecar's encoder settings; no nginx, no signature, "
        "no probe, no storage write.",
        f"- thumbor: {plan.workers} single-process instances behind nginx (`least_conn`, keepalive), URLs "
        "`/unsafe/fit-in/400xH/filters:format(jpeg):quality(80)/KEY` and "
        "`/unsafe/400x300/HALIGN/VALIGN/filters:format(webp):quality(80)/KEY` (AVIF: quality 55).",
        f"- ipx: {plan.workers} Node processes of `bench/ipx/server.mjs` (ipx's `createIPX` over the same folder, "
        "no result cache, `VIPS_CONCURRENCY=1`) behind nginx (`least_conn`, keepalive), URLs "
        "`/s_400xH,fit_inside,q_80,f_jpeg/KEY` and `/s_400x300,fit_cover,pos_GRAVITY,q_80,f_webp/KEY` "
        "(AVIF: `q_55`, at sharp's default effort 4, which ipx does not expose; the sidecar encodes at effort 2).",
        "- wrk runs on the same 2 cores as the servers, on loopback; servers not under load are idle.",
        "- Memory: `/proc/PID/status` VmHWM of the worker process.",
        "",
    ]
    if results.thumbor_config:
        lines += ["thumbor's configuration:", "", "```python", results.thumbor_config.strip(), "```", ""]
    return lines


def chart(results: Results, found: list[Goal], path: Path) -> None:
    """Two panels: miss-path req/s per server, and every goal as measured ÷ bound (right of 1 passes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(15, max(5.0, 0.42 * len(found) + 1.5)))
    cells = list(dict.fromkeys((source, op) for source, op, _ in results.miss))
    names = [name for name in TARGET_LABELS if any(key[2] == name for key in results.miss)]
    width = 0.8 / max(1, len(names))
    for index, name in enumerate(names):
        medians, lows, highs = [], [], []
        for cell in cells:
            values = [run.rps for run in results.miss.get((*cell, name), [])] or [0.0]
            middle = statistics.median(values)
            medians.append(middle)
            lows.append(middle - min(values))
            highs.append(max(values) - middle)
        positions = [cell_index + index * width for cell_index in range(len(cells))]
        left.bar(positions, medians, width, yerr=[lows, highs], capsize=2, label=TARGET_LABELS[name])
    left.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(cells))])
    left.set_xticklabels([f"{source}\n{op}" for source, op in cells], fontsize=8)
    left.set_yscale("log")
    left.set_ylabel("req/s (log)")
    left.set_title("Miss path: new derivatives per second (median, min–max)")
    left.legend(fontsize=8)
    scores = [min(goal.score, 5.0) for goal in found]
    colours = ["tab:green" if goal.passed else "tab:red" for goal in found]
    right.barh(range(len(found)), scores, color=colours)
    right.axvline(1.0, color="black", linewidth=1)
    right.set_yticks(range(len(found)))
    right.set_yticklabels([goal.name for goal in found], fontsize=7)
    right.invert_yaxis()
    right.set_xlabel("measured ÷ bound (≥ 1 meets the goal; capped at 5)")
    right.set_title("Goals")
    figure.suptitle(f"resize-sidecar benchmark, {results.started}, {results.machine.get('cores', '?')} cores")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def versions() -> dict[str, str]:
    import pyvips

    found = {
        "python": platform.python_version(),
        "libvips": f"{pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}",
        "pyvips": pyvips.__version__,
    }
    try:
        import PIL

        found["Pillow (in-process)"] = PIL.__version__
    except ImportError:
        found["Pillow (in-process)"] = "not installed"
    for module in ("gunicorn", "boto3", "moto"):
        try:
            found[module] = __import__(module).__version__
        except (ImportError, AttributeError):
            found[module] = "?"
    for command, name in ((["nginx", "-v"], "nginx"), (["wrk", "--version"], "wrk")):
        try:
            finished = subprocess.run(command, capture_output=True, text=True, timeout=10)
            text = (finished.stderr + finished.stdout).strip().splitlines()[0]
            found[name] = text.split("/", 1)[-1].split(" [")[0] if name == "nginx" else text.split(" ")[1]
        except (OSError, IndexError, subprocess.SubprocessError):
            found[name] = "not installed"
    return found


def machine() -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "?"
    try:
        kilobytes = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kilobytes / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu,
        "cores": str(len(os.sched_getaffinity(0))),
        "memory": memory,
        "system": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
    }
