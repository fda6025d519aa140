"""Deterministic, photo-like benchmark originals, made with libvips from seeded noise.

Real photos compress the way they do because they mix smooth gradients, sharp object edges and sensor grain; flat
test patterns compress to almost nothing and make JPEG decoding look far cheaper than it is. Each source here is a
scene drawn at a quarter of its size (smooth fields of several scales, hard-edged shapes, a light gradient), scaled
up once, plus full-resolution grain: a 24 MP one is about 7 MB at JPEG q90, like a camera's.
Same libvips, same seed: same bytes, so runs compare.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyvips


@dataclass(frozen=True)
class Source:
    """One benchmark original: its name (also its folder of keys), size and how it is encoded."""

    name: str
    width: int
    height: int
    fmt: str  # file extension: jpg, png, webp, gif
    frames: int = 1
    alpha: bool = False

    @property
    def filename(self) -> str:
        return f"{self.name}.{self.fmt}"

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6


#: Full-size sources; ``--smoke`` scales them down (see :func:`scaled`).
SOURCES: dict[str, Source] = {
    source.name: source
    for source in (
        Source("24mp", 6000, 4000, "jpg"),
        Source("12mp", 4000, 3000, "jpg"),
        Source("1080p", 1920, 1080, "jpg"),
        Source("50mp", 8640, 5760, "jpg"),  # just under the default 50 MP source limit
        Source("alpha", 1920, 1280, "png", alpha=True),
        Source("webp", 1920, 1080, "webp"),
        Source("anim", 480, 270, "gif", frames=12),
    )
}

# Grain sigma: the dominant term in a JPEG's size. 6.5 gives about 0.29 bytes per pixel at q90 (4:2:0).
_GRAIN = 6.5
_SEED = 20240611


def scaled(source: Source, factor: float) -> Source:
    """The same kind of source at a fraction of its size (for smoke runs)."""
    return Source(
        source.name,
        max(16, int(source.width * factor)),
        max(16, int(source.height * factor)),
        source.fmt,
        source.frames,
        source.alpha,
    )


def scene(width: int, height: int, seed: int) -> pyvips.Image:
    """An 8-bit sRGB photo-like image."""
    small_width, small_height = max(8, width // 4), max(8, height // 4)

    def field(divisor: int, amplitude: float, offset: int) -> pyvips.Image:
        # Noise on a coarse grid, softened and scaled up: a smooth random surface of one feature size.
        grid_width, grid_height = max(2, small_width // divisor), max(2, small_height // divisor)
        noise = pyvips.Image.gaussnoise(grid_width, grid_height, sigma=1.0, mean=0, seed=seed + offset).gaussblur(0.8)
        return noise.resize(small_width / grid_width, vscale=small_height / grid_height, kernel="cubic") * amplitude

    rows = pyvips.Image.xyz(small_width, small_height)[1]
    light = field(64, 45, 0) + field(16, 25, 1) + field(3, 10, 2) + rows * (-50.0 / small_height) + 140
    shapes = field(24, 1, 3) > 0.3  # hard, curved object edges
    light = shapes.ifthenelse(light * 0.6 + 10, light)
    warm, green = field(48, 25, 4), field(48, 15, 5)
    colour = (light + warm).bandjoin([light + green - warm * 0.3, light - warm - green * 0.5])
    image = colour.resize(width / small_width, vscale=height / small_height, kernel="cubic")
    image = image + pyvips.Image.gaussnoise(width, height, sigma=_GRAIN, mean=0, seed=seed + 6)
    return image.cast("uchar").copy(interpretation="srgb")


def encode(source: Source) -> bytes:
    """The source's file bytes."""
    if source.frames > 1:
        frames = [scene(source.width, source.height, _SEED + 100 * index) for index in range(source.frames)]
        strip = pyvips.Image.arrayjoin(frames, across=1)
        strip = strip.copy()
        strip.set_type(pyvips.GValue.gint_type, "page-height", source.height)
        strip.set_type(pyvips.GValue.array_int_type, "delay", [80] * source.frames)
        strip.set_type(pyvips.GValue.gint_type, "loop", 0)
        return bytes(strip.gifsave_buffer())
    image = scene(source.width, source.height, _SEED)
    if source.alpha:
        # A soft-edged round cut-out: what logos and product shots with transparency look like.
        xy = pyvips.Image.xyz(source.width, source.height)
        centre_x, centre_y = source.width / 2, source.height / 2
        radius = min(source.width, source.height) * 0.45
        distance = ((xy[0] - centre_x) ** 2 + (xy[1] - centre_y) ** 2) ** 0.5
        alpha = ((radius - distance) * 8).cast("uchar")  # clips to 0..255: opaque inside, a ramp, clear outside
        return bytes(image.bandjoin(alpha).pngsave_buffer(compression=6))
    if source.fmt == "webp":
        return bytes(image.webpsave_buffer(Q=90))
    # Cameras and phones write 4:2:0 chroma; libvips would pick 4:4:4 at q90, which decodes slower.
    return bytes(image.jpegsave_buffer(Q=90, subsample_mode="on"))


def ensure(source: Source, folder: Path) -> Path:
    """The source's file in ``folder``, made once: it is deterministic, so a file already there is reused."""
    path = folder / source.filename
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.tmp")
        temp.write_bytes(encode(source))
        os.replace(temp, path)
    return path


def link_keys(original: Path, media_root: Path, source: Source, count: int) -> list[str]:
    """Storage keys ``{name}/k0000.{fmt}``… under ``media_root``, all hard links to one copy of the original.

    Distinct keys make distinct derivatives (every miss request must make a new one), while the bytes stay one
    inode in the page cache, so every server reads the same cached source. The copy lives in ``media_root``
    because a hard link cannot cross file systems (the images may be cached on another one).
    """
    folder = media_root / source.name
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    keys = [f"{source.name}/k{index:04d}.{source.fmt}" for index in range(count)]
    first = media_root / keys[0]
    if not first.exists():
        shutil.copyfile(original, first)
        first.chmod(0o644)  # nginx's workers (another user) and thumbor read it
    for key in keys[1:]:
        if not (media_root / key).exists():
            os.link(first, media_root / key)
    return keys
