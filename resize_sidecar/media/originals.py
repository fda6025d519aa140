"""Uploaded originals for the media API: decoded in full, and made upright, cleaned of metadata or converted to a
format browsers show before they are stored (:func:`prepare_original`), and described for the metadata JSON
(:func:`describe`).

Every pixel of an upload is decoded: a file the sidecar could not render is refused. One that needs no change (a
format browsers show, nothing to turn, no metadata to remove) is stored as uploaded, since a new encoding would only
add a generation of compression or bytes (a PNG grew 55 %). Otherwise it is encoded again, turned upright when
``auto_orient_original`` is set, keeping its colour profile and its EXIF less maker notes, the embedded thumbnail
and (``strip_original_gps``) the GPS location; HEIC becomes AVIF, TIFF and BMP become PNG. A description is the
header, the colour profile's name, a small EXIF subset and a BlurHash placeholder. Both check an original with
:func:`~resize_sidecar.media.imaging.probe` first, so only the allowed loaders ever parse it.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass

import pyvips

from resize_sidecar.core.errors import SourceTooLargeError, UndecodableImageError
from resize_sidecar.core.formats import CONTENT_TYPES, FormatName
from resize_sidecar.core.settings import ImageLimits

# Importing imaging blocks libvips' untrusted loaders and turns its operation cache off, here too.
from resize_sidecar.media.imaging import (
    ANIMATED_LOADERS,
    FORMAT_OF_LOADER,
    LIBVIPS_ERRORS,
    WHITE,
    Deadline,
    SourceInfo,
    avif_effort,
    decode_all,
    load,
    probe,
    reason,
)


@dataclass(frozen=True)
class Original:
    """An uploaded original, checked, decoded in full and encoded again for storage (see :func:`prepare_original`)."""

    body: bytes
    fmt: FormatName
    content_type: str
    width: int  # of one frame, as stored (upright when it was turned)
    height: int
    pages: int


@dataclass(frozen=True)
class Description:
    """What :func:`describe` tells about an original."""

    info: SourceInfo
    fmt: FormatName
    icc_profile: str | None  # the profile's own description, e.g. "Display P3"
    camera: str | None  # EXIF make and model, e.g. "Canon EOS 40D"
    taken_at: str | None  # EXIF DateTimeOriginal as ISO 8601, with its offset when recorded
    gps: tuple[float, float] | None  # latitude, longitude in degrees; only when asked for
    blurhash: str


# Stored originals are the source of every derivative: a quality high enough that no derivative shows a second
# generation of compression artefacts.
_ORIGINAL_QUALITY = 90
# An iPhone's HEIC is coded at a quality that AVIF matches near 80: the 8.5 MP sample in the shared corpus (833 KB)
# became 837 KB at 80 and 1.27 MB at 90 (libvips 8.18.7, aom, effort 0).
_HEIC_QUALITY = 80
# Kept in a stored original: its colour profile and its EXIF (camera, date, orientation), less the fields removed
# by _clean_exif. XMP, IPTC and comments are dropped whole: they can hold anything, a location included.
_KEEP_ORIGINAL = pyvips.ForeignKeep.EXIF | pyvips.ForeignKeep.ICC
# EXIF fields never stored: maker notes are opaque vendor blobs (some hold a location or a serial number), and the
# embedded thumbnail can show the picture as it was before it was cropped or edited.
# Maker notes and thumbnails, and the EXIF tags that carry whole other metadata blocks (IPTC, an ICC profile, XMP):
# blocks nobody reads back from an original, and where anything may hide.
_ALWAYS_REMOVED = (
    "exif-ifd2-MakerNote",
    "jpeg-thumbnail-data",
    "exif-ifd0-IPTC/NAA",
    "exif-ifd0-InterColorProfile",
    "exif-ifd0-XMLPacket",
)
_GPS_FIELDS = "exif-ifd3-"
# Metadata the stored encoding leaves out (see _KEEP_ORIGINAL): an upload carrying any is encoded again.
_DROPPED_BLOCKS = ("xmp-data", "iptc-data")
# Loaders whose originals may be stored as uploaded: the formats browsers show (HEIC is shown by Safari only; TIFF
# and BMP are converted for the same reason), read by libvips itself.
_STORED_AS_UPLOADED = ("jpegload", "uhdrload", "pngload", "webpload", "gifload", "heifload")
# BlurHash components across and down a landscape picture (swapped for a portrait one), and the size it is computed
# at: 32 pixels hold all the detail 4x3 cosines can show.
_BLURHASH_COMPONENTS = (4, 3)
_BLURHASH_SIZE = 32
_BASE83 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"
_SRGB_TO_LINEAR = tuple(
    value / 255 / 12.92 if value / 255 <= 0.04045 else ((value / 255 + 0.055) / 1.055) ** 2.4 for value in range(256)
)
# libvips shows an EXIF field as "{value} ({value as text}, {type}, {n} components, {n} bytes)".
_EXIF_TEXT = re.compile(r"(?s)(.*) \(\1, ASCII, \d+ components?, \d+ bytes?\)")
_EXIF_RATIONALS = re.compile(r"((?:\d+/\d+ ?)+) \(")
_EXIF_DATE = re.compile(r"(\d{4}):(\d\d):(\d\d) (\d\d:\d\d:\d\d)")
_EXIF_OFFSET = re.compile(r"[+-]\d\d:\d\d")


def prepare_original(data: bytes, limits: ImageLimits, *, auto_orient: bool, strip_gps: bool) -> Original:
    """Check an uploaded original, decode every pixel of it, and keep it as uploaded or encode it again for storage.

    It is kept as uploaded when nothing has to change: a format stored as it is, no orientation to apply, no
    metadata to remove. Otherwise the new encoding, in its own format (HEIC: AVIF; TIFF, BMP: PNG), keeps the pixels
    (turned upright with ``auto_orient``, the ``auto_orient_original`` setting), the colour profile and the EXIF less
    maker notes, the embedded thumbnail and, with ``strip_gps`` (``strip_original_gps``), the GPS location.
    Animations keep their frames, delays and loop count.

    Raises:
        UnsupportedImageError: not an image, or a loader that is not allowed.
        SourceTooLargeError: more pixels, all frames together, than ``max_source_pixels``.
        UndecodableImageError: a corrupt header, or pixels that turn out truncated or corrupt.
        TransformTimeoutError: decoding and encoding took longer than ``transform_timeout``.
    """
    info = probe(data, limits)
    if info.width * info.height * info.pages > limits.max_source_pixels:
        raise SourceTooLargeError(
            f"{info.pages} frames of {info.width}x{info.height} pixels are over the limit of "
            f"{limits.max_source_pixels} (MAX_SOURCE_PIXELS)"
        )
    animated = info.loader in ANIMATED_LOADERS and info.pages > 1
    # Frames of an animation share one strip, which turning would scramble; no animated format carries an orientation.
    turn = auto_orient and info.orientation != 1 and not animated
    options: dict[str, object] = {"fail_on": "error"}
    if animated:
        options["n"] = -1
    if not turn:
        # Turning needs the whole image at once; anything else streams through in one pass.
        options["access"] = "sequential"
    fmt = FORMAT_OF_LOADER[info.loader]
    deadline = Deadline(limits.transform_timeout)
    try:
        image = load(data, info, **options)
        removed = _removed_fields(image, strip_gps)
        if info.loader in _STORED_AS_UPLOADED and info.decoder == "libvips" and not turn and not removed:
            decode_all(data, info, limits)  # to refuse what could not be rendered
            body = data
        else:
            image = _without(image, removed)
            if turn:
                image = image.autorot()
            body = _ORIGINAL_SAVERS[fmt](deadline.watch(image), info)
    except LIBVIPS_ERRORS as error:
        if deadline.expired:
            raise deadline.error() from None
        raise UndecodableImageError(f"{info.loader}: {reason(error)}") from None
    width, height = (info.height, info.width) if turn and info.orientation >= 5 else (info.width, info.height)
    return Original(body, fmt, CONTENT_TYPES[fmt], width, height, info.pages)


def describe(data: bytes, limits: ImageLimits, *, gps: bool = False) -> Description:
    """An original's header facts, profile name, a small EXIF subset and a BlurHash placeholder.

    The GPS location is read only when ``gps`` is true. Decoding for the BlurHash runs within ``transform_timeout``.

    Raises:
        UnsupportedImageError, UndecodableImageError, SourceTooLargeError: as :func:`probe`; undecodable also when
            the pixels needed for the BlurHash are corrupt.
        TransformTimeoutError: decoding ran out of time.
    """
    info = probe(data, limits)
    deadline = Deadline(limits.transform_timeout)
    try:
        header = load(data, info, access="sequential")
        if info.decoder == "libvips":
            thumbnail = pyvips.Image.thumbnail_buffer(
                data, _BLURHASH_SIZE, height=_BLURHASH_SIZE, option_string="fail_on=error"
            )
        else:
            thumbnail = header.thumbnail_image(_BLURHASH_SIZE, height=_BLURHASH_SIZE)
        components = _BLURHASH_COMPONENTS if thumbnail.width >= thumbnail.height else _BLURHASH_COMPONENTS[::-1]
        placeholder = _blurhash(_srgb_pixels(thumbnail, deadline), thumbnail.width, thumbnail.height, *components)
    except LIBVIPS_ERRORS as error:
        if deadline.expired:
            raise deadline.error() from None
        raise UndecodableImageError(f"{info.loader}: {reason(error)}") from None
    make, model = _exif_text(header, "exif-ifd0-Make"), _exif_text(header, "exif-ifd0-Model")
    return Description(
        info=info,
        fmt=FORMAT_OF_LOADER[info.loader],
        icc_profile=_icc_description(header.get("icc-profile-data")) if info.has_icc else None,
        camera=model if make is None or (model or "").startswith(make) else f"{make} {model or ''}".strip(),
        taken_at=_taken_at(header),
        gps=_gps(header) if gps else None,
        blurhash=placeholder,
    )


def _removed_fields(image: pyvips.Image, strip_gps: bool) -> list[str]:
    """The metadata fields an original is stored without."""
    return [
        name
        for name in image.get_fields()
        if name in _ALWAYS_REMOVED
        or name in _DROPPED_BLOCKS
        or name.endswith("comment")
        or "-comment-" in name
        or (strip_gps and name.startswith(_GPS_FIELDS))
    ]


def _without(image: pyvips.Image, removed: list[str]) -> pyvips.Image:
    if not removed:
        return image
    # libvips rebuilds the EXIF block from these fields on save: a removed field is a tag left out. Metadata may
    # only be changed on a private copy.
    image = image.copy()
    for name in removed:
        image.remove(name)
    return image


def _original_jpg(image: pyvips.Image, info: SourceInfo) -> bytes:
    # Chroma as the original had it: full-resolution colour for a 4:2:0 source only adds bytes.
    subsampled = image.get_typeof("jpeg-chroma-subsample") and image.get("jpeg-chroma-subsample") == "4:2:0"
    return bytes(
        image.jpegsave_buffer(
            Q=_ORIGINAL_QUALITY,
            optimize_coding=True,
            subsample_mode="on" if subsampled else "off",
            keep=_KEEP_ORIGINAL,
        )
    )


def _original_png(image: pyvips.Image, info: SourceInfo) -> bytes:
    return bytes(image.pngsave_buffer(keep=_KEEP_ORIGINAL))


def _original_webp(image: pyvips.Image, info: SourceInfo) -> bytes:
    # A lossless original (VP8L bitstream) stays lossless.
    return bytes(image.webpsave_buffer(Q=_ORIGINAL_QUALITY, lossless=info.lossless, keep=_KEEP_ORIGINAL))


def _original_gif(image: pyvips.Image, info: SourceInfo) -> bytes:
    # The original's palette, rather than a new quantisation of colours that already fit in one.
    return bytes(image.gifsave_buffer(reuse=True, keep=_KEEP_ORIGINAL))


def _original_avif(image: pyvips.Image, info: SourceInfo) -> bytes:
    quality = _HEIC_QUALITY if info.decoder == "libheif" else _ORIGINAL_QUALITY
    return bytes(image.heifsave_buffer(Q=quality, compression="av1", effort=avif_effort(image), keep=_KEEP_ORIGINAL))


_ORIGINAL_SAVERS: dict[str, Callable[[pyvips.Image, SourceInfo], bytes]] = {
    "jpg": _original_jpg,
    "png": _original_png,
    "webp": _original_webp,
    "gif": _original_gif,
    "avif": _original_avif,
}


def _srgb_pixels(image: pyvips.Image, deadline: Deadline) -> bytes:
    """Three 8-bit sRGB bytes per pixel, alpha flattened onto white (the usual page colour), made before
    ``deadline``."""
    if image.interpretation != "srgb" or image.format != "uchar":
        image = image.colourspace("srgb")
    if image.hasalpha():
        image = image.flatten(background=list(WHITE))
    if image.bands > 3:
        image = image.extract_band(0, n=3)
    return bytes(deadline.watch(image.cast("uchar")).write_to_memory())


def _blurhash(pixels: bytes, width: int, height: int, across: int, down: int) -> str:
    """The BlurHash (woltapp/blurhash) of packed 8-bit sRGB pixels with ``across`` x ``down`` components."""
    linear = [_SRGB_TO_LINEAR[value] for value in pixels]
    cos_x = [[math.cos(math.pi * i * x / width) for x in range(width)] for i in range(across)]
    cos_y = [[math.cos(math.pi * j * y / height) for y in range(height)] for j in range(down)]
    factors = []
    for j in range(down):
        for i in range(across):
            red = green = blue = 0.0
            for y in range(height):
                row, weight_y = y * width * 3, cos_y[j][y]
                for x in range(width):
                    weight = cos_x[i][x] * weight_y
                    offset = row + 3 * x
                    red += weight * linear[offset]
                    green += weight * linear[offset + 1]
                    blue += weight * linear[offset + 2]
            scale = (1 if i == j == 0 else 2) / (width * height)
            factors.append((red * scale, green * scale, blue * scale))
    dc, ac = factors[0], factors[1:]
    largest = max((abs(value) for factor in ac for value in factor), default=0.0)
    quantised = max(0, min(82, math.floor(largest * 166 - 0.5))) if ac else 0
    bound = (quantised + 1) / 166
    text = _base83((across - 1) + (down - 1) * 9, 1) + _base83(quantised, 1)
    text += _base83((_linear_to_srgb(dc[0]) << 16) + (_linear_to_srgb(dc[1]) << 8) + _linear_to_srgb(dc[2]), 4)
    for factor in ac:
        red, green, blue = (_quantise_ac(value / bound) for value in factor)
        text += _base83(red * 19 * 19 + green * 19 + blue, 2)
    return text


def _linear_to_srgb(value: float) -> int:
    value = max(0.0, min(1.0, value))
    if value <= 0.0031308:
        return int(value * 12.92 * 255 + 0.5)
    return int((1.055 * value ** (1 / 2.4) - 0.055) * 255 + 0.5)


def _quantise_ac(value: float) -> int:
    return max(0, min(18, math.floor(math.copysign(abs(value) ** 0.5, value) * 9 + 9.5)))


def _base83(value: int, length: int) -> str:
    return "".join(_BASE83[value // 83 ** (length - 1 - place) % 83] for place in range(length))


def _icc_description(profile: bytes) -> str | None:
    """The 'desc' tag of an ICC profile: ICC v2 'desc' (ASCII) or v4 'mluc' (UTF-16, first record)."""
    try:
        (count,) = struct.unpack_from(">I", profile, 128)
        for entry in range(min(count, 128)):
            signature, start, size = struct.unpack_from(">4sII", profile, 132 + 12 * entry)
            if signature != b"desc":
                continue
            tag = profile[start : start + size]
            if tag[:4] == b"desc":
                (length,) = struct.unpack_from(">I", tag, 8)
                text = tag[12 : 12 + length].split(b"\0")[0].decode("latin-1")
            elif tag[:4] == b"mluc":
                length, offset = struct.unpack_from(">II", tag, 20)
                text = tag[offset : offset + length].decode("utf-16-be", "replace")
            else:
                return None
            return text.strip("\0 ") or None
    except struct.error:
        return None  # a profile cut short: no name to show
    return None


def _exif_field(header: pyvips.Image, name: str) -> str | None:
    return str(header.get(name)) if header.get_typeof(name) else None


def _exif_text(header: pyvips.Image, name: str) -> str | None:
    match = _EXIF_TEXT.fullmatch(_exif_field(header, name) or "")
    return (match[1].strip() or None) if match else None


def _taken_at(header: pyvips.Image) -> str | None:
    match = _EXIF_DATE.fullmatch(_exif_text(header, "exif-ifd2-DateTimeOriginal") or "")
    if match is None:
        return None
    offset = _exif_text(header, "exif-ifd2-OffsetTimeOriginal") or ""
    return f"{match[1]}-{match[2]}-{match[3]}T{match[4]}" + (offset if _EXIF_OFFSET.fullmatch(offset) else "")


def _gps(header: pyvips.Image) -> tuple[float, float] | None:
    latitude = _degrees(header, "Latitude", "S")
    longitude = _degrees(header, "Longitude", "W")
    if latitude is None or longitude is None:
        return None
    return latitude, longitude


def _degrees(header: pyvips.Image, axis: str, negative: str) -> float | None:
    """One GPS coordinate from its degrees, minutes and seconds (EXIF rationals) and its N/S or E/W reference."""
    match = _EXIF_RATIONALS.match(_exif_field(header, f"exif-ifd3-GPS{axis}") or "")
    reference = _exif_text(header, f"exif-ifd3-GPS{axis}Ref")
    if match is None or reference is None:
        return None
    parts = [part.split("/") for part in match[1].split()]
    if len(parts) != 3 or any(int(denominator) == 0 for _, denominator in parts):
        return None
    degrees, minutes, seconds = (int(numerator) / int(denominator) for numerator, denominator in parts)
    value = degrees + minutes / 60 + seconds / 3600
    return round(-value if reference == negative else value, 7)
