"""Measurements inside the harness process: render time and quality, where a miss spends its time, bytes.

The harness sets ``VIPS_CONCURRENCY=1`` before pyvips loads, as ``resize-sidecar serve`` does for its workers, so
these are one-core numbers, comparable with Pillow (which decodes on one core).
"""

from __future__ import annotations

import cProfile
import importlib.util
import io
import pstats
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import floor_app
import pyvips
from quality import References

from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import DerivativeSpec, format_path
from resize_sidecar.media import derive, imaging
from resize_sidecar.media.local import LocalStorage

BOX = (400, 300)

#: Pillow is a bench requirement (bench/requirements.txt); without it the Pillow anchor is skipped, and said so.
HAVE_PILLOW = importlib.util.find_spec("PIL") is not None


def settings(**overrides: Any) -> Settings:
    return Settings(secrets=("bench-secret",), **overrides).validate()


def sidecar_render(data: bytes, fmt: str, quality: int | None = None, mode: str = "fit") -> bytes:
    """What the sidecar's miss path does between reading the original and storing the result."""
    config = settings()
    info = imaging.probe(data, config.image_limits)
    return imaging.render(data, DerivativeSpec(*BOX, mode=mode, quality=quality), fmt, config.image_limits, info).body


def vips_naive(data: bytes, fmt: str, quality: int | None = None) -> bytes:
    """One ``thumbnail_buffer`` with libvips' defaults and the sidecar's encoder: the naive pyvips server."""
    return floor_app.render(data, "fit", BOX[0], BOX[1], fmt, quality)


def pillow_draft(data: bytes, fmt: str, quality: int | None = None) -> bytes:
    """thumbor's PIL engine on a fit into the box: ``draft()`` to the result's size (JPEG DCT scaling), LANCZOS to
    it, save as thumbor's engine and the benchmark's configuration of it save (JPEG with Huffman optimisation, AVIF
    at speed 7)."""
    from PIL import Image

    image, size = _pillow_drafted(data)
    image = image.resize(size, Image.Resampling.LANCZOS)
    if image.mode not in ("RGB", "L"):
        flat = Image.new("RGB", image.size, (255, 255, 255))
        flat.paste(image, mask=image.getchannel("A") if "A" in image.getbands() else None)
        image = flat
    out = io.BytesIO()
    pillow_format, options = _PILLOW_SAVES[fmt]
    image.save(out, pillow_format, quality=quality or floor_app.QUALITIES[fmt], **options)
    return out.getvalue()


#: Pillow's format name and options per output format, as thumbor saves (bench/prepare.py configures AVIF_SPEED).
_PILLOW_SAVES: dict[str, tuple[str, dict[str, Any]]] = {
    "jpg": ("JPEG", {"optimize": True}),
    "webp": ("WEBP", {}),
    "avif": ("AVIF", {"speed": 7}),
}


#: Renderers and the output formats each is measured on (Pillow: what thumbor's PIL engine is compared on).
RENDERERS: dict[str, tuple[Callable[..., bytes], tuple[str, ...]]] = {
    "sidecar": (sidecar_render, ("jpg", "webp", "avif", "png", "gif")),
    "vips-naive": (vips_naive, ("jpg", "webp", "avif", "png", "gif")),
}
if HAVE_PILLOW:
    RENDERERS["pillow-draft"] = (pillow_draft, ("jpg", "webp"))


@dataclass
class RenderResult:
    """Seconds per render (one per repeat), the output size at the default quality, SSIM of a q100 render."""

    seconds: list[float] = field(default_factory=list)
    bytes: int = 0
    ssim: float = 0.0


def render_times(sources: dict[str, bytes], repeats: int, fmt: str = "jpg") -> dict[tuple[str, str], RenderResult]:
    """Each renderer on each source, interleaved; quality judged on a q100 encode (the decode path, not q80)."""
    results: dict[tuple[str, str], RenderResult] = {}
    renderers = {name: renderer for name, (renderer, formats) in RENDERERS.items() if fmt in formats}
    for source, data in sources.items():
        references = References(data)
        for name, renderer in renderers.items():
            result = results[source, name] = RenderResult()
            result.bytes = len(renderer(data, fmt))  # also the first call, which pays for codec start-up
            result.ssim = references.score(renderer(data, fmt, 100))
        for _ in range(repeats):
            for name, renderer in renderers.items():
                started = time.perf_counter()
                renderer(data, fmt)
                results[source, name].seconds.append(time.perf_counter() - started)
    return results


@dataclass
class CostSplit:
    """One render taken apart, ms per call (median of interleaved calls, one core): the whole render, the
    original's decode alone at the DCT scale the sidecar picks, and the result's encode alone from pixels in memory.
    Pillow's draft decode alone (thumbor's engine) is 0 without Pillow."""

    shrink: int
    render_ms: float
    decode_ms: float
    encode_ms: float
    pillow_decode_ms: float


#: Operations of the miss table as (format, mode), for :func:`cost_split`.
SPLIT_OPERATIONS = {"fit-jpg": ("jpg", "fit"), "fill-webp": ("webp", "fill")}


def cost_split(data: bytes, operation: str, repeats: int) -> CostSplit:
    """What bounds a JPEG original's miss: its decode (which no resize or encoder setting shortens) and the encode."""
    fmt, mode = SPLIT_OPERATIONS[operation]
    header = pyvips.Image.new_from_buffer(data, "")
    long_side = max(header.width, header.height)
    scale = (min if mode == "fit" else max)(BOX[0] / header.width, BOX[1] / header.height)
    shrink = imaging._jpeg_shrink(long_side, round(long_side * scale))
    pixels = pyvips.Image.new_from_buffer(sidecar_render(data, "png", mode=mode), "").copy_memory()
    # The sidecar's encoders' settings (resize_sidecar.media.imaging): libvips at the default quality, no metadata.
    keep = pyvips.ForeignKeep.NONE
    encoders = {
        "jpg": lambda: pixels.jpegsave_buffer(Q=80, optimize_coding=True, keep=keep),
        "webp": lambda: pixels.webpsave_buffer(Q=80, keep=keep),
    }
    calls: dict[str, Callable[[], object]] = {
        "render": lambda: sidecar_render(data, fmt, mode=mode),
        "decode": lambda: pyvips.Image.jpegload_buffer(data, shrink=shrink, access="sequential").write_to_memory(),
        "encode": encoders[fmt],
    }
    if HAVE_PILLOW:
        calls["pillow"] = lambda: _pillow_drafted(data)[0].load()
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            seconds[name].append(time.perf_counter() - started)
    ms = {name: statistics.median(values) * 1000 for name, values in seconds.items()}
    return CostSplit(shrink, ms["render"], ms["decode"], ms["encode"], ms.get("pillow", 0.0))


def _pillow_drafted(data: bytes) -> tuple[Any, tuple[int, int]]:
    """A Pillow image of ``data`` set to decode at the DCT scale thumbor's engine asks for (not decoded yet), and
    the size of the fit into the box: thumbor drafts to that size, not the box's, so a 1920x1080 original fitted
    into 400x300 decodes at 1/4 (480x270), not at 1/2."""
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    scale = min(BOX[0] / image.width, BOX[1] / image.height)
    size = int(image.width * scale), int(image.height * scale)
    image.draft(None, size)
    return image, size


@dataclass
class MissProfile:
    """Where one in-process miss spends its time, against the floor app's render of the same derivative."""

    phases_ms: dict[str, float]
    floor_ms: float
    top: str


def miss_profile(key: str, data: bytes, repeats: int, fmt: str = "jpg") -> MissProfile:
    """Time the phases of ``Deriver.derive`` (local storage) by wrapping its collaborators, then cProfile it."""
    config_root = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    (config_root / key).parent.mkdir(parents=True, exist_ok=True)
    (config_root / key).write_bytes(data)
    config = settings(local_root=str(config_root))
    storage = LocalStorage(config_root)
    deriver = derive.Deriver(config, storage)
    spent: dict[str, float] = {}

    def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - started

        return wrapper

    # Wrapped on the instances and the module the deriver uses, inside this process only.
    storage.get = timed("storage get (derivative + original)", storage.get)  # type: ignore[method-assign]
    storage.put_if_absent = timed("storage put", storage.put_if_absent)  # type: ignore[method-assign]
    original_probe, original_render = imaging.probe, imaging.render
    imaging.probe = timed("probe (header)", original_probe)
    imaging.render = timed("render (decode, resize, encode)", original_render)
    paths = iter(
        format_path(key, DerivativeSpec(BOX[0], height), fmt, "bench-secret") for height in range(BOX[1], 4096)
    )
    source_path = config_root / key
    floor_seconds = []
    try:
        deriver.derive(next(paths))
        spent.clear()
        total = 0.0
        for _ in range(repeats):  # interleaved with the floor's render, so both see the same machine
            started = time.perf_counter()
            deriver.derive(next(paths))
            total += time.perf_counter() - started
            started = time.perf_counter()
            floor_app.render(source_path.read_bytes(), "fit", *BOX, fmt)
            floor_seconds.append(time.perf_counter() - started)
        phases = {name: seconds * 1000 / repeats for name, seconds in spent.items()}
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(repeats):
            deriver.derive(next(paths))
        profiler.disable()
    finally:
        imaging.probe, imaging.render = original_probe, original_render
        shutil.rmtree(config_root, ignore_errors=True)
    phases["everything else (signature, parsing, bookkeeping)"] = total * 1000 / repeats - sum(phases.values())
    phases["total"] = total * 1000 / repeats
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(12)
    return MissProfile(phases, statistics.mean(floor_seconds) * 1000, _trim_profile(text.getvalue()))


def _trim_profile(text: str) -> str:
    """pstats output from its column header on, file paths shortened to their last two parts."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
    return "\n".join(re.sub(r"/(?:[^/\s]+/)+([^/\s]+/[^/\s]+:)", r"\1", line) for line in lines[start:] if line.strip())


@dataclass
class BytesResult:
    """Output size at matched SSIM: thumbor's answer at its quality, the sidecar's at the quality that matches it."""

    peer_bytes: int
    peer_ssim: float
    quality: int
    sidecar_bytes: int
    sidecar_ssim: float
    default_bytes: int
    default_ssim: float

    @property
    def matched(self) -> bool:
        return abs(self.sidecar_ssim - self.peer_ssim) <= SSIM_TOLERANCE

    @property
    def ratio(self) -> float:
        return self.sidecar_bytes / self.peer_bytes


SSIM_TOLERANCE = 0.002


def bytes_at_matched_ssim(data: bytes, fmt: str, peer_output: bytes) -> BytesResult:
    """The sidecar's smallest output whose SSIM is at least the peer's minus the tolerance (binary search on q)."""
    references = References(data)
    peer_ssim = references.score(peer_output)
    scores: dict[int, tuple[int, float]] = {}

    def measure(quality: int) -> tuple[int, float]:
        if quality not in scores:
            body = sidecar_render(data, fmt, quality)
            scores[quality] = (len(body), references.score(body))
        return scores[quality]

    low, high = 1, 100
    while low < high:  # SSIM rises with quality: find the lowest quality within the tolerance below the peer
        middle = (low + high) // 2
        if measure(middle)[1] >= peer_ssim - SSIM_TOLERANCE:
            high = middle
        else:
            low = middle + 1
    size, score = measure(low)
    default = sidecar_render(data, fmt)
    return BytesResult(len(peer_output), peer_ssim, low, size, score, len(default), references.score(default))
