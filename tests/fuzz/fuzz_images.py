"""Fuzz target: ``imaging.probe`` and ``imaging.render`` on arbitrary bytes raise nothing but SidecarError.

    python tests/fuzz/fuzz_images.py -max_total_time=60 [libFuzzer options] [CORPUS_FOLDER ...]

Seeded with the images of the shared corpus (those up to 256 KB: larger seeds slow every run down without
reaching more code), and small HEIC, TIFF and BMP files of the kinds phones and scanners write
(tests/support/pictures.py), for the decoders outside libvips (pillow-heif, Pillow's BMP reader) and libtiff. A
crash (any other exception, or libvips bringing the process down) is written under
``$TMPDIR/resize-sidecar-fuzz/crashes/``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

# One libvips thread, as in the sidecar's workers; set before pyvips loads.
os.environ.setdefault("VIPS_CONCURRENCY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz._harness import Check, run, shared_images  # noqa: E402

MAX_SEED_BYTES = 256 * 1024


def target() -> Check:
    import pyvips

    from resize_sidecar.core.errors import SidecarError
    from resize_sidecar.core.settings import Settings
    from resize_sidecar.core.signing import parse_spec
    from resize_sidecar.media import imaging

    # Smaller limits than the defaults, so that an input the header check lets through decodes in milliseconds.
    settings = Settings(
        max_source_pixels=4_000_000,
        max_interlaced_pixels=1_000_000,
        max_heif_pixels=1_000_000,
        max_tiff_pixels=1_000_000,
        max_bmp_pixels=1_000_000,
        transform_timeout=5.0,
    )
    # Every kind of step and encoder; an input's length picks one, so that all of its bytes are image.
    specs = [
        (parse_spec("64x"), "jpg"),
        (parse_spec("32x32-fill-sm"), "webp"),
        (parse_spec("48x40-pad-blur5"), "png"),
        (parse_spec("40x-sharp"), "gif"),
        (parse_spec("24x24-fill-ne"), "avif"),
    ]

    def check(data: bytes) -> None:
        # libvips keeps one error buffer per process: start each input from an empty one, so that a failure is
        # blamed on the input that caused it rather than on one that ran before.
        pyvips.vips_lib.vips_error_clear()
        spec, fmt = specs[len(data) % len(specs)]
        try:
            info = imaging.probe(data, settings.image_limits)
            imaging.render(data, spec, fmt, settings.image_limits, info)
        except SidecarError:
            pass

    return check


def seeds() -> Iterator[tuple[str, bytes]]:
    for path in sorted(shared_images().glob("*/*")):
        if path.is_file() and path.stat().st_size <= MAX_SEED_BYTES:
            yield f"{path.parent.name}-{path.name}", path.read_bytes()
    yield from made_seeds()


def made_seeds() -> Iterator[tuple[str, bytes]]:
    from tests.support.pictures import bmp, heic, multipage_tiff, picture, tiff, to_pyvips

    small, clear = picture(48, 32), picture(48, 32, alpha=True)
    image = to_pyvips(small)
    yield "made-orientation-6.heic", heic(small, orientation=6)
    yield "made-10-bit-alpha.heic", heic(clear, ten_bit=True)
    yield "made-two-pages.tiff", multipage_tiff(image, image.flip("horizontal"))
    yield "made-cmyk-deflate.tif", tiff(image.icc_transform("cmyk", intent="relative"), compression="deflate")
    yield "made-tiled-lzw.tiff", tiff(image, compression="lzw", tile=True, tile_width=16, tile_height=16)
    yield "made-alpha.bmp", bmp(clear)
    yield "made-rle8.bmp", bmp(small, rle=True, run=7)


if __name__ == "__main__":
    run("images", target, seeds, sys.argv)
