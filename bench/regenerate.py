#!/usr/bin/env python3
"""regenerate on an unchanged store: every derivative rendered to compare its bytes, against its recorded recipe.

``python bench/regenerate.py`` writes ``bench/results/regenerate.md`` and ``.json``: a local store of ``--originals``
small JPEG originals and five derivatives of each (10,000 by default), made by the miss path, under
``bench/work/regenerate/`` (reused by the next run when the same size). Then, interleaved for ``--rounds`` rounds,
``regenerate`` of the whole store in this process as the command runs it (one libvips thread per render,
``--jobs`` threads): with ``force``, as it decided before recipes were recorded (render each derivative and
compare its bytes with the stored ones), and as it decides now (a HEAD of the derivative and of its original, and
the recipe's fingerprint). Renders are counted by the originals read. Nothing changes between runs, so both write
nothing.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from common import BENCH, RESULTS, arguments, command_line, spread, write_results

from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import format_path
from resize_sidecar.media.derive import ORIGINAL_READS, Deriver
from resize_sidecar.media.local import LocalStorage
from resize_sidecar.ops.cli import render_as_the_workers_do
from resize_sidecar.ops.regenerate import regenerate

SPECS = [("thumb", "jpg"), ("thumb", "webp"), ("card", "jpg"), ("card", "webp"), ("160x", "png")]
SECRET = "bench-regenerate-secret-0123456789abcdef"
#: What the derivatives are of: small, so that setting up 10,000 takes a minute or two on 2 cores.
ORIGINAL_SIZE = (320, 240)


def main() -> None:
    parser = arguments(__doc__, out=RESULTS, rounds=3)
    parser.add_argument("--originals", type=int, default=2000, help="originals, 5 derivatives each (%(default)s)")
    parser.add_argument("--jobs", type=int, default=2, help="regenerate's threads (default: %(default)s)")
    args = parser.parse_args()
    work = BENCH / "work" / "regenerate"
    settings = Settings(
        local_root=str(work / "media"),
        secrets=(SECRET,),
        presets={"thumb": "100x100-fill", "card": "240x"},
        lock_dir=str(work / "locks"),
    ).validate()
    storage = LocalStorage(settings.local_root)
    render_as_the_workers_do()
    derivatives, setup_seconds = prepare(settings, storage, work, args.originals)

    times: dict[str, list[float]] = {"force": [], "recipe": []}
    renders: dict[str, float] = {}
    counts: dict[str, dict[str, int]] = {}
    for _ in range(args.rounds):
        for mode in times:
            reads = ORIGINAL_READS._value.get()
            started = time.perf_counter()
            report = regenerate(settings, storage, jobs=args.jobs, force=mode == "force")
            times[mode].append(time.perf_counter() - started)
            renders[mode] = ORIGINAL_READS._value.get() - reads
            counts[mode] = report.counts()
            assert report.ok and counts[mode] == {"current": derivatives}, counts[mode]

    raw = {
        "derivatives": derivatives,
        "originals": args.originals,
        "original_size": ORIGINAL_SIZE,
        "jobs": args.jobs,
        "setup_seconds": setup_seconds,
        "seconds": times,
        "renders": renders,
        "counts": counts,
    }
    written = write_results(args.out, "regenerate", markdown(raw, command_line("regenerate.py")), raw)
    print(f"wrote {written}")


def prepare(settings: Settings, storage: LocalStorage, work: Path, originals: int) -> tuple[int, float | None]:
    """The store of ``originals`` originals and their derivatives, made by the miss path unless already there;
    how many derivatives, and the seconds it took to make them (``None``: reused)."""
    import pyvips

    wanted = originals * len(SPECS)
    if sum(1 for item in storage.list(settings.derived_prefix, limit=wanted + 1)) == wanted:
        return wanted, None
    shutil.rmtree(work, ignore_errors=True)
    started = time.perf_counter()
    deriver = Deriver(settings, storage)
    for number in range(originals):
        # A different picture each: derivatives that differ, as a real store's do.
        image = pyvips.Image.xyz(*ORIGINAL_SIZE).bandjoin(number % 255).cast("uchar")
        key = f"photos/{number // 100:02}/{number:05}.jpg"
        storage.put(key, bytes(image.jpegsave_buffer(Q=85)), "image/jpeg", "no-cache")
        for spec, fmt in SPECS:
            deriver.derive(format_path(key, spec, fmt, SECRET))
    return wanted, time.perf_counter() - started


def markdown(raw: dict[str, Any], command: str) -> str:
    force, recipe = raw["seconds"]["force"], raw["seconds"]["recipe"]
    derivatives, jobs = raw["derivatives"], raw["jobs"]
    per_force = sorted(force)[len(force) // 2] / derivatives * 1000
    per_recipe = sorted(recipe)[len(recipe) // 2] / derivatives * 1000
    width, height = raw["original_size"]
    setup = "reused from an earlier run" if raw["setup_seconds"] is None else f"{raw['setup_seconds']:.0f} s"
    return f"""# regenerate on an unchanged store

`{command}`: {derivatives:,} derivatives ({raw["originals"]:,} JPEG originals of {width}x{height}, each as
100x100-fill and 240x in JPEG and WebP and 160x in PNG), local storage, `--jobs {jobs}`, one libvips thread per
render, on 2 shared cores; {len(force)} interleaved rounds, median [min–max]. The store was made by the miss path
({setup}). Both ways find every derivative current and write nothing.

| regenerate | seconds | wall time per derivative | renders |
|---|---|---|---|
| {_FORCE} | {spread(force)} | {per_force:.2f} ms | {raw["renders"]["force"]:,.0f} |
| from the recorded recipe (now) | {spread(recipe)} | {per_recipe:.2f} ms | {raw["renders"]["recipe"]:,.0f} |

A render costs what its original costs to decode, and these originals are 0.08 MP: one render of a 24 MP JPEG
takes about 96 ms (`bench/results/latest.md`), so on a store of camera photos the first row grows to 10 million
derivatives in about {10_000_000 * 0.096 / 86_400:.0f} days of one core, while the second does not grow at all:
it reads no original, and 10 million unchanged derivatives take about {per_recipe * 10_000 / 3600:.1f} hours at
this rate, before `--shard K/N` splits them across machines. On S3 it costs a HEAD of each derivative and of its
original (remembered for the original's next derivatives) instead of the stat and small read of local storage.
"""


_FORCE = "rendering each to compare its bytes (before; `--force` now)"


if __name__ == "__main__":
    main()
