"""Image work with libvips: read an original's header (:func:`probe`) and make a derivative of it (:func:`render`).

The only module that imports pyvips. Untrusted libvips loaders (SVG, PDF, ImageMagick and the like) are blocked
before any image is read, and only the loaders named in the settings ever parse a header. A derivative is made by one
shrink-on-load decode (``thumbnail_buffer``) followed by the ordered :data:`STEPS`, then one encode with every
piece of metadata dropped.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

from resize_sidecar.errors import MalformedPathError, SourceTooLargeError, UndecodableImageError, UnsupportedImageError
from resize_sidecar.settings import Settings
from resize_sidecar.signing import DerivativeSpec

# libvips reads this once, when pyvips starts it (the import below); block_untrusted_set() also covers a process
# that imported pyvips before this module.
os.environ["VIPS_BLOCK_UNTRUSTED"] = "1"

import pyvips  # noqa: E402

pyvips.block_untrusted_set(True)
# Each original is rendered once per derivative and then served by nginx: cached operations would only hold memory.
pyvips.cache_set_max(0)

CONTENT_TYPES: dict[str, str] = {
    "jpg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "avif": "image/avif",
    "gif": "image/gif",
}

# Only these loaders have animations; heifload's pages are separate pictures of a collection, not frames.
_ANIMATED_LOADERS = ("gifload", "webpload")
_ANIMATED_FORMATS = ("gif", "webp")
_ALPHA_FORMATS = ("png", "webp", "avif", "gif")
# A box side that never binds (libvips' largest coordinate), for a thumbnail whose other side decides the scale.
_UNBOUNDED = 10_000_000
_WHITE = (255, 255, 255)
# Fractions of the spare width and height left of and above a fill crop, per gravity.
_GRAVITY = {
    "c": (0.5, 0.5),
    "n": (0.5, 0.0),
    "s": (0.5, 1.0),
    "e": (1.0, 0.5),
    "w": (0.0, 0.5),
    "ne": (1.0, 0.0),
    "nw": (0.0, 0.0),
    "se": (1.0, 1.0),
    "sw": (0.0, 1.0),
    "sm": (0.5, 0.5),
}
# AVIF (aom) encode time at quality 55, one thread, measured on libvips 8.18.7: a 400x267 derivative took 21, 50,
# 107 and 887 ms at efforts 0, 1, 2 and 4 (4 is libvips' default), for a PSNR within 0.2 dB of effort 4 at effort 2
# and 0.6 dB at effort 0; an 8.3 MP one took 0.7 s at effort 0 and 3.3 s at effort 2. Effort 2 up to 2 MP and
# effort 0 above keep even a 4096x4096 derivative near 1.5 s, well inside a 10 s transform budget.
_AVIF_EFFORT = 2
_AVIF_FAST_EFFORT = 0
_AVIF_FAST_ABOVE_PIXELS = 2_000_000


@dataclass(frozen=True)
class SourceInfo:
    """What an original's header says, read without decoding a pixel (see :func:`probe`)."""

    loader: str  # libvips loader name without suffix, e.g. "jpegload"
    width: int  # of one frame as stored (before EXIF orientation)
    height: int
    pages: int  # frames (1 for still images)
    orientation: int  # EXIF orientation 1..8 (1 when absent or invalid)
    has_alpha: bool
    # Only tagged originals are colour-managed: an sRGB-to-sRGB transform of an untagged one made a 1204x800 JPEG
    # to 400 px take 67 ms instead of 46. Without it (an info not made by probe) tagged colours are left as stored.
    has_icc: bool = False


@dataclass(frozen=True)
class Rendered:
    """An encoded derivative."""

    body: bytes
    content_type: str
    width: int
    height: int  # of one frame


@dataclass(frozen=True)
class _Job:
    """What every step needs besides the image and the spec."""

    fmt: str
    settings: Settings
    info: SourceInfo
    animated: bool
    # Width and height of the result (of one frame) for fill and pad; None for fit, whose size libvips decides.
    exact: tuple[int, int] | None


def probe(data: bytes, settings: Settings) -> SourceInfo:
    """Read an original's header, decoding no pixel, and check it against the allowed loaders and the pixel limit.

    An animation over ``max_frames`` or over the pixel budget is accepted: :func:`render` then uses its first frame.

    Raises:
        UnsupportedImageError: not an image format libvips knows (or empty), or its loader is not allowed.
        UndecodableImageError: the header of an allowed format is corrupt.
        SourceTooLargeError: one frame has more pixels than ``max_source_pixels``.
    """
    loader = _find_loader(data)
    if loader is None:
        raise UnsupportedImageError("not an image format libvips knows")
    name = loader.removesuffix("_buffer")
    if name not in settings.allowed_loaders:
        raise UnsupportedImageError(f"{name} originals are not allowed")
    try:
        header = pyvips.Operation.call(loader, data, access="sequential")
        orientation = header.get("orientation") if header.get_typeof("orientation") else 1
        info = SourceInfo(
            loader=name,
            width=header.width,
            height=header.get_page_height(),
            pages=header.get_n_pages(),
            orientation=orientation if 1 <= orientation <= 8 else 1,
            has_alpha=bool(header.hasalpha()),
            has_icc=header.get_typeof("icc-profile-data") != 0,
        )
    except pyvips.Error as error:
        raise UndecodableImageError(f"{name}: {_reason(error)}") from None
    _check_limits(info, settings)
    return info


def render(data: bytes, spec: DerivativeSpec, fmt: str, settings: Settings, info: SourceInfo | None = None) -> Rendered:
    """Make the derivative ``spec`` of an original in format ``fmt``: oriented, 8-bit sRGB, without metadata.

    ``info`` is :func:`probe`'s answer for the same ``data``, when the caller already has it (the header is then
    not read again). Animated GIF and WebP originals stay animated into gif and webp when within ``max_frames``
    and the pixel budget; every other case renders the first frame.

    Raises:
        UnsupportedImageError, UndecodableImageError, SourceTooLargeError: as :func:`probe`; undecodable also
            when the pixels turn out truncated or corrupt, or libvips cannot decode this variant (HEVC HEIC).
        MalformedPathError: ``fmt`` is not one of :data:`CONTENT_TYPES`.
    """
    if fmt not in CONTENT_TYPES:
        raise MalformedPathError(f"unknown format {fmt!r}")
    if info is None:
        info = probe(data, settings)
    else:
        _check_limits(info, settings)
    job = _Job(
        fmt=fmt,
        settings=settings,
        info=info,
        animated=_animates(spec, fmt, settings, info),
        exact=_exact_size(spec, info),
    )
    # Errors in the pixels only surface when libvips computes them, which may be during the encode.
    try:
        image = _load(data, spec, job)
        for step in STEPS:
            image = step(image, spec, job)
        body = _SAVERS[fmt](image, spec, job)
        width, height = image.width, image.get_page_height()
    except pyvips.Error as error:
        raise UndecodableImageError(f"{info.loader}: {_reason(error)}") from None
    return Rendered(body=body, content_type=CONTENT_TYPES[fmt], width=width, height=height)


def _find_loader(data: bytes) -> str | None:
    """The buffer loader libvips would pick for ``data`` (``jpegload_buffer``), found from its first bytes only.

    Sniffing first means a loader that is not allowed never parses a header: header parsers are where fuzzers
    find bugs. Blocked (untrusted) loaders are never picked.
    """
    found = pyvips.vips_lib.vips_foreign_find_load_buffer(data, len(data))
    if found == pyvips.ffi.NULL:
        # Drop the "not a known format" message libvips left behind, so it does not prefix a later error.
        pyvips.vips_lib.vips_error_clear()
        return None
    return str(pyvips.nickname_find(pyvips.type_from_name(pyvips.ffi.string(found).decode())))


def _check_limits(info: SourceInfo, settings: Settings) -> None:
    if info.width * info.height > settings.max_source_pixels:
        raise SourceTooLargeError(
            f"{info.width}x{info.height} pixels is over the limit of {settings.max_source_pixels}"
        )


def _upright_size(info: SourceInfo) -> tuple[int, int]:
    """Width and height of one frame once its EXIF orientation is applied."""
    if info.orientation >= 5:
        return info.height, info.width
    return info.width, info.height


def _exact_size(spec: DerivativeSpec, info: SourceInfo) -> tuple[int, int] | None:
    if spec.mode == "fit":
        return None
    # Fill and pad always have both sides (DerivativeSpec checks it).
    width, height = spec.width or 1, spec.height or 1
    if spec.mode == "pad" or _enlarges(spec):
        return width, height
    # The requested aspect ratio at the largest size the original gives without enlarging it.
    source_width, source_height = _upright_size(info)
    scale = min(1.0, source_width / width, source_height / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _enlarges(spec: DerivativeSpec) -> bool:
    # Full size is the original's size: "up" cannot enlarge it (it would otherwise grow to the output cap).
    return spec.upscale and not spec.full_size


def _fit_box(spec: DerivativeSpec, settings: Settings) -> tuple[int, int]:
    # A missing side, and full size, are bounded by the output cap (thumbnail would make a missing height the
    # width); explicit sides over the cap were refused before rendering.
    limit = settings.max_output_dimension
    return min(spec.width or limit, limit), min(spec.height or limit, limit)


def _animates(spec: DerivativeSpec, fmt: str, settings: Settings, info: SourceInfo) -> bool:
    if fmt not in _ANIMATED_FORMATS or info.loader not in _ANIMATED_LOADERS or info.pages == 1:
        return False
    return (
        info.pages <= settings.max_frames
        and _frame_pixels(spec, settings, info) * info.pages <= settings.max_source_pixels
    )


def _frame_pixels(spec: DerivativeSpec, settings: Settings, info: SourceInfo) -> int:
    """The most pixels one frame holds on the way: decoded, or made (enlarged or padded).

    The pixel budget counts both for animations: a small animation enlarged or padded to a large box, times its
    frames, would otherwise be a bomb of our own making.
    """
    width, height = _upright_size(info)
    most = width * height
    if spec.mode == "pad" or (spec.mode == "fill" and _enlarges(spec)):
        return max(most, (spec.width or 1) * (spec.height or 1))
    if spec.mode == "fit" and _enlarges(spec):
        box_width, box_height = _fit_box(spec, settings)
        scale = min(box_width / width, box_height / height)
        return max(most, math.ceil(width * scale) * math.ceil(height * scale))
    return most


def _load(data: bytes, spec: DerivativeSpec, job: _Job) -> pyvips.Image:
    """Decode once, shrinking on load, upright (thumbnail applies the EXIF orientation and drops the tag)."""
    if job.exact is None:
        width, height = _fit_box(spec, job.settings)
    elif spec.mode == "pad":
        width, height = job.exact
    else:
        # Cover the fill box: the side that binds sets the scale, the other overflows and the crop step trims it.
        width, height = job.exact
        source_width, source_height = _upright_size(job.info)
        if width * source_height >= height * source_width:
            height = _UNBOUNDED
        else:
            width = _UNBOUNDED
    # fail_on goes in the loader's option string: thumbnail_buffer accepts its own fail_on argument and ignores it
    # (libvips issue 5195), which would turn truncated originals into half-grey derivatives.
    loader_options = "fail_on=error,n=-1" if job.animated else "fail_on=error"
    options: dict[str, object] = {"height": height, "size": "both" if _enlarges(spec) else "down"}
    if job.info.has_icc:
        options["output_profile"] = "srgb"
    return pyvips.Image.thumbnail_buffer(data, width, option_string=loader_options, **options)


# Steps: each takes the image so far and returns the next one. Animations are one tall strip of frames
# (page-height), so anything that looks at neighbouring pixels or changes a frame's size works frame by frame.


def _to_srgb8(image: pyvips.Image, spec: DerivativeSpec, job: _Job) -> pyvips.Image:
    """8-bit sRGB, alpha kept, from 16-bit, 10-bit and grey sources (thumbnail has already converted CMYK)."""
    if image.interpretation == "srgb" and image.format == "uchar":
        return image
    return image.colourspace("srgb")


def _crop(image: pyvips.Image, spec: DerivativeSpec, job: _Job) -> pyvips.Image:
    """Fill: trim the overflowing side to exactly the box, where the gravity says."""
    if spec.mode != "fill" or job.exact is None:
        return image
    width, height = job.exact
    if spec.gravity == "sm" and not job.animated:
        # Attention looks at the whole image, which a sequential decode can only give once: keep the (small) shrunk
        # image in memory. Animations use the centre: a crop moving from frame to frame would shake.
        return image.copy_memory().smartcrop(width, height, interesting="attention")
    across, down = _GRAVITY[spec.gravity]

    def trim(frame: pyvips.Image) -> pyvips.Image:
        left = int((frame.width - width) * across)
        top = int((frame.height - height) * down)
        return frame.crop(left, top, width, height)

    return _each_frame(image, trim)


def _blur(image: pyvips.Image, spec: DerivativeSpec, job: _Job) -> pyvips.Image:
    """Gaussian blur of sigma ``blur / 10``; premultiplied, so transparent pixels lend no colour to their edges."""
    if spec.blur is None:
        return image
    sigma = spec.blur / 10

    def soften(frame: pyvips.Image) -> pyvips.Image:
        if frame.hasalpha():
            return frame.premultiply().gaussblur(sigma).unpremultiply().cast("uchar")
        return frame.gaussblur(sigma)

    return _each_frame(image, soften)


def _sharpen(image: pyvips.Image, spec: DerivativeSpec, job: _Job) -> pyvips.Image:
    """A mild unsharp mask (libvips' defaults), which restores some crispness lost to downscaling."""
    if not spec.sharpen:
        return image
    return _each_frame(image, lambda frame: frame.sharpen())


def _pad(image: pyvips.Image, spec: DerivativeSpec, job: _Job) -> pyvips.Image:
    """Pad: centre the fitted image on exactly the box.

    The padding is ``bg`` when given. Without it, formats with alpha get transparent padding, so the derivative
    sits on any page colour without a visible box, and JPEG gets white, the colour its alpha is flattened onto too.
    """
    if spec.mode != "pad" or job.exact is None:
        return image
    width, height = job.exact
    background: tuple[int, ...]
    if spec.background is None and job.fmt in _ALPHA_FORMATS:
        background = (*_WHITE, 0)
        if not image.hasalpha():
            image = image.bandjoin(255)
    else:
        background = _rgb(spec.background) if spec.background is not None else _WHITE
        if image.hasalpha():
            background = (*background, 255)

    def embed(frame: pyvips.Image) -> pyvips.Image:
        left, top = (width - frame.width) // 2, (height - frame.height) // 2
        return frame.embed(left, top, width, height, extend="background", background=list(background))

    return _each_frame(image, embed)


def _flatten(image: pyvips.Image, spec: DerivativeSpec, job: _Job) -> pyvips.Image:
    """JPEG has no alpha: blend onto ``bg`` (white by default). Other formats keep theirs."""
    if job.fmt != "jpg" or not image.hasalpha():
        return image
    background = _rgb(spec.background) if spec.background is not None else _WHITE
    return image.flatten(background=list(background))


Step = Callable[[pyvips.Image, DerivativeSpec, _Job], pyvips.Image]

#: The transform after the shrink-on-load decode, in order. Metadata is dropped by the encoders (keep=NONE).
STEPS: tuple[Step, ...] = (_to_srgb8, _crop, _blur, _sharpen, _pad, _flatten)


def _each_frame(image: pyvips.Image, transform: Callable[[pyvips.Image], pyvips.Image]) -> pyvips.Image:
    """Apply ``transform`` to every frame of an animation strip (or to the image, when it is one frame)."""
    page_height = image.get_page_height()
    if page_height == image.height:
        return transform(image)
    frames = [transform(image.crop(0, top, image.width, page_height)) for top in range(0, image.height, page_height)]
    strip = pyvips.Image.arrayjoin(frames, across=1).copy()
    strip.set_type(pyvips.GValue.gint_type, "page-height", frames[0].height)
    return strip


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return int(hex_colour[0:2], 16), int(hex_colour[2:4], 16), int(hex_colour[4:6], 16)


def _quality(spec: DerivativeSpec, job: _Job) -> int:
    return spec.quality or job.settings.quality_for(job.fmt)


# Encoders. keep=NONE drops EXIF (GPS included), XMP, IPTC, comments and the ICC profile: pixels are sRGB by now,
# which is what browsers assume of an untagged image. An animation's page height, delays and loop count are not
# metadata to libvips and survive. PNG and GIF are lossless here and take no quality.
_KEEP_NONE = pyvips.ForeignKeep.NONE


def _save_jpg(image: pyvips.Image, spec: DerivativeSpec, job: _Job) -> bytes:
    return bytes(image.jpegsave_buffer(Q=_quality(spec, job), optimize_coding=True, keep=_KEEP_NONE))


def _save_png(image: pyvips.Image, spec: DerivativeSpec, job: _Job) -> bytes:
    return bytes(image.pngsave_buffer(keep=_KEEP_NONE))


def _save_webp(image: pyvips.Image, spec: DerivativeSpec, job: _Job) -> bytes:
    return bytes(image.webpsave_buffer(Q=_quality(spec, job), keep=_KEEP_NONE))


def _save_avif(image: pyvips.Image, spec: DerivativeSpec, job: _Job) -> bytes:
    effort = _AVIF_EFFORT if image.width * image.height <= _AVIF_FAST_ABOVE_PIXELS else _AVIF_FAST_EFFORT
    return bytes(
        image.heifsave_buffer(Q=_quality(spec, job), compression="av1", bitdepth=8, effort=effort, keep=_KEEP_NONE)
    )


def _save_gif(image: pyvips.Image, spec: DerivativeSpec, job: _Job) -> bytes:
    return bytes(image.gifsave_buffer(keep=_KEEP_NONE))


_SAVERS: dict[str, Callable[[pyvips.Image, DerivativeSpec, _Job], bytes]] = {
    "jpg": _save_jpg,
    "png": _save_png,
    "webp": _save_webp,
    "avif": _save_avif,
    "gif": _save_gif,
}


def _reason(error: pyvips.Error) -> str:
    # The message is "unable to call <operation>"; the detail starts with the loader's own words.
    lines = [line.strip() for line in f"{error.detail or ''}\n{error.message}".splitlines() if line.strip()]
    return lines[0] if lines else "libvips error"
