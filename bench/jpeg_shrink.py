#!/usr/bin/env python3
"""JPEG shrink-on-load from measurement: each DCT scale's SSIM and time against Pillow's draft, on a corpus of photos.

``python bench/jpeg_shrink.py`` writes ``bench/results/jpeg_shrink.md`` and ``.json`` (5 to 12 minutes on 2 cores
that other work kept busy, load averages of 6 to 8). ``--smoke``: the demo's photos into two boxes, one call each,
a few seconds (give ``--out`` a temporary folder). ``--report FILE``: the results again from a run's JSON.

Each photo is fitted into each box twice. As the sidecar fits a JPEG: ``jpegload`` at a DCT scale (shrink 1, 2, 4
or 8), then ``thumbnail_image`` forced to the size a full decode gives. As thumbor's PIL engine does: ``draft()`` to
the result's size (libjpeg's largest scale that leaves both sides at least the result's), then ``resize`` with
LANCZOS. Both are scored with luma SSIM against the full decode reduced in one Lanczos-3 step (``quality.py``) and
timed in-process on one libvips thread, from the file's bytes to the result's pixels (no encode): the median of
``--repeats`` calls, interleaved. A scale that would decode a side smaller than the result's is not measured.
Pixels are compared as stored: no EXIF orientation, no ICC transform, on either side.
"""

from __future__ import annotations

import os

# Before pyvips loads: one libvips thread, as in the sidecar's workers and as Pillow decodes.
os.environ.setdefault("VIPS_CONCURRENCY", "1")

import datetime  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterable, Sequence  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import images  # noqa: E402
import PIL  # noqa: E402
import pyvips  # noqa: E402
from common import BENCH, REPO, RESULTS, Spread, arguments, command_line, spread, write_results  # noqa: E402
from PIL import Image  # noqa: E402
from quality import References, luma, ssim  # noqa: E402

from resize_sidecar.media import imaging  # noqa: E402

TESTDATA = Path(os.environ.get("TESTDATA_IMAGES", BENCH.parents[1] / "shared" / "testdata" / "images"))
DEMO = REPO / "deploy" / "demo-media"
#: Real photos copied by hand into bench/work/photos/ (not committed) from a checkout of their repository: what
#: each is, where it comes from, and its licence.
FETCHED = {
    "2569067123_aca715a2ee_o.jpg": "a circular saw cutting wood, a camera's 6 MP; lovell/sharp@ea5bef24 "
    "test/fixtures/ (Apache-2.0 repository), from flickr.com/photos/grizdave/2569067123 as sharp's fixtures list "
    "it (no per-file licence stated there)",
}
#: The real photographs among the shared test images (MANIFEST.tsv says what each file is).
SHARED = {
    "orientation/Landscape_1.jpg": "a landscape, from Unsplash (MIT, recurser/exif-orientation-examples)",
    "formats/ultra-hdr.jpg": "a rocket launch on a screen, UltraHDR's primary image (libvips test suite, LGPL)",
    "formats/fox.progressive.jpg": "a fox, progressive (link-u/avif-sample-images, CC-BY-SA-4.0)",
    "exif/DSCN0010.jpg": "a Nikon camera's photo, reduced (ianare/exif-samples)",
    "exif/Landscape_9.jpg": "a landscape, from Unsplash (lovell/sharp, Apache-2.0)",
    "exif/32-lens_data.jpeg": "a pick-up truck, progressive (ianare/exif-samples)",
}
#: Shared JPEGs left out, and why (the malformed and the bombs are not photos either).
LEFT_OUT = (
    "`orientation/Landscape_{0,2..8}.jpg`: Landscape_1's photo, turned or mirrored",
    "`exif/POC_phpinfo-metadata.jpg`: a drawing, not a photo",
    "`formats/test-grey-rgb-profile.jpg`: every pixel black",
    "`exif/Canon_40D.jpg` (100x68), `formats/countergirl-adobergb.jpg` (45x100), `exif/exif_gps.jpg` (8x8): "
    "no box reduces them",
    "`formats/Channel_digital_image_CMYK_color.jpg`, `formats/pil_sample_cmyk.jpg`, `formats/sample-xyb.jpg`: CMYK "
    "or XYB pixels, where each library's colour conversion, not the DCT scale, would set the score",
)
DEMO_PHOTOS = {
    name: f"the demo's {what} (scikit-image data, deploy/demo-media/NOTICE.md)"
    for name, what in (
        ("astronaut.jpg", "astronaut, 512x512"),
        ("chelsea.jpg", "cat"),
        ("coffee.jpg", "coffee cup"),
        ("rocket.jpg", "rocket launch"),
    )
}
#: The benchmark's generated originals (bench/images.py): photo-like, not photos.
GENERATED = ("1080p", "12mp", "24mp", "50mp")
#: Fit boxes: the common ones, and squares between them, so that results of many sizes meet every scale's edges.
BOXES = (
    *((side, side) for side in (64, 100, 128, 150, 200, 256, 320)),
    (400, 300),
    (640, 640),
    (800, 600),
    (1200, 1200),
)
SMOKE_BOXES = ((100, 100), (200, 200))
SCALES = (1, 2, 4, 8)
#: Margins of the decoded longer side over the result's that a rule of the sidecar's form may keep.
MARGINS = (1.0, 1.125, 1.25, 1.5, 1.75, 1.875, 2.0, 2.5, 3.0, 4.0)


@dataclass(frozen=True)
class Photo:
    name: str
    what: str
    data: bytes


@dataclass
class Cell:
    """One photo fitted into one box: SSIM and ms per libvips scale, and Pillow's draft scale, SSIM and ms."""

    photo: str
    source: tuple[int, int]
    box: tuple[int, int]
    result: tuple[int, int]
    ssim: dict[int, float] = field(default_factory=dict)
    ms: dict[int, list[float]] = field(default_factory=dict)
    pillow_scale: int = 0
    pillow_ssim: float = 0.0
    pillow_ms: list[float] = field(default_factory=list)

    def median(self, scale: int) -> float:
        return Spread.of(self.ms[scale]).median

    def pillow_median(self) -> float:
        return Spread.of(self.pillow_ms).median

    def scale_divides(self, scale: int) -> bool:
        return not (self.source[0] % scale or self.source[1] % scale)

    def rule_scale(self, rule: Callable[[int, int], int]) -> int:
        return rule(max(self.source), max(self.result))


def margin_rule(margin: float) -> Callable[[int, int], int]:
    """The sidecar's form: the smallest DCT scale that leaves the decoded longer side ``margin`` times the result's."""

    def choose(source_side: int, result_side: int) -> int:
        return next((shrink for shrink in (8, 4, 2) if source_side / shrink >= margin * result_side), 1)

    return choose


def vips_fit(data: bytes, scale: int, width: int, height: int) -> pyvips.Image:
    source = pyvips.Source.new_from_memory(data)
    image = pyvips.Image.jpegload_source(source, shrink=scale, access="sequential")
    return image.thumbnail_image(width, height=height, size="force", no_rotate=True).copy_memory()


def pillow_fit(data: bytes, width: int, height: int) -> Any:
    image = Image.open(io.BytesIO(data))
    image.draft(None, (width, height))
    return image.resize((width, height), Image.Resampling.LANCZOS)


def pillow_scale(data: bytes, width: int, height: int) -> int:
    image = Image.open(io.BytesIO(data))
    stored = image.size
    image.draft(None, (width, height))
    return round(stored[0] / image.size[0])


def from_pillow(image: Any) -> pyvips.Image:
    bands = len(image.getbands())
    pixels = pyvips.Image.new_from_memory(image.tobytes(), image.width, image.height, bands, "uchar")
    return pixels.copy(interpretation="srgb" if bands >= 3 else "b-w")


def corpus(smoke: bool, work: Path) -> tuple[list[Photo], list[str]]:
    """The photos measured, and what was looked for and not found."""
    photos = [Photo(name, what, (DEMO / name).read_bytes()) for name, what in DEMO_PHOTOS.items()]
    missing: list[str] = []
    if smoke:
        return photos, missing
    for name, what in SHARED.items():
        if (TESTDATA / name).is_file():
            photos.append(Photo(name, what, (TESTDATA / name).read_bytes()))
        else:
            missing.append(f"`{name}` (shared test images not at {TESTDATA}: set TESTDATA_IMAGES)")
    for name, what in FETCHED.items():
        path = BENCH / "work" / "photos" / name
        if path.is_file():
            photos.append(Photo(name, what, path.read_bytes()))
        else:
            missing.append(f"`{name}` ({what}; not in bench/work/photos/)")
    for name in GENERATED:
        source = images.SOURCES[name]
        path = images.ensure(source, work / "images-1")
        what = f"the benchmark's generated {source.width}x{source.height} (bench/images.py)"
        photos.append(Photo(name, what, path.read_bytes()))
    return photos, missing


def measure(photo: Photo, boxes: Iterable[tuple[int, int]], repeats: int) -> list[Cell]:
    references = References(photo.data)
    width, height = references.full.width, references.full.height
    cells = []
    for box in boxes:
        if width <= box[0] and height <= box[1]:
            continue  # fitting it into this box leaves it as it is: no decode scale to choose
        result = imaging._thumbnail_size((width, height), box, "down")
        cell = Cell(photo.name, (width, height), box, result)
        scales = [s for s in SCALES if -(-width // s) >= result[0] and -(-height // s) >= result[1]]
        cell.pillow_scale = pillow_scale(photo.data, *result)
        reference = references.luma(*result)
        for scale in scales:
            cell.ssim[scale] = ssim(reference, luma(vips_fit(photo.data, scale, *result)))
            cell.ms[scale] = []
        cell.pillow_ssim = ssim(reference, luma(from_pillow(pillow_fit(photo.data, *result))))
        calls: list[tuple[list[float], Callable[[], object]]] = [
            (cell.ms[scale], partial(vips_fit, photo.data, scale, *result)) for scale in scales
        ]
        calls.append((cell.pillow_ms, partial(pillow_fit, photo.data, *result)))
        for _ in range(repeats):
            for times, call in calls:
                started = time.perf_counter()
                call()
                times.append((time.perf_counter() - started) * 1000)
        cells.append(cell)
    return cells


class Comparison:
    """The cells measured, judged against Pillow's draft: which rules keep its quality on every one."""

    def __init__(self, cells: Sequence[Cell]) -> None:
        self.cells = list(cells)
        # libvips rounds a scaled side down (451 px at 1/4: 112), libjpeg as Pillow calls it rounds up (113), so the
        # two decode the same pixels only where the scale divides both stored sides. There, what separates them is
        # the resize alone (libvips' reduce against Pillow's LANCZOS): a difference no choice of scale can remove.
        same = [
            cell.pillow_ssim - cell.ssim[cell.pillow_scale]
            for cell in self.cells
            if cell.pillow_scale in cell.ssim and cell.scale_divides(cell.pillow_scale)
        ]
        self.tolerance = max([0.0, *same])

    def at_least(self, score: float, pillow: float) -> bool:
        """Whether a score keeps Pillow-draft's quality, but for the resize's own difference (:attr:`tolerance`)."""
        return score >= pillow - self.tolerance

    def holds(self, cells: Iterable[Cell], rule: Callable[[int, int], int]) -> bool:
        return all(self.at_least(cell.ssim[cell.rule_scale(rule)], cell.pillow_ssim) for cell in cells)

    def smallest_margin(self, cells: Sequence[Cell]) -> float | None:
        return next((margin for margin in MARGINS if self.holds(cells, margin_rule(margin))), None)

    def choose_rule(self) -> tuple[float, float, int]:
        """The fastest rule of the sidecar's form that keeps Pillow-draft's quality on every cell: a margin for
        results from ``small_result`` px (longer side) and a margin under it. Fastest: the fewest pixels decoded over
        all cells (a count, so that the choice does not move with the timing's noise)."""
        best: tuple[float, tuple[float, float, int]] | None = None
        for small_result in sorted({max(cell.result) for cell in self.cells}):
            margin = self.smallest_margin([cell for cell in self.cells if max(cell.result) >= small_result])
            small = [cell for cell in self.cells if max(cell.result) < small_result]
            small_margin = self.smallest_margin(small) if small else margin
            if margin is None or small_margin is None:
                continue
            rule = split_rule(margin, small_margin, small_result)
            decoded = sum(cell.source[0] * cell.source[1] / cell.rule_scale(rule) ** 2 for cell in self.cells)
            if best is None or decoded < best[0]:
                best = (decoded, (margin, small_margin, small_result))
        if best is None:
            raise RuntimeError(f"no margin up to {MARGINS[-1]} keeps Pillow-draft's quality on every photo")
        return best[1]


def lowest(cells: Sequence[Cell], rule: Callable[[int, int], int]) -> Cell:
    """The cell whose SSIM is the lowest under the rule."""
    return min(cells, key=lambda cell: cell.ssim[cell.rule_scale(rule)])


def worst(cells: Sequence[Cell], rule: Callable[[int, int], int]) -> Cell:
    """The cell where the rule's SSIM falls furthest under (or stays least above) Pillow-draft's."""
    return min(cells, key=lambda cell: cell.ssim[cell.rule_scale(rule)] - cell.pillow_ssim)


def split_rule(margin: float, small_margin: float, small_result: int) -> Callable[[int, int], int]:
    large, small = margin_rule(margin), margin_rule(small_margin)
    return lambda source, result: small(source, result) if result < small_result else large(source, result)


Rules = dict[str, Callable[[int, int], int]]


def markdown(run: dict[str, Any], cells: list[Cell]) -> str:
    comparison = Comparison(cells)
    margin, small_margin, small_result = comparison.choose_rule()
    chosen = split_rule(margin, small_margin, small_result)
    rules: Rules = {
        f"chosen: {small_margin:g} under {small_result} px, {margin:g} from {small_result}": chosen,
        "the sidecar's `_jpeg_shrink`": imaging._jpeg_shrink,
        "before: 3 under 200 px, 1.875 from 200": split_rule(1.875, 3.0, 200),
        "libvips' thumbnail: 2": margin_rule(2.0),
    }
    lines = [
        "# JPEG shrink-on-load: which DCT scale keeps Pillow-draft's quality, on photos",
        "",
        f"`{run['command']}`, {run['date']}, libvips {run['libvips']}, Pillow {run['pillow']}, one libvips thread"
        + (f", load average {run['load']} when it started (2 cores)." if "load" in run else "."),
        "",
        (__doc__ or "").split("\n\n", 2)[2].strip(),
        "",
        *corpus_section(run, cells),
        "## The rule",
        "",
        "Of the sidecar's form (the smallest DCT scale that leaves the decoded longer side a margin over the "
        "result's, another margin under a result size), the fastest that keeps every photo's SSIM at least "
        f"Pillow-draft's, less {comparison.tolerance:.5f} (margins tried: {', '.join(f'{m:g}' for m in MARGINS)}): "
        f"**{small_margin:g} for results under {small_result} px, {margin:g} from {small_result} px**. Fastest: "
        f"the fewest pixels decoded over every cell. The {comparison.tolerance:.5f} is the most libvips' resize "
        "fell under Pillow's LANCZOS from the very same decoded pixels (where the scale divides both stored "
        "sides): a difference no choice of scale removes.",
        "",
        *rule_section(comparison, rules),
        *geometry_section(cells),
        *cells_section(comparison, chosen),
    ]
    return "\n".join(lines)


def corpus_section(run: dict[str, Any], cells: Sequence[Cell]) -> list[str]:
    sizes = {cell.photo: cell.source for cell in cells}
    lines = ["## Corpus", "", "| photo | stored size | what, origin and licence |", "|---|---|---|"]
    for name, what in run["photos"]:
        width, height = sizes.get(name, (0, 0))
        lines.append(f"| `{name}` | {width}x{height} | {what} |")
    lines += ["", "Left out: " + "; ".join(LEFT_OUT) + "."]
    if run["missing"]:
        lines += ["", "Not found, so not measured: " + "; ".join(run["missing"]) + "."]
    return [
        *lines,
        "",
        "No real photo of the corpus is 12 MP or more: the largest are 8.3 MP (`ultra-hdr.jpg`) and 6.1 MP (the "
        "sharp fixture). At 12, 24 and 50 MP only the benchmark's generated originals are measured; no photo was "
        "upscaled to stand in for one.",
        "",
    ]


def rule_section(comparison: Comparison, rules: Rules) -> list[str]:
    cells = comparison.cells
    by_box = {box: [cell for cell in cells if cell.box == box] for box in BOXES}
    by_box = {box: in_box for box, in_box in by_box.items() if in_box}
    scores = {name: [cell.ssim[cell.rule_scale(rule)] for cell in cells] for name, rule in rules.items()}
    scores["Pillow draft"] = [cell.pillow_ssim for cell in cells]
    lines = [
        f"Against the full decode, over the {len(cells)} cells:",
        "",
        "| rule | cells under SSIM 0.99 | lowest SSIM |",
        "|---|---|---|",
        *(f"| {name} | {sum(value < 0.99 for value in got)} | {min(got):.4f} |" for name, got in scores.items()),
        "",
        "Per box, under each rule: the lowest SSIM over the corpus (the worst-case photo, the scale it is decoded "
        "at, Pillow-draft's SSIM on it), then the largest shortfall under Pillow-draft's and where.",
        "",
        "| box | " + " | ".join(rules) + " | Pillow draft |",
        "|---|" + "---|" * (len(rules) + 1),
    ]
    for box, in_box in by_box.items():
        row = []
        for rule in rules.values():
            low, short = lowest(in_box, rule), worst(in_box, rule)
            scale, short_scale = low.rule_scale(rule), short.rule_scale(rule)
            row.append(
                f"{low.ssim[scale]:.4f} `{low.photo}` 1/{scale} ({low.pillow_ssim:.4f}); "
                f"{short.ssim[short_scale] - short.pillow_ssim:+.4f} `{short.photo}`"
            )
        pillow_low = min(in_box, key=lambda cell: cell.pillow_ssim)
        row.append(f"{pillow_low.pillow_ssim:.4f} `{pillow_low.photo}` 1/{pillow_low.pillow_scale}")
        lines.append(f"| {box[0]}x{box[1]} | " + " | ".join(row) + " |")
    lines += [
        "",
        "The smallest margin that holds on each box alone:",
        "",
        "| box | " + " | ".join(f"{w}x{h}" for w, h in by_box) + " |",
        "|---|" + "---|" * len(by_box),
        "| margin | " + " | ".join(f"{comparison.smallest_margin(in_box)}" for in_box in by_box.values()) + " |",
        "",
        "Time into 400x300, ms per render, median [min–max] of the calls, the scale each rule decodes at; the "
        "originals of 1800 px and more, then the sum of the medians over every cell. The machine is shared: the "
        "minimum is the steadiest figure.",
        "",
        "| photo | " + " | ".join(rules) + " | Pillow draft |",
        "|---|" + "---|" * (len(rules) + 1),
    ]
    for cell in by_box.get((400, 300), []):
        if max(cell.source) >= 1800:
            texts = [f"1/{cell.rule_scale(rule)}: {spread(cell.ms[cell.rule_scale(rule)])}" for rule in rules.values()]
            texts.append(f"1/{cell.pillow_scale}: {spread(cell.pillow_ms)}")
            lines.append(f"| `{cell.photo}` | " + " | ".join(texts) + " |")
    totals = [sum(cell.median(cell.rule_scale(rule)) for cell in cells) for rule in rules.values()]
    pillow_total = sum(cell.pillow_median() for cell in cells)
    lines.append("| every cell | " + " | ".join(f"{total:.0f}" for total in totals) + f" | {pillow_total:.0f} |")
    return [*lines, ""]


def geometry_section(cells: Sequence[Cell]) -> list[str]:
    apart = sorted(
        (cell for cell in cells if cell.pillow_scale in cell.ssim and not cell.scale_divides(cell.pillow_scale)),
        key=lambda cell: cell.ssim[cell.pillow_scale] - cell.pillow_ssim,
    )
    lines = [
        "## Why the small results keep a margin",
        "",
        "Where a scale does not divide a stored side, libvips and Pillow decode different pixels at it: libvips "
        "rounds the scaled side down (451 px at 1/4: 112), libjpeg as Pillow calls it rounds up (113), and each "
        "stretches what it decoded over the whole result. The shift is under one decoded pixel, so it costs most "
        "where a decoded pixel is large against a result's: at small margins. The largest differences it makes "
        "either way, at the scale Pillow picked:",
        "",
        "| photo | box → result | scale | libvips | Pillow |",
        "|---|---|---|---|---|",
    ]
    for cell in [*apart[:3], *apart[-3:]] if len(apart) > 6 else apart:
        lines.append(
            f"| `{cell.photo}` | {cell.box[0]}x{cell.box[1]} → {cell.result[0]}x{cell.result[1]} | "
            f"1/{cell.pillow_scale} | {cell.ssim[cell.pillow_scale]:.4f} | {cell.pillow_ssim:.4f} |"
        )
    return [*lines, ""]


def cells_section(comparison: Comparison, chosen: Callable[[int, int], int]) -> list[str]:
    lines = [
        "## Quality and speed, every cell",
        "",
        "SSIM · ms (median of the calls; every call is in the JSON file). **Bold**: the scale the chosen rule "
        "decodes at; ✓: the smallest decode (the fastest, but for the timing's noise) that keeps Pillow-draft's "
        "SSIM.",
        "",
        "| photo | box → result | 1/1 | 1/2 | 1/4 | 1/8 | Pillow draft |",
        "|---|---|---|---|---|---|---|",
    ]
    for cell in comparison.cells:
        keeping = [scale for scale, score in cell.ssim.items() if comparison.at_least(score, cell.pillow_ssim)]
        fastest = max(keeping, default=None)
        texts = []
        for scale in SCALES:
            text = f"{cell.ssim[scale]:.4f} · {cell.median(scale):.1f}" if scale in cell.ssim else "–"
            if scale == cell.rule_scale(chosen) and scale in cell.ssim:
                text = f"**{text}**"
            texts.append(f"{text} ✓" if scale == fastest else text)
        drafted = f"1/{cell.pillow_scale}: {cell.pillow_ssim:.4f} · {cell.pillow_median():.1f}"
        lines.append(
            f"| `{cell.photo}` | {cell.box[0]}x{cell.box[1]} → {cell.result[0]}x{cell.result[1]} | "
            + " | ".join(texts)
            + f" | {drafted} |"
        )
    return [*lines, ""]


def from_json(cells: list[dict[str, Any]]) -> list[Cell]:
    """The cells of a run, as :func:`dataclasses.asdict` wrote them (JSON turns the scales into strings)."""
    return [
        Cell(
            cell["photo"],
            tuple(cell["source"]),
            tuple(cell["box"]),
            tuple(cell["result"]),
            {int(scale): score for scale, score in cell["ssim"].items()},
            {int(scale): calls for scale, calls in cell["ms"].items()},
            cell["pillow_scale"],
            cell["pillow_ssim"],
            cell["pillow_ms"],
        )
        for cell in cells
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = arguments(__doc__, out=RESULTS)
    parser.add_argument("--repeats", type=int, default=7, help="timed calls of each render (default: %(default)s)")
    parser.add_argument("--smoke", action="store_true", help="the demo's photos, two boxes, one call")
    parser.add_argument("--work", type=Path, default=BENCH / "work", help="where generated originals are kept")
    parser.add_argument(
        "--report", type=Path, help="write the results again from a run's JSON, measuring nothing"
    )
    args = parser.parse_args(argv)
    if args.report:
        run = json.loads(args.report.read_text())
        cells = from_json(run.pop("cells"))
    else:
        pyvips.cache_set_max(0)  # a repeated call must decode again, not find its result in libvips' cache
        load = os.getloadavg()[0]  # the machine's other work: what the times are measured against
        photos, missing = corpus(args.smoke, args.work.resolve())
        boxes, repeats = (SMOKE_BOXES, 1) if args.smoke else (BOXES, args.repeats)
        cells = []
        for photo in photos:
            started = time.perf_counter()
            cells += measure(photo, boxes, repeats)
            print(f"{photo.name}: {time.perf_counter() - started:.1f} s", flush=True)
        run = {
            "command": command_line("jpeg_shrink.py", argv),
            "date": str(datetime.date.today()),
            "libvips": f"{pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}",
            "pillow": PIL.__version__,
            "photos": [(photo.name, photo.what) for photo in photos],
            "missing": missing,
            "load": f"{load:.1f}",
        }
    raw = {**run, "cells": [asdict(cell) for cell in cells]}
    print(write_results(args.out, "jpeg_shrink", markdown(run, cells), raw))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
