"""Image work with libvips: read an original's header (:func:`probe`) and make a derivative of it (:func:`render`).

pyvips is set up here, also for :mod:`resize_sidecar.media.originals` (the only other module that imports it, and it
imports this one): untrusted libvips loaders (SVG, PDF, ImageMagick and the like) are blocked before any image is
read, and only the loaders named in the settings ever parse a header. A derivative is made by one shrink-on-load
decode (a JPEG at a reduced DCT scale, then ``thumbnail_image``; other formats ``thumbnail_source``) followed by the
ordered :data:`STEPS`, then one encode with every piece of metadata dropped. :func:`probe` and :func:`render` read
the original in place (a memory ``Source``) rather than copy it into libvips. HEVC-coded HEIF (pillow-heif) and BMP
(Pillow), which the libvips wheel cannot decode, are decoded whole by :func:`decode_whole` and handed to libvips.
"""

from __future__ import annotations

import heapq
import io
import itertools
import math
import os
import re
import struct
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace

from PIL import Image as PillowImage

from resize_sidecar.core.errors import (
    InterlacedTooLargeError,
    MalformedPathError,
    SourceTooLargeError,
    TransformTimeoutError,
    UndecodableImageError,
    UnsupportedImageError,
)
from resize_sidecar.core.formats import BY_NAME, FormatName
from resize_sidecar.core.settings import ImageLimits
from resize_sidecar.core.signing import PER_MILLE, DerivativeSpec

# libvips reads this once, when pyvips starts it (the import below); block_untrusted_set() also covers a process
# that imported pyvips before this module.
os.environ["VIPS_BLOCK_UNTRUSTED"] = "1"

import pyvips  # noqa: E402

try:
    import pillow_heif

    #: Whether HEVC-coded HEIF (HEIC) can be decoded: pillow-heif's wheel is GPL-2.0 as a whole (it bundles the x265
    #: encoder), so an install may leave it out, and HEIC is then refused.
    HEVC_DECODER = True
except ImportError:
    HEVC_DECODER = False

pyvips.block_untrusted_set(True)
# Each original is rendered once per derivative and then served by nginx: cached operations would only hold memory.
pyvips.cache_set_max(0)

#: The format an original of each allowed loader is stored in, and its derivatives default to.
FORMAT_OF_LOADER: dict[str, FormatName] = {
    "jpegload": "jpg",
    "uhdrload": "jpg",
    "pngload": "png",
    "webpload": "webp",
    "gifload": "gif",
    "heifload": "avif",
    "tiffload": "png",
    "bmpload": "png",
}
#: An original's own type by the loader that reads it (HEIF's two kinds are told apart by :func:`original_type`).
_TYPE_OF_LOADER = {
    "jpegload": "image/jpeg",
    "uhdrload": "image/jpeg",
    "pngload": "image/png",
    "webpload": "image/webp",
    "gifload": "image/gif",
    "tiffload": "image/tiff",
    "bmpload": "image/bmp",
}
# The major brands of AVIF files, at offset 8 of the ISO-BMFF ftyp box; any other HEIF brand is HEIC.
_AVIF_BRANDS = (b"avif", b"avis")
#: Loaders that read what libvips has no trusted loader for, here Pillow's BMP reader; libvips' own BMP reading goes
#: through ImageMagick, which is blocked.
PILLOW_LOADERS = {"bmpload": "BMP"}
# Decoded with pillow-heif (libheif with libde265): pyvips-binary's libheif has no HEVC decoder.
_HEVC = "hevc"
# Header fields that are metadata, copied onto pixels decoded outside libvips so they are colour-managed and, for
# stored originals, keep their EXIF as libvips-decoded ones do.
_METADATA_FIELDS = ("icc-profile-data", "exif-data", "xmp-data")

#: The loaders whose pages are frames of an animation; heifload's pages are separate pictures of a collection.
ANIMATED_LOADERS = ("gifload", "webpload")
# A box side that never binds (libvips' largest coordinate), for a thumbnail whose other side decides the scale.
_UNBOUNDED = 10_000_000
#: The usual page colour: what alpha is flattened onto, and jpg's padding, when no ``bg`` is given.
WHITE = (255, 255, 255)
# pyvips reads libvips' error buffer into its Error and clears it, but when that text is not UTF-8 (a corrupt ICC
# profile can put raw bytes in it) it raises UnicodeDecodeError instead and leaves the buffer full, which would
# turn every later libvips error in this worker into the same failure.
#: What a failed libvips call raises; pass it to :func:`reason`, which also clears the error buffer.
LIBVIPS_ERRORS = (pyvips.Error, UnicodeDecodeError)
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
    "face": (0.5, 0.5),
}
# JPEG shrink-on-load (libjpeg's DCT scaling to 1/2, 1/4 or 1/8): decoded size ÷ result size left for the resize.
# The margins are the smallest that keep every render's SSIM at least that of Pillow's draft (thumbor's decode,
# which leaves 1) on real photos and the benchmark's originals, so that a miss decodes no more than thumbor's does
# for the same quality (bench/jpeg_shrink.py, bench/results/jpeg_shrink.md). Small results need more: libvips
# rounds a scaled side down and the resize stretches what was decoded over the whole result, a shift under one
# decoded pixel that shows where a decoded pixel is large against a result's.
_JPEG_MARGIN = 1.0
_JPEG_SMALL_MARGIN = 2.5
#: Results (longer side) under this many pixels keep the small-result margin.
_JPEG_SMALL_RESULT = 150
# AVIF (aom) encode time at quality 55, one thread, measured on libvips 8.18.7: a 400x267 derivative took 21, 50,
# 107 and 887 ms at efforts 0, 1, 2 and 4 (4 is libvips' default), for a PSNR within 0.2 dB of effort 4 at effort 2
# and 0.6 dB at effort 0; an 8.3 MP one took 0.7 s at effort 0 and 3.3 s at effort 2. Effort 2 up to 2 MP and
# effort 0 above keep even a 4096x4096 derivative near 1.5 s, well inside a 10 s transform budget.
_AVIF_EFFORT = 2
_AVIF_FAST_EFFORT = 0
_AVIF_FAST_ABOVE_PIXELS = 2_000_000
# GIF frames are quantised (libimagequant) in one pass that libvips cannot stop at the transform deadline. CPU time
# measured on libvips 8.18.7, one thread: a 1800x1200 photo took 3.1 s at libvips' default effort, 7, and 1.3 s at
# effort 1 (35 instead of 38 dB PSNR); 4096x4096 took 12.6 s and 7.2 s, and noise that size 39 s and 13 s; frames up
# to 800x533 take at most 1.1 s at effort 7. Larger frames are quantised at effort 1.
_GIF_EFFORT = 7
_GIF_FAST_EFFORT = 1
_GIF_FAST_ABOVE_PIXELS = 500_000


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
    # Progressive JPEG or interlaced PNG: libvips decodes these whole, into memory, before the first strip.
    interlaced: bool = False
    # A JPEG's scans (0 for other formats), counted up to one more than MAX_JPEG_SCAN_PIXELS allows: libjpeg
    # passes over the pixels once per scan.
    scans: int = 0
    # A lossless (VP8L) WebP, which libwebp decodes whole where lossy WebP is decoded in rows.
    lossless: bool = False
    # Who decodes the pixels: "libvips", "libheif" (pillow-heif, for HEVC-coded HEIF) or "pillow" (PILLOW_LOADERS).
    decoder: str = "libvips"


@dataclass(frozen=True)
class WholeDecode:
    """A kind of original that libvips decodes whole, into memory, before the first strip, with its pixel limit."""

    kind: str  # as a refusal names it
    loader: str
    setting: str  # the ImageLimits field (and setting) of its pixel limit
    applies: Callable[[SourceInfo], bool]
    error: type[SourceTooLargeError] = SourceTooLargeError


# Peak RSS of one decode to a 400 px derivative, per megapixel, measured with libvips 8.18.7 (bench/hostile.py,
# memory_per_megapixel): AVIF 15.6 MB, GIF 5.6, interlaced PNG 4.2, lossless WebP 4.0, progressive JPEG 3.3, against
# 0.5 for a baseline JPEG, 0.3 for lossy WebP and 1.8 for a PNG, which are decoded strip by strip. HEIC (pillow-heif
# 1.8.1, libheif 1.23.6): 5.1 MB 8-bit, 9.4 MB 10-bit; BMP (Pillow 13) 13.4 MB, and an RLE8 BMP of one-pixel runs
# 0.35 to 0.42 CPU seconds a megapixel in Pillow's Python decoder; TIFF 1.8 to 2.0 MB in strips of a few rows,
# 7.1 MB as one deflate tile. The limits keep one decode near or under 256 MB (the interlaced one: 60 MP at 4.2 MB),
# and a BMP's decode, which the deadline cannot stop, near 7 s; GIF, whose frames are decoded whole too, stays
# within MAX_SOURCE_PIXELS (285 MB at 50 MP).
#: Kinds of original decoded whole, each refused from its header over its own pixel limit.
WHOLE_DECODES: tuple[WholeDecode, ...] = (
    WholeDecode("progressive JPEG", "jpegload", "max_interlaced_pixels", lambda info: info.interlaced,
                InterlacedTooLargeError),
    WholeDecode("progressive JPEG", "uhdrload", "max_interlaced_pixels", lambda info: info.interlaced,
                InterlacedTooLargeError),
    WholeDecode("interlaced PNG", "pngload", "max_interlaced_pixels", lambda info: info.interlaced,
                InterlacedTooLargeError),
    WholeDecode("HEIF or AVIF", "heifload", "max_heif_pixels", lambda info: True),
    WholeDecode("lossless WebP", "webpload", "max_lossless_webp_pixels", lambda info: info.lossless),
    WholeDecode("TIFF", "tiffload", "max_tiff_pixels", lambda info: True),
    WholeDecode("BMP", "bmpload", "max_bmp_pixels", lambda info: True),
)  # fmt: skip
_JPEG_LOADERS = ("jpegload", "uhdrload")
# Where entropy-coded data ends: 0xFF followed by neither a stuffed 0x00, a restart marker nor 0xFF (a fill byte:
# the marker is at the last 0xFF of a run). A class of what may follow, without repeats, searches 25 MB in ~20 ms.
_JPEG_MARKER = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")
# Markers without a length: TEM and the restart markers.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_JPEG_SOS, _JPEG_EOI = 0xDA, 0xD9
# Start-of-frame markers (0xC4, 0xC8 and 0xCC among them are not), and those of the sequential DCT pictures libjpeg
# decodes: baseline, extended and arithmetic-coded.
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_SEQUENTIAL_FRAMES = frozenset({0xC0, 0xC1, 0xC9})
# A scan of a small picture still costs its set-up: 0.6 us measured, what about 4,500 pixels of an end-of-band scan
# cost (0.13 ns each).
_SCAN_FLOOR_PIXELS = 65_536


@dataclass(frozen=True)
class Rendered:
    """An encoded derivative."""

    body: bytes
    content_type: str
    width: int
    height: int  # of one frame


@dataclass(frozen=True)
class FaceBox:
    """Where a face is in an original, in fractions of its upright width and height."""

    left: float
    top: float
    width: float
    height: float


@dataclass(frozen=True)
class _Job:
    """What every step needs besides the image and the spec."""

    fmt: str
    limits: ImageLimits
    info: SourceInfo
    animated: bool
    # Width and height of the result (of one frame) for fill and pad; None for fit, whose size libvips decides.
    exact: tuple[int, int] | None
    deadline: Deadline
    # The faces in the original, largest first (:mod:`resize_sidecar.media.faces`), for the gravity "face".
    faces: tuple[FaceBox, ...] = ()


class Deadline:
    """The transform deadline, checked between steps and enforced inside libvips while pixels are computed.

    libvips computes pixels only when an image is written out (or copied to memory), strip by strip, and stops with
    an error at the next strip once the kill flag of the image being computed is set (not that of the images it is
    made from): :meth:`watch` the image about to be computed, and the process's watchdog thread sets its flag when
    the deadline passes. No Python runs per strip: libvips' ``eval`` callbacks, one per strip, each waited for the
    GIL that the worker's other threads hold (without them, served 1080p misses through 2 workers of 4 threads came
    1.02 to 1.03 times as fast in three side-by-side runs; docs/design.md). Measured with libvips 8.18.7 (7000x5000
    noise JPEG to ``3000x-sharp``, 2 busy cores): stopped 110 to 170 ms after the deadline into jpg, png, webp and
    avif. Work inside one libvips call that stops at no strip runs to its end: a header, the decode of a kind
    decoded whole (:data:`WHOLE_DECODES`; a progressive JPEG's every scan, in libjpeg, which libvips gives no
    progress monitor), the AVIF and WebP encoders' final passes, a GIF frame's quantisation. The limits checked from
    the header and the encoder efforts bound those. (gunicorn's timeout does not: a threaded worker keeps reporting
    to the arbiter while one thread is busy.)
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.expired = False
        # Held as long as the deadline is: the watchdog holds the deadline only weakly, so a finished transform's
        # images are freed with it, not when its deadline would have passed.
        self._watched: list[pyvips.Image] = []

    def check(self) -> None:
        """Return while there is time left.

        Raises:
            TransformTimeoutError: the deadline has passed.
        """
        if time.monotonic() >= self.end:
            self.expired = True
        if self.expired:
            raise self.error()

    def error(self) -> TransformTimeoutError:
        return TransformTimeoutError(f"the transform took more than {self.seconds:g} s and was stopped")

    def watch(self, image: pyvips.Image) -> pyvips.Image:
        """``image``, whose computation libvips stops at the deadline."""
        if not self._watched:
            _watchdog.add(self)
        self._watched.append(image)
        if self.expired:
            image.set_kill(True)  # passed while the images before it were computed
        return image

    def expire(self) -> None:
        """Stop every watched computation (the watchdog calls this when the deadline passes); render() raises once
        libvips returns its error."""
        self.expired = True
        for image in tuple(self._watched):
            image.set_kill(True)


class _Watchdog:
    """One thread per process that expires each watched :class:`Deadline` when it passes."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, weakref.ref[Deadline]]] = []
        self._order = itertools.count()  # breaks ties between equal ends: deadlines do not compare
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, deadline: Deadline) -> None:
        with self._changed:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="transform-deadlines", daemon=True)
                self._thread.start()
            entry = (deadline.end, next(self._order), weakref.ref(deadline))
            heapq.heappush(self._due, entry)
            # Deadlines of one length come due in the order they are added: the thread sleeps on, unless this one
            # is the first due.
            if self._due[0] is entry:
                self._changed.notify()

    def _run(self) -> None:
        with self._changed:
            while True:
                now = time.monotonic()
                # Deadlines of finished transforms are freed (their references are dead): dropped without a wait,
                # so that the thread wakes only when a transform still running may have to be stopped.
                while self._due and (self._due[0][0] <= now or self._due[0][2]() is None):
                    deadline = heapq.heappop(self._due)[2]()
                    if deadline is not None:
                        deadline.expire()
                self._changed.wait(self._due[0][0] - now if self._due else None)


_watchdog = _Watchdog()


def _new_watchdog() -> None:
    # A forked child (a gunicorn worker) has none of its parent's threads.
    global _watchdog
    _watchdog = _Watchdog()


os.register_at_fork(after_in_child=_new_watchdog)


def libvips_version() -> str:
    """The version of the libvips this process renders with, e.g. ``8.18.7``."""
    return ".".join(str(pyvips.version(part)) for part in range(3))


def heic_decoder() -> str:
    """What decodes HEVC-coded HEIF here, with versions, e.g. ``pillow-heif 1.8.1, libheif 1.23.6, libde265 ...``."""
    decoders = ", ".join(pillow_heif.libheif_info()["decoders"].values())
    return f"pillow-heif {pillow_heif.__version__}, libheif {pillow_heif.libheif_version()}, {decoders}"


def set_render_threads(count: int) -> None:
    """Give each image's pipeline in this process ``count`` libvips threads from now on (``VIPS_CONCURRENCY`` is read
    only when libvips starts, which importing this module does)."""
    pyvips.concurrency_set(count)


def original_type(data: bytes, info: SourceInfo) -> str:
    """The Content-Type of an original as it is stored: its own format's, not the format its derivatives default to."""
    if info.loader == "heifload":
        return "image/avif" if data[8:12] in _AVIF_BRANDS else "image/heic"
    return _TYPE_OF_LOADER[info.loader]


def probe(data: bytes, limits: ImageLimits) -> SourceInfo:
    """Read an original's header, decoding no pixel, and check it against the allowed loaders and the pixel limit.

    An animation over ``max_frames`` or over the pixel budget is accepted: :func:`render` then uses its first frame.

    Raises:
        UnsupportedImageError: not an image format libvips knows (or empty), or its loader is not allowed.
        UndecodableImageError: the header of an allowed format is corrupt.
        SourceTooLargeError: one frame has more pixels than ``max_source_pixels``, a kind of original decoded
            whole (:data:`WHOLE_DECODES`) more than its own limit, or a JPEG's scans times pixels are over
            ``max_jpeg_scan_pixels``.
        InterlacedTooLargeError: a progressive or interlaced frame has more pixels than ``max_interlaced_pixels``.
    """
    loader = _find_loader(data)
    if loader is None:
        raise UnsupportedImageError("not an image format libvips knows")
    name = loader.removesuffix("_buffer")
    if name not in limits.allowed_loaders:
        raise UnsupportedImageError(f"{name} originals are not allowed")
    info = _pillow_header(data, name) if name in PILLOW_LOADERS else _libvips_header(data, name, limits)
    _check_limits(info, limits)
    return info


def _libvips_header(data: bytes, name: str, limits: ImageLimits) -> SourceInfo:
    try:
        # A source reads the bytes in place, where the buffer loader would copy the whole original first.
        header = pyvips.Operation.call(f"{name}_source", pyvips.Source.new_from_memory(data), access="sequential")
        orientation = header.get("orientation") if header.get_typeof("orientation") else 1
        info = SourceInfo(
            loader=name,
            width=header.width,
            height=header.get_page_height(),
            pages=header.get_n_pages(),
            orientation=orientation if 1 <= orientation <= 8 else 1,
            has_alpha=bool(header.hasalpha()),
            has_icc=header.get_typeof("icc-profile-data") != 0,
            interlaced=bool(header.get_typeof("interlaced") and header.get("interlaced")),
            scans=jpeg_scans(data, _most_scans(header.width * header.height, limits)) if name in _JPEG_LOADERS else 0,
            lossless=name == "webpload" and _webp_lossless(data),
        )
    except LIBVIPS_ERRORS as error:
        raise UndecodableImageError(f"{name}: {reason(error)}") from None
    if name == "heifload" and _field(header, "heif-compression") == _HEVC:
        if not HEVC_DECODER:
            raise UnsupportedImageError("HEVC-coded HEIF (HEIC) needs pillow-heif, which is not installed")
        # libheif has turned the picture by its irot and imir boxes; an EXIF orientation must then be ignored (MIAF).
        info = replace(info, decoder="libheif", orientation=1)
    return info


def _pillow_header(data: bytes, name: str) -> SourceInfo:
    try:
        with _pillow_open(data, name) as picture:
            return SourceInfo(
                loader=name,
                width=picture.width,
                height=picture.height,
                pages=1,
                orientation=1,
                has_alpha=_pillow_alpha(picture),
                has_icc=bool(picture.info.get("icc_profile")),
                decoder="pillow",
            )
    except PillowImage.DecompressionBombError as error:
        # Pillow's own limit, twice its MAX_IMAGE_PIXELS (179 MP), binds only where the loader's limit is set higher.
        setting = next(whole.setting for whole in WHOLE_DECODES if whole.loader == name)
        raise SourceTooLargeError(f"{name}: {error} ({setting.upper()} allows more than Pillow reads)") from None
    except _PILLOW_ERRORS as error:
        raise UndecodableImageError(f"{name}: {error}") from None


# What Pillow raises for a corrupt or truncated file.
_PILLOW_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error)
# What pillow-heif raises for a corrupt file, or one libheif refuses.
_LIBHEIF_ERRORS = (OSError, ValueError, RuntimeError, EOFError)


def _pillow_open(data: bytes, name: str) -> PillowImage.Image:
    with warnings.catch_warnings():
        # Pillow warns from its own pixel limit; ours are checked from the header instead.
        warnings.simplefilter("ignore", PillowImage.DecompressionBombWarning)
        return PillowImage.open(io.BytesIO(data), formats=[PILLOW_LOADERS[name]])


def _pillow_alpha(picture: PillowImage.Image) -> bool:
    return picture.mode in ("RGBA", "LA", "PA") or "transparency" in picture.info


def _field(image: pyvips.Image, name: str) -> object:
    return image.get(name) if image.get_typeof(name) else None


def load(data: bytes, info: SourceInfo, **options: object) -> pyvips.Image:
    """An original as an image of every page ``options`` ask libvips' loader for (``n``, ``access``, ``fail_on``),
    computed when written out; the first picture, whole, when libvips does not decode it (:func:`decode_whole`)."""
    if info.decoder != "libvips":
        return decode_whole(data, info)
    return pyvips.Operation.call(f"{info.loader}_buffer", data, **options)


def decode_all(data: bytes, info: SourceInfo, limits: ImageLimits) -> None:
    """Decode every pixel of an original, every frame of an animation, keeping none, within ``transform_timeout``:
    what is corrupt or truncated only in its pixels is found, as a miss or an upload would find it.

    Raises:
        UndecodableImageError: the pixels are truncated or corrupt.
        TransformTimeoutError: decoding ran out of time.
    """
    deadline = Deadline(limits.transform_timeout)
    pages = {"n": -1} if info.loader in ANIMATED_LOADERS and info.pages > 1 else {}
    try:
        deadline.watch(load(data, info, fail_on="error", access="sequential", **pages)).avg()
    except LIBVIPS_ERRORS as error:
        if deadline.expired:
            raise deadline.error() from None
        raise UndecodableImageError(f"{info.loader}: {reason(error)}") from None


def decode_whole(data: bytes, info: SourceInfo) -> pyvips.Image:
    """The first picture of an original that libvips does not decode itself (``info.decoder``), decoded whole into
    memory, upright, with its colour profile and metadata, as libvips' own loaders give it.

    Raises:
        UndecodableImageError: the pixels are truncated or corrupt.
    """
    try:
        if info.decoder == "libheif":
            return _decode_hevc(data, info)
        return _decode_pillow(data, info)
    except (*_PILLOW_ERRORS, *_LIBHEIF_ERRORS) as error:
        raise UndecodableImageError(f"{info.loader}: {error}") from None


def _decode_hevc(data: bytes, info: SourceInfo) -> pyvips.Image:
    # libheif applies the irot and imir boxes by default; 10- and 12-bit pictures come as 16-bit, full range.
    heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=False)
    # The limits were checked against libvips' reading of the header: decode only the picture they were checked on.
    if heif.size != (info.width, info.height):
        raise ValueError(f"pillow-heif reads a {heif.size[0]}x{heif.size[1]} picture where libvips read another")
    deep = heif.mode.endswith(";16")
    bands = 4 if heif.has_alpha else 3
    if heif.stride != heif.size[0] * bands * (2 if deep else 1):
        raise ValueError(f"libheif gave rows of {heif.stride} bytes for {heif.size[0]} pixels")
    image = pyvips.Image.new_from_memory(heif.data, *heif.size, bands, "ushort" if deep else "uchar")
    # The pixels belong to the decoded picture, not to the view of them that data is: keep the picture alive as long
    # as the image and every image made from it (pyvips passes these references on), rather than copy them.
    image._references.append(heif)
    image = image.copy(interpretation="rgb16" if deep else "srgb")
    header = pyvips.Image.heifload_buffer(data)
    for name in header.get_fields():
        if name in _METADATA_FIELDS or name.startswith("exif-ifd"):
            image.set_type(header.get_typeof(name), name, header.get(name))
    # Stored again, its EXIF must not turn the upright pixels a second time.
    image.set_type(pyvips.GValue.gint_type, "orientation", 1)
    return image


def _decode_pillow(data: bytes, info: SourceInfo) -> pyvips.Image:
    with _pillow_open(data, info.loader) as picture:
        mode = "RGBA" if info.has_alpha else "RGB"
        pixels = picture.convert(mode)
        image = pyvips.Image.new_from_memory(pixels.tobytes(), picture.width, picture.height, len(mode), "uchar")
        image = image.copy(interpretation="srgb")
        profile = picture.info.get("icc_profile")
        if profile:
            image.set_type(pyvips.GValue.blob_type, "icc-profile-data", profile)
    return image


def render(
    data: bytes,
    spec: DerivativeSpec,
    fmt: str,
    limits: ImageLimits,
    info: SourceInfo | None = None,
    faces: tuple[FaceBox, ...] = (),
) -> Rendered:
    """Make the derivative ``spec`` of an original in format ``fmt``: oriented, 8-bit sRGB, without metadata.

    ``info`` is :func:`probe`'s answer for the same ``data``, when the caller already has it (the header is then
    not read again). ``faces`` are the faces found in the original, largest first, which a fill with the gravity
    "face" is placed around (without any, it crops as "sm" does).

    Animated GIF and WebP originals stay animated into gif and webp when within ``max_frames`` and the pixel
    budget; every other case renders the first frame.

    The whole transform runs within ``transform_timeout`` seconds, or is stopped.

    Raises:
        UnsupportedImageError, UndecodableImageError, SourceTooLargeError: as :func:`probe`; undecodable also
            when the pixels turn out truncated or corrupt, or libvips cannot decode this variant (HEVC HEIC).
        MalformedPathError: ``fmt`` is not an output format (:data:`~resize_sidecar.core.formats.FORMATS`).
        TransformTimeoutError: the transform ran out of time.
    """
    target = BY_NAME.get(fmt)
    if target is None:
        raise MalformedPathError(f"unknown format {fmt!r}")
    if info is None:
        info = probe(data, limits)
    else:
        _check_limits(info, limits)
    job = _Job(
        fmt=fmt,
        limits=limits,
        info=info,
        animated=_animates(spec, fmt, limits, info),
        exact=_exact_size(spec, info),
        deadline=Deadline(limits.transform_timeout),
        faces=faces,
    )
    # Errors in the pixels only surface when libvips computes them, which may be during the encode.
    try:
        image = _load(data, spec, job)
        for step in STEPS:
            job.deadline.check()
            image = step(image, spec, job)
        job.deadline.check()
        body = _SAVERS[fmt](job.deadline.watch(image), spec, job)
        width, height = image.width, image.get_page_height()
    except LIBVIPS_ERRORS as error:
        if job.deadline.expired:
            raise job.deadline.error() from None
        raise UndecodableImageError(f"{info.loader}: {reason(error)}") from None
    return Rendered(body=body, content_type=target.content_type, width=width, height=height)


def _find_loader(data: bytes) -> str | None:
    """The buffer loader libvips would pick for ``data`` (``jpegload_buffer``), found from its first bytes only.

    Sniffing first means a loader that is not allowed never parses a header: header parsers are where fuzzers
    find bugs. Blocked (untrusted) loaders are never picked.
    """
    found = pyvips.vips_lib.vips_foreign_find_load_buffer(data, len(data))
    if found == pyvips.ffi.NULL:
        # Drop the "not a known format" message libvips left behind, so it does not prefix a later error.
        pyvips.vips_lib.vips_error_clear()
        return "bmpload" if data[:2] == b"BM" else None
    return str(pyvips.nickname_find(pyvips.type_from_name(pyvips.ffi.string(found).decode())))


def jpeg_scans(data: bytes, most: int = sys.maxsize) -> int:
    """How many scans libjpeg reads in a JPEG's first picture, found from its segments without decoding a pixel;
    counting stops once past ``most`` (a flood's scans are a Python loop each).

    Segments are skipped by their lengths (an EXIF thumbnail's scans are inside one), entropy-coded data up to its
    next marker, and the count stops at the end-of-image marker, where libjpeg stops reading (a second picture
    after it, such as a gain map, is not decoded). From the first byte that is not where a marker should be, every
    scan marker of the rest is counted: never fewer scans than libjpeg can find, however the bytes are arranged.

    A sequential picture whose first scan holds every component is one scan: libjpeg then expects the end of the
    image and reads no further, so its entropy-coded data is not searched (most camera photos; the search is a few
    milliseconds on a 24 MP original).
    """
    # After the start-of-image marker. libjpeg reads the first frame header only (a second one is an error):
    # ``components`` is its count when it is sequential, -1 when it is not, None before it.
    scans, at, components = 0, 2, None
    while scans <= most:
        if at + 4 > len(data) or data[at] != 0xFF:
            return scans + data.count(b"\xff\xda", at)
        marker = data[at + 1]
        if marker == 0xFF:
            at += 1  # a fill byte
        elif marker in _JPEG_STANDALONE:
            at += 2
        elif marker == _JPEG_EOI:
            break
        else:
            segment, at = at, at + 2 + struct.unpack_from(">H", data, at + 2)[0]
            if components is None and marker in _JPEG_FRAMES:
                sequential = marker in _JPEG_SEQUENTIAL_FRAMES and segment + 9 < len(data)
                components = data[segment + 9] if sequential else -1
            if marker == _JPEG_SOS:
                scans += 1
                if scans == 1 and segment + 4 < len(data) and data[segment + 4] == components:
                    return scans
                found = _JPEG_MARKER.search(data, at)
                if found is None:
                    break
                at = found.start()
    return scans


def _webp_lossless(data: bytes) -> bool:
    """Whether a WebP's picture is coded lossless (a VP8L chunk), from its RIFF chunks."""
    at = 12  # after "RIFF", the size and "WEBP"
    while at + 8 <= len(data):
        kind, size = data[at : at + 4], struct.unpack_from("<I", data, at + 4)[0]
        if kind in (b"VP8 ", b"VP8L"):
            return kind == b"VP8L"
        if kind == b"ANMF":
            at += 8 + 16  # an animation frame's own header, then its chunks
            continue
        at += 8 + size + (size & 1)
    return False


def _check_limits(info: SourceInfo, limits: ImageLimits) -> None:
    pixels = info.width * info.height
    if pixels > limits.max_source_pixels:
        raise SourceTooLargeError(
            f"{info.width}x{info.height} pixels is over the limit of {limits.max_source_pixels} (MAX_SOURCE_PIXELS)"
        )
    for whole in WHOLE_DECODES:
        limit = getattr(limits, whole.setting)
        if info.loader == whole.loader and whole.applies(info) and pixels > limit:
            raise whole.error(
                f"a {whole.kind} of {info.width}x{info.height} pixels is decoded whole, and is over the limit of "
                f"{limit} pixels ({whole.setting.upper()})"
            )
    most = _most_scans(pixels, limits)
    if info.scans > most:
        raise SourceTooLargeError(
            f"a JPEG of {info.width}x{info.height} pixels has more than {most} scans, each a pass over its pixels: "
            f"over the limit of {limits.max_jpeg_scan_pixels} pixels decoded (MAX_JPEG_SCAN_PIXELS)"
        )


def _most_scans(pixels: int, limits: ImageLimits) -> int:
    """The most scans a JPEG of ``pixels`` may have within ``max_jpeg_scan_pixels``."""
    return limits.max_jpeg_scan_pixels // max(pixels, _SCAN_FLOOR_PIXELS)


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
    source_width, source_height = _framed_size(spec, info)
    scale = min(1.0, source_width / width, source_height / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _framed_size(spec: DerivativeSpec, info: SourceInfo) -> tuple[int, int]:
    """Width and height of one frame upright, cut to the spec's crop and turned: what the box is fitted to."""
    width, height = _upright_size(info)
    if spec.crop is not None:
        width, height = _crop_box(spec.crop, width, height)[2:]
    return (height, width) if spec.rotate in (90, 270) else (width, height)


def _crop_box(crop: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int]:
    """A per-mille region of a ``width`` x ``height`` picture in whole pixels (left, top, width, height): the
    pixels it touches, so never empty. The same per-mille region of a picture decoded smaller is the same part."""
    x, y, region_width, region_height = crop
    left, top = x * width // PER_MILLE, y * height // PER_MILLE
    right, bottom = -(-(x + region_width) * width // PER_MILLE), -(-(y + region_height) * height // PER_MILLE)
    return left, top, right - left, bottom - top


def _stored_crop(crop: tuple[int, int, int, int], orientation: int) -> tuple[int, int, int, int]:
    """A crop of the upright picture as the same region of the pixels as stored, before the EXIF ``orientation``
    turns them (per-mille both): the crop is then cut before the decode is resized and turned upright."""
    x, y, width, height = crop
    left, right, top, bottom = x, x + width, y, y + height
    if orientation in (2, 3, 6, 7):  # upright x runs the other way in the stored pixels
        left, right = PER_MILLE - right, PER_MILLE - left
    if orientation in (3, 4, 7, 8):  # upright y runs the other way
        top, bottom = PER_MILLE - bottom, PER_MILLE - top
    if orientation >= 5:  # stored rows are upright columns
        return top, left, bottom - top, right - left
    return left, top, right - left, bottom - top


def _enlarges(spec: DerivativeSpec) -> bool:
    # Full size is the original's size: "up" cannot enlarge it (it would otherwise grow to the output cap).
    return spec.upscale and not spec.full_size


def _fit_box(spec: DerivativeSpec, limits: ImageLimits) -> tuple[int, int]:
    # A missing side, and full size, are bounded by the output cap (thumbnail would make a missing height the
    # width); explicit sides over the cap were refused before rendering.
    limit = limits.max_output_dimension
    return min(spec.width or limit, limit), min(spec.height or limit, limit)


def _animates(spec: DerivativeSpec, fmt: str, limits: ImageLimits, info: SourceInfo) -> bool:
    if not BY_NAME[fmt].animation or info.loader not in ANIMATED_LOADERS or info.pages == 1:
        return False
    return (
        info.pages <= limits.max_frames
        and _frame_pixels(spec, limits, info) * info.pages <= limits.max_source_pixels
    )


def _frame_pixels(spec: DerivativeSpec, limits: ImageLimits, info: SourceInfo) -> int:
    """The most pixels one frame holds on the way: decoded, or made (enlarged or padded).

    The pixel budget counts both for animations: a small animation enlarged or padded to a large box, times its
    frames, would otherwise be a bomb of our own making.
    """
    width, height = _upright_size(info)
    most = width * height
    if spec.mode == "pad" or (spec.mode == "fill" and _enlarges(spec)):
        return max(most, (spec.width or 1) * (spec.height or 1))
    if spec.mode == "fit" and _enlarges(spec):
        box_width, box_height = _fit_box(spec, limits)
        width, height = _framed_size(spec, info)
        scale = min(box_width / width, box_height / height)
        return max(most, math.ceil(width * scale) * math.ceil(height * scale))
    return most


def _load(data: bytes, spec: DerivativeSpec, job: _Job) -> pyvips.Image:
    """Decode once, shrinking on load, upright (thumbnail applies the EXIF orientation and drops the tag)."""
    if job.exact is None:
        width, height = _fit_box(spec, job.limits)
    elif spec.mode == "pad":
        width, height = job.exact
    else:
        # Cover the fill box: the side that binds sets the scale, the other overflows and the crop step trims it.
        width, height = job.exact
        source_width, source_height = _framed_size(spec, job.info)
        if width * source_height >= height * source_width:
            height = _UNBOUNDED
        else:
            width = _UNBOUNDED
    if spec.rotate in (90, 270):
        # The box of the picture before the turn step turns it.
        width, height = height, width
    size = "both" if _enlarges(spec) else "down"
    options: dict[str, object] = {"output_profile": "srgb"} if job.info.has_icc else {}
    if spec.crop is not None:
        return _load_region(data, spec.crop, job, (width, height), size, options)
    if job.info.decoder != "libvips":
        return decode_whole(data, job.info).thumbnail_image(width, height=height, size=size, **options)
    # Read in place: a buffer loader would copy the whole original into libvips first.
    source = pyvips.Source.new_from_memory(data)
    if job.info.loader == "jpegload":
        return _load_jpeg(source, width, height, size, options, job.info)
    # fail_on goes in the loader's option string: thumbnail accepts its own fail_on argument and ignores it (libvips
    # issue 5195), which would turn truncated originals into half-grey derivatives.
    loader_options = "fail_on=error,n=-1" if job.animated else "fail_on=error"
    return pyvips.Image.thumbnail_source(
        source, width, option_string=loader_options, height=height, size=size, **options
    )


def _load_jpeg(
    source: pyvips.Source, width: int, height: int, size: str, options: dict[str, object], info: SourceInfo
) -> pyvips.Image:
    """A JPEG decoded at the smallest DCT scale that keeps the margin (:func:`_jpeg_shrink`), resized to its size.

    libvips' own thumbnail sizes its result from the decoded dimensions, which libvips rounds down: a pixel off the
    size the whole original gives, at times. Here the size comes from the original's, and the resize is forced to it.
    """
    result_width, result_height = _thumbnail_size(_upright_size(info), (width, height), size)
    shrink = _jpeg_shrink(max(info.width, info.height), max(result_width, result_height))
    # The scale applies to the stored pixels; thumbnail then turns them upright, swapping the target's sides for
    # orientations 5 to 8 itself.
    image = pyvips.Image.jpegload_source(source, shrink=shrink, fail_on="error", access="sequential")
    return image.thumbnail_image(result_width, height=result_height, size="force", **options)


def _load_region(
    data: bytes,
    crop: tuple[int, int, int, int],
    job: _Job,
    box: tuple[int, int],
    size: str,
    options: dict[str, object],
) -> pyvips.Image:
    """The spec's crop of an original, resized upright into ``box``: a JPEG is decoded at the smallest DCT scale
    that keeps the margin over the region's result (:func:`_jpeg_shrink`), the region cut from the pixels as stored
    (:func:`_stored_crop`), and only then resized and turned upright, every frame of an animation alike.
    """
    info = job.info
    stored = _stored_crop(crop, info.orientation)
    region = _crop_box(stored, info.width, info.height)
    upright = (region[3], region[2]) if info.orientation >= 5 else (region[2], region[3])
    result_width, result_height = _thumbnail_size(upright, box, size)
    if info.decoder != "libvips":
        image = decode_whole(data, info)
    else:
        loader_options: dict[str, object] = {"fail_on": "error"}
        if job.animated:
            loader_options["n"] = -1
        else:
            # One picture is read once, top to bottom: the rows above and below the region are never kept.
            loader_options["access"] = "sequential"
        if info.loader == "jpegload":
            loader_options["shrink"] = _jpeg_shrink(max(region[2:]), max(result_width, result_height))
        source = pyvips.Source.new_from_memory(data)
        image = pyvips.Operation.call(f"{info.loader}_source", source, **loader_options)
    left, top, width, height = _crop_box(stored, image.width, image.get_page_height())

    def cut(frame: pyvips.Image) -> pyvips.Image:
        region = frame.crop(left, top, width, height)
        return region.thumbnail_image(result_width, height=result_height, size="force", **options)

    return _each_frame(image, cut)


def _jpeg_shrink(source_side: int, result_side: int) -> int:
    """The smallest DCT scale, 1/8 to 1/1, that decodes a JPEG's longer side to its margin over the result's."""
    margin = _JPEG_SMALL_MARGIN if result_side < _JPEG_SMALL_RESULT else _JPEG_MARGIN
    return next((shrink for shrink in (8, 4, 2) if source_side / shrink >= margin * result_side), 1)


def _thumbnail_size(source: tuple[int, int], box: tuple[int, int], size: str) -> tuple[int, int]:
    """The size libvips' thumbnail gives a fully decoded ``source`` in ``box``: the binding side exactly, the other
    rounded half up, at least one pixel; never enlarged unless ``size`` is "both"."""
    (source_width, source_height), (box_width, box_height) = source, box
    scale = min(box_width / source_width, box_height / source_height)
    if size == "down" and scale >= 1:
        return source_width, source_height
    if box_width / source_width <= box_height / source_height:
        return box_width, max(1, math.floor(source_height * scale + 0.5))
    return max(1, math.floor(source_width * scale + 0.5)), box_height


# Steps: each takes the image so far and returns the next one. Animations are one tall strip of frames
# (page-height), so anything that looks at neighbouring pixels or changes a frame's size works frame by frame.


def _to_srgb8(image: pyvips.Image, spec: DerivativeSpec, job: _Job) -> pyvips.Image:
    """8-bit sRGB, alpha kept, from 16-bit, 10-bit and grey sources (thumbnail has already converted CMYK)."""
    if image.interpretation == "srgb" and image.format == "uchar":
        return image
    return image.colourspace("srgb")


def _turn(image: pyvips.Image, spec: DerivativeSpec, job: _Job) -> pyvips.Image:
    """Rotate clockwise by ``rotate`` degrees, then mirror by ``flip``. The contract turns the picture before the
    resize; turning it after, from a box with its sides swapped (see :func:`_load`), is the same picture from far
    fewer pixels."""
    if not spec.rotate and spec.flip is None:
        return image
    rotation = {0: None, 90: "d90", 180: "d180", 270: "d270"}[spec.rotate]
    mirror = {None: None, "x": "horizontal", "y": "vertical"}[spec.flip]

    def turn(frame: pyvips.Image) -> pyvips.Image:
        if rotation is not None:
            frame = frame.rot(rotation)
        return frame if mirror is None else frame.flip(mirror)

    # Turning reads pixels out of the order a sequential decode gives them: keep the (small) resized image in memory.
    return _each_frame(job.deadline.watch(image).copy_memory(), turn)


def _crop(image: pyvips.Image, spec: DerivativeSpec, job: _Job) -> pyvips.Image:
    """Fill: trim the overflowing side to exactly the box, where the gravity or the focal point says."""
    if spec.mode != "fill" or job.exact is None:
        return image
    width, height = job.exact
    faces = _framed_faces(job.faces, spec) if spec.gravity == "face" else ()
    if spec.gravity in ("sm", "face") and not faces and not job.animated:
        # Attention looks at the whole image, which a sequential decode can only give once: keep the (small) shrunk
        # image in memory. Animations use the centre: a crop moving from frame to frame would shake.
        return job.deadline.watch(image).copy_memory().smartcrop(width, height, interesting="attention")
    place: Callable[[pyvips.Image], tuple[int, int]]
    point = _focal_point(spec.focal, spec) if spec.focal is not None else None
    if faces:
        point = _middle_of_faces(faces, (image.width, image.get_page_height()), job.exact)
    if point is not None:
        across, down = point

        def place(frame: pyvips.Image) -> tuple[int, int]:
            return _centre_on(frame.width, width, across), _centre_on(frame.height, height, down)
    else:
        across, down = _GRAVITY[spec.gravity]

        def place(frame: pyvips.Image) -> tuple[int, int]:
            return int((frame.width - width) * across), int((frame.height - height) * down)

    def trim(frame: pyvips.Image) -> pyvips.Image:
        left, top = place(frame)
        return frame.crop(left, top, width, height)

    return _each_frame(image, trim)


def _focal_point(focal: tuple[int, int], spec: DerivativeSpec) -> tuple[float, float]:
    """A focal point of the upright original (per-mille) as fractions of the picture the fill box is cut from:
    through the spec's crop (a point outside it goes to its nearest edge), then its turn."""
    x, y = (value / PER_MILLE for value in focal)
    if spec.crop is not None:
        left, top, width, height = (value / PER_MILLE for value in spec.crop)
        x, y = min(max((x - left) / width, 0.0), 1.0), min(max((y - top) / height, 0.0), 1.0)
    if spec.rotate == 90:
        x, y = 1 - y, x
    elif spec.rotate == 180:
        x, y = 1 - x, 1 - y
    elif spec.rotate == 270:
        x, y = y, 1 - x
    if spec.flip == "x":
        x = 1 - x
    elif spec.flip == "y":
        y = 1 - y
    return x, y


def _framed_faces(faces: tuple[FaceBox, ...], spec: DerivativeSpec) -> list[FaceBox]:
    """The faces as fractions of the picture the fill box is cut from (see :func:`_focal_point`), the largest
    first; those outside the spec's crop are left out."""
    framed = []
    for face in faces:
        corners = [
            _focal_point((round(x * PER_MILLE), round(y * PER_MILLE)), spec)
            for x, y in ((face.left, face.top), (face.left + face.width, face.top + face.height))
        ]
        (left, right), (top, bottom) = (sorted(side) for side in zip(*corners, strict=True))
        if right > left and bottom > top:
            framed.append(FaceBox(left, top, right - left, bottom - top))
    return framed


def _middle_of_faces(faces: list[FaceBox], frame: tuple[int, int], box: tuple[int, int]) -> tuple[float, float]:
    """The point a fill box centres on to hold every face, when they fit in it together, else the largest face."""
    left, top = min(face.left for face in faces), min(face.top for face in faces)
    right = max(face.left + face.width for face in faces)
    bottom = max(face.top + face.height for face in faces)
    if (right - left) * frame[0] > box[0] or (bottom - top) * frame[1] > box[1]:
        largest = faces[0]
        left, top, right, bottom = largest.left, largest.top, largest.left + largest.width, largest.top + largest.height
    return (left + right) / 2, (top + bottom) / 2


def _centre_on(side: int, box_side: int, point: float) -> int:
    """Where a box side starts so that ``point`` (a fraction of ``side``) is as near its middle as ``side`` allows.

    At the middle, 0.5, it starts where gravity ``c`` starts a box."""
    return int(min(max(point * side - box_side / 2, 0), side - box_side))


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
    if spec.background is None and BY_NAME[job.fmt].alpha:
        background = (*WHITE, 0)
        if not image.hasalpha():
            image = image.bandjoin(255)
    else:
        background = _rgb(spec.background) if spec.background is not None else WHITE
        if image.hasalpha():
            background = (*background, 255)

    def embed(frame: pyvips.Image) -> pyvips.Image:
        left, top = (width - frame.width) // 2, (height - frame.height) // 2
        return frame.embed(left, top, width, height, extend="background", background=list(background))

    return _each_frame(image, embed)


def _flatten(image: pyvips.Image, spec: DerivativeSpec, job: _Job) -> pyvips.Image:
    """A format without alpha (JPEG): blend onto ``bg`` (white by default). Other formats keep theirs."""
    if BY_NAME[job.fmt].alpha or not image.hasalpha():
        return image
    background = _rgb(spec.background) if spec.background is not None else WHITE
    return image.flatten(background=list(background))


Step = Callable[[pyvips.Image, DerivativeSpec, _Job], pyvips.Image]

#: The transform after the shrink-on-load decode, in order. Metadata is dropped by the encoders (keep=NONE).
STEPS: tuple[Step, ...] = (_to_srgb8, _turn, _crop, _blur, _sharpen, _pad, _flatten)


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
    return spec.quality or job.limits.quality_for(job.fmt)


def encoder_settings(spec: DerivativeSpec, fmt: str, limits: ImageLimits) -> dict[str, object]:
    """What decides the bytes of ``spec`` in ``fmt`` besides the spec itself and libvips: the quality used, the JPEG
    shrink-on-load margins and the encoder's efforts. A derivative records them (:mod:`resize_sidecar.media.recipe`),
    so a change of any of them here makes stored derivatives due for regeneration."""
    settings: dict[str, object] = {
        "quality": spec.quality or limits.quality_for(fmt),
        "jpeg_margins": (_JPEG_MARGIN, _JPEG_SMALL_MARGIN, _JPEG_SMALL_RESULT),
    }
    if fmt == "avif":
        settings["efforts"] = (_AVIF_EFFORT, _AVIF_FAST_EFFORT, _AVIF_FAST_ABOVE_PIXELS)
    elif fmt == "gif":
        settings["efforts"] = (_GIF_EFFORT, _GIF_FAST_EFFORT, _GIF_FAST_ABOVE_PIXELS)
    return settings


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
    return bytes(
        image.heifsave_buffer(
            Q=_quality(spec, job), compression="av1", bitdepth=8, effort=avif_effort(image), keep=_KEEP_NONE
        )
    )


def avif_effort(image: pyvips.Image) -> int:
    """The AVIF encoder effort for ``image``: lower for large images, to keep the encode within the deadline."""
    return _AVIF_EFFORT if image.width * image.height <= _AVIF_FAST_ABOVE_PIXELS else _AVIF_FAST_EFFORT


def _save_gif(image: pyvips.Image, spec: DerivativeSpec, job: _Job) -> bytes:
    fast = image.width * image.get_page_height() > _GIF_FAST_ABOVE_PIXELS
    return bytes(image.gifsave_buffer(effort=_GIF_FAST_EFFORT if fast else _GIF_EFFORT, keep=_KEEP_NONE))


_SAVERS: dict[str, Callable[[pyvips.Image, DerivativeSpec, _Job], bytes]] = {
    "jpg": _save_jpg,
    "png": _save_png,
    "webp": _save_webp,
    "avif": _save_avif,
    "gif": _save_gif,
}


def reason(error: pyvips.Error | UnicodeDecodeError) -> str:
    """libvips' own words for a failed call (one line), clearing its error buffer for the next call."""
    pyvips.vips_lib.vips_error_clear()
    if isinstance(error, UnicodeDecodeError):
        return "libvips reported an error that is not text"
    # The message is "unable to call <operation>"; the detail starts with the loader's own words.
    lines = [line.strip() for line in f"{error.detail or ''}\n{error.message}".splitlines() if line.strip()]
    return lines[0] if lines else "libvips error"
