#!/usr/bin/env python3
"""What hostile originals cost (FAULTS.md rows 30 and 31), measured; ``bench/reliability.py`` records the figures.

    python bench/hostile.py                       # about 2 minutes on 2 cores; prints JSON
    python bench/hostile.py --unguarded-floods    # also decodes the 10k- and 100k-scan floods (about 2.5 minutes)

- ``decodes``: CPU seconds and peak RSS of the miss path (:func:`imaging.render`) for each hostile original, each
  in a fresh process: with the default limits (what a node spends now), and with the limits raised (what one
  decode would spend without them).
- ``memory_per_megapixel``: peak RSS per megapixel (and CPU seconds) of one decode per format, which tells which
  formats are decoded whole and sets their pixel limits (imaging.WHOLE_DECODES); HEIC through pillow-heif, BMP through
  Pillow, the others through libvips.
- ``deadline``: how long after the transform deadline a decode that reports no progress ends.
- ``legitimate_wait``: a real gunicorn sidecar (default slots and workers) serving one client's misses of
  legitimate originals while four clients send hostile ones without pause: how long each legitimate miss took.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import pyvips  # noqa: E402
from common import Spread, arguments  # noqa: E402
from PIL import Image  # noqa: E402

from resize_sidecar.core.signing import format_path  # noqa: E402
from resize_sidecar.media.local import LocalStorage  # noqa: E402
from tests.support.environment import isolate  # noqa: E402
from tests.support.faults import (  # noqa: E402
    dc_scan_flood_jpeg,
    flat_avif,
    gradients,
    lossless_webp,
    peak_rss_kib,
    reset_peak_rss,
    rss_kib,
    scan_flood_jpeg,
)
from tests.support.images import photo  # noqa: E402
from tests.support.pictures import bmp, heic, tiff  # noqa: E402
from tests.support.servers import SECRET, SidecarServer, raw_get  # noqa: E402

#: Limits high enough that nothing below is refused from its header: the cost of the decode itself.
UNGUARDED = {
    "max_source_pixels": 10**9,
    "max_interlaced_pixels": 10**9,
    "max_heif_pixels": 10**9,
    "max_lossless_webp_pixels": 10**9,
    "max_tiff_pixels": 10**9,
    "max_bmp_pixels": 10**9,
    "max_jpeg_scan_pixels": 10**15,
    "transform_timeout": 20.0,
}
#: The report's 9 MP flood: one picture's six scans, then this many tiny AC scans.
FLOOD_SIDE = 3000
#: Scans (the picture's own included) that fill MAX_JPEG_SCAN_PIXELS at 9 MP: the most a flood may have.
AT_LIMIT_SCANS = 1_000_000_000 // (FLOOD_SIDE * FLOOD_SIDE)
#: The formats of the memory table, at 12 MP, with what makes each.
MEMORY_SIZE = (4000, 3000)


def _saved(saver: str, **options: Any) -> Callable[[pyvips.Image], bytes]:
    return lambda image: bytes(getattr(image, saver)(**options))


def _pillow(image: pyvips.Image) -> Image.Image:
    return Image.frombytes("RGB", (image.width, image.height), image.write_to_memory())


_MAKERS: dict[str, Callable[[pyvips.Image], bytes]] = {
    "baseline JPEG": _saved("jpegsave_buffer", Q=85),
    "progressive JPEG": _saved("jpegsave_buffer", Q=85, interlace=True),
    "PNG": _saved("pngsave_buffer", compression=1),
    "interlaced PNG": _saved("pngsave_buffer", compression=1, interlace=True),
    "lossy WebP": _saved("webpsave_buffer", Q=80, effort=0),
    "lossless WebP": _saved("webpsave_buffer", lossless=True, effort=0),
    "AVIF": _saved("heifsave_buffer", compression="av1", effort=0, Q=30),
    "GIF": _saved("gifsave_buffer", effort=1),
    "HEIC": lambda image: heic(_pillow(image), quality=50),
    "HEIC 10-bit": lambda image: heic(_pillow(image), quality=50, ten_bit=True),
    "TIFF in strips": _saved("tiffsave_buffer", compression="lzw"),
    # One tile holding the whole picture: libtiff decodes a strip or tile whole.
    "TIFF as one tile": lambda image: tiff(
        image, compression="deflate", tile=True, tile_width=image.width - image.width % 16,
        tile_height=image.height + 16 - image.height % 16,
    ),  # fmt: skip
    "BMP": lambda image: bmp(_pillow(image)),
    # Runs of one pixel: the most work per pixel for Pillow's RLE decoder, which is Python.
    "RLE8 BMP of one-pixel runs": lambda image: bmp(_pillow(image), rle=True, run=1),
}


def decode_cost(data: bytes, overrides: dict[str, Any]) -> dict[str, Any]:
    """Render ``data`` to a 400 px JPEG, as a miss does, in a fresh process; its outcome, CPU seconds and peak RSS
    above the process's resident memory before it (MB)."""
    with tempfile.NamedTemporaryFile(suffix=".img") as original:
        original.write(data)
        original.flush()
        done = subprocess.run(
            [sys.executable, __file__, "--decode", original.name, json.dumps(overrides)],
            capture_output=True, text=True, check=True, cwd=REPO,
        )  # fmt: skip
    return {"bytes": len(data), **json.loads(done.stdout)}


def _decode_here(path: str, overrides: dict[str, Any]) -> dict[str, Any]:
    from resize_sidecar.core.errors import SidecarError
    from resize_sidecar.core.settings import Settings
    from resize_sidecar.core.signing import parse_spec
    from resize_sidecar.media import imaging

    imaging.set_render_threads(1)  # as the workers do
    data = Path(path).read_bytes()
    settings = Settings(**overrides)
    before = rss_kib(os.getpid())
    reset_peak_rss(os.getpid())
    cpu, wall = time.process_time(), time.perf_counter()
    try:
        imaging.render(data, parse_spec("400x"), "jpg", settings.image_limits)
        outcome = "200"
    except SidecarError as error:
        outcome = f"{error.status} {error.reason}"
    return {
        "outcome": outcome,
        "cpu_seconds": round(time.process_time() - cpu, 3),
        "wall_seconds": round(time.perf_counter() - wall, 3),
        "peak_rss_mb": round((peak_rss_kib(os.getpid()) - before) / 1024, 1),
    }


def hostile_originals() -> dict[str, bytes]:
    """The red team's originals, small in bytes and costly to decode, by name."""
    return {
        "scan flood, 10k scans, 9 MP": scan_flood_jpeg(FLOOD_SIDE, FLOOD_SIDE, 10_000),
        "scan flood, 100k scans, 9 MP": scan_flood_jpeg(FLOOD_SIDE, FLOOD_SIDE, 100_000),
        "AVIF declaring 7000x7000 (49 MP)": flat_avif(7000, 7000),
        "lossless WebP, 7071x7071 (50 MP)": lossless_webp(7071, 7071),
    }


def decodes(*, unguarded_floods: bool) -> dict[str, Any]:
    """Each hostile original under the default limits, and without them: the floods of 10k scans and more only when
    asked (minutes of CPU), and one of 1k scans, whose cost scales, always."""
    figures: dict[str, Any] = {}
    for name, data in hostile_originals().items():
        figures[name] = {"defaults": decode_cost(data, {})}
        if unguarded_floods or not name.startswith("scan flood"):
            figures[name]["unguarded"] = decode_cost(data, UNGUARDED)
    flood = scan_flood_jpeg(FLOOD_SIDE, FLOOD_SIDE, 1000)
    figures["scan flood, 1k scans, 9 MP"] = {
        "defaults": decode_cost(flood, {}),
        "unguarded": decode_cost(flood, UNGUARDED),
    }
    # The costliest floods the default limit lets through: end-of-band AC scans, and DC scans of three components,
    # which code a symbol per block.
    at_limit = scan_flood_jpeg(FLOOD_SIDE, FLOOD_SIDE, AT_LIMIT_SCANS - 6)
    figures[f"AC scan flood at MAX_JPEG_SCAN_PIXELS ({AT_LIMIT_SCANS} scans, 9 MP)"] = {
        "defaults": decode_cost(at_limit, {})
    }
    at_limit = dc_scan_flood_jpeg(FLOOD_SIDE, FLOOD_SIDE, AT_LIMIT_SCANS - 10)
    figures[f"DC scan flood at MAX_JPEG_SCAN_PIXELS ({AT_LIMIT_SCANS} scans, 9 MP, 4:4:4)"] = {
        "defaults": decode_cost(at_limit, {})
    }
    return figures


def memory_per_megapixel() -> dict[str, Any]:
    width, height = MEMORY_SIZE
    image = gradients(width, height)
    table = {}
    for name, make in _MAKERS.items():
        cost = decode_cost(make(image), UNGUARDED)
        table[name] = {**cost, "mb_per_megapixel": round(cost["peak_rss_mb"] / (width * height / 1e6), 1)}
    return {"size": f"{width}x{height}", "formats": table}


def deadline() -> dict[str, Any]:
    """Decodes that report no progress, with a deadline well inside them: when each ends, and with what."""
    cases = {
        "scan flood, 2000 scans, 9 MP": (scan_flood_jpeg(FLOOD_SIDE, FLOOD_SIDE, 2000), 0.5),
        "AVIF 7000x7000": (flat_avif(7000, 7000), 0.1),
    }
    return {
        name: {"transform_timeout": timeout, **decode_cost(data, {**UNGUARDED, "transform_timeout": timeout})}
        for name, (data, timeout) in cases.items()
    }


def legitimate_wait(seconds: float = 30.0, hostile_clients: int = 4) -> dict[str, Any]:
    """One client's legitimate misses, one after another, alone and then beside ``hostile_clients`` clients that
    request hostile originals without pause, against gunicorn with the default workers and slots."""
    with tempfile.TemporaryDirectory() as scratch:
        media = Path(scratch) / "media"
        storage = LocalStorage(str(media))
        hostile = hostile_originals()
        hostile_keys = [f"hostile/{index}" for index in range(len(hostile))]
        for key, data in zip(hostile_keys, hostile.values(), strict=True):
            storage.put(key, data, "application/octet-stream", "no-cache")
        storage.put("legit/photo.jpg", photo(1600, 1200), "image/jpeg", "no-cache")
        env = {
            "RESIZE_SIDECAR_SECRETS": SECRET,
            "RESIZE_SIDECAR_STORAGE": "local",
            "RESIZE_SIDECAR_LOCAL_ROOT": str(media),
        }
        widths = iter(range(100, 4000))

        def legitimate(until: float) -> list[tuple[int, float]]:
            timings = []
            while time.monotonic() < until:
                path = format_path("legit/photo.jpg", f"{next(widths)}x", "jpg", SECRET)
                started = time.perf_counter()
                status = raw_get(sidecar.url, path)[0]
                timings.append((status, time.perf_counter() - started))
            return timings

        stop = threading.Event()
        statuses: Counter[int] = Counter()

        def attack(client: int) -> None:
            count = 0
            while not stop.is_set():
                key = hostile_keys[(client + count) % len(hostile_keys)]
                statuses[raw_get(sidecar.url, format_path(key, f"{300 + count}x", "jpg", SECRET))[0]] += 1
                count += 1

        with SidecarServer(env, Path(scratch)) as sidecar:
            alone = legitimate(time.monotonic() + seconds / 3)
            with ThreadPoolExecutor(hostile_clients) as pool:
                attackers = [pool.submit(attack, client) for client in range(hostile_clients)]
                beside = legitimate(time.monotonic() + seconds)
                stop.set()
                for attacker in attackers:
                    attacker.result()
    return {
        "hostile_clients": hostile_clients,
        "hostile_originals": list(hostile),
        "hostile_statuses": dict(statuses),
        "alone": _summary(alone),
        "beside_hostile": _summary(beside),
    }


def _summary(timings: list[tuple[int, float]]) -> dict[str, Any]:
    seconds = Spread.of([duration for _, duration in timings])
    return {
        "misses": len(timings),
        "statuses": dict(Counter(status for status, _ in timings)),
        "median_seconds": round(seconds.median, 3),
        "max_seconds": round(seconds.high, 3),
    }


def measure(*, unguarded_floods: bool = False) -> dict[str, Any]:
    return {
        "decodes": decodes(unguarded_floods=unguarded_floods),
        "memory_per_megapixel": memory_per_megapixel(),
        "deadline": deadline(),
        "legitimate_wait": legitimate_wait(),
    }


def main(argv: list[str] | None = None) -> int:
    isolate()  # credentials moto accepts, and none of the shell's RESIZE_SIDECAR_* settings
    parser = arguments(__doc__)
    parser.add_argument("--unguarded-floods", action="store_true", help="decode the 10k- and 100k-scan floods too")
    parser.add_argument("--decode", nargs=2, metavar=("FILE", "SETTINGS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.decode:
        print(json.dumps(_decode_here(args.decode[0], json.loads(args.decode[1]))))
        return 0
    print(json.dumps(measure(unguarded_floods=args.unguarded_floods), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
