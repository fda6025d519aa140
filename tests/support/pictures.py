"""Originals of the formats people upload from phones and scanners, made for tests and benchmarks: HEIC (with
pillow-heif's HEVC encoder), TIFF (libvips) and BMP (Pillow), each with the features the sidecar must handle."""

from __future__ import annotations

import io
import struct

import pyvips
from PIL import Image

#: EXIF's Orientation tag.
ORIENTATION_TAG = 274


def picture(width: int, height: int, *, alpha: bool = False) -> Image.Image:
    """An RGB(A) Pillow picture, red left to right and green top to bottom: a turn or a mirror shows in its corners,
    with a half-transparent right half when ``alpha``."""
    red = Image.linear_gradient("L").rotate(90).resize((width, height))
    green = Image.linear_gradient("L").resize((width, height))
    blue = Image.new("L", (width, height), 96)
    if not alpha:
        return Image.merge("RGB", (red, green, blue))
    opacity = Image.new("L", (width, height), 255)
    opacity.paste(128, (width // 2, 0, width, height))
    return Image.merge("RGBA", (red, green, blue, opacity))


def display_p3_profile() -> bytes:
    """A Display P3 ICC profile, as iPhones embed one: libvips' own (its built-in "p3"), so no file is needed."""
    grey = (pyvips.Image.black(1, 1, bands=3) + 128).cast("uchar").copy(interpretation="srgb")
    return bytes(grey.icc_transform("p3", input_profile="srgb").get("icc-profile-data"))


def heic(
    image: Image.Image,
    *,
    orientation: int = 1,
    icc: bytes | None = None,
    ten_bit: bool = False,
    gps: bool = False,
    quality: int = 80,
) -> bytes:
    """``image`` as an HEVC-coded HEIF, as an iPhone writes one: an ``orientation`` becomes the irot/imir boxes
    (pillow-heif turns the EXIF tag into them, and leaves the tag), ``icc`` is embedded, ``ten_bit`` codes 10 bits
    per sample, and ``gps`` adds a GPS location to the EXIF."""
    import pillow_heif

    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    exif[0x010F], exif[0x0110] = "Apple", "iPhone 15"
    if gps:
        exif.get_ifd(0x8825).update({1: "N", 2: (48.0, 51.0, 30.0), 3: "E", 4: (2.0, 17.0, 40.0)})
    if ten_bit:
        deep = image.convert("RGBA" if "A" in image.mode else "RGB")
        mode = "RGBA;16" if deep.mode == "RGBA" else "RGB;16"
        samples = bytes(value for byte in deep.tobytes() for value in (0, byte))  # 16-bit little-endian, full range
        heif = pillow_heif.from_bytes(mode=mode, size=image.size, data=samples)
    else:
        heif = pillow_heif.from_pillow(image)
    out = io.BytesIO()
    options: dict[str, object] = {"quality": quality, "exif": exif.tobytes()}
    if icc is not None:
        options["icc_profile"] = icc
    if ten_bit:
        options["save_to_12bit"] = False
    heif.save(out, **options)
    return out.getvalue()


def bmp(image: Image.Image, *, rle: bool = False, run: int = 255) -> bytes:
    """``image`` as a BMP: 32-bit with an alpha mask when it has alpha, else 24-bit; or, when ``rle``, RLE8-coded
    with a palette of 256 in runs of at most ``run`` pixels (Pillow reads RLE but does not write it)."""
    if image.mode == "RGBA":
        return _bmp_with_alpha(image)
    if not rle:
        out = io.BytesIO()
        image.save(out, "BMP")
        return out.getvalue()
    indexed = image.convert("RGB").quantize(256)
    palette = (indexed.getpalette() or []) + [0] * 768
    colours = b"".join(bytes((palette[3 * i + 2], palette[3 * i + 1], palette[3 * i], 0)) for i in range(256))
    pixels, width = indexed.tobytes(), indexed.width
    coded = bytearray()
    for row in reversed(range(indexed.height)):  # bottom-up
        line = pixels[row * width : (row + 1) * width]
        at = 0
        while at < width:
            count = 1
            while at + count < width and count < run and line[at + count] == line[at]:
                count += 1
            coded += bytes((count, line[at]))
            at += count
        coded += b"\x00\x00"  # end of line
    coded += b"\x00\x01"  # end of bitmap
    offset = 14 + 40 + len(colours)
    header = b"BM" + struct.pack("<IHHI", offset + len(coded), 0, 0, offset)
    info = struct.pack("<IiiHHIIiiII", 40, width, indexed.height, 1, 8, 1, len(coded), 2835, 2835, 256, 0)
    return header + info + colours + bytes(coded)


def _bmp_with_alpha(image: Image.Image) -> bytes:
    """A 32-bit BI_BITFIELDS BMP with an alpha mask (a BITMAPV4HEADER), as image editors write one with alpha
    (Pillow writes RGBA as 32-bit BI_RGB, whose fourth byte readers ignore)."""
    red, green, blue, alpha = image.split()
    rows = Image.merge("RGBA", (blue, green, red, alpha)).transpose(Image.Transpose.FLIP_TOP_BOTTOM).tobytes()
    info = struct.pack("<IiiHHIIiiII", 108, image.width, image.height, 1, 32, 3, len(rows), 2835, 2835, 0, 0)
    info += struct.pack("<IIII", 0x00FF0000, 0x0000FF00, 0x000000FF, 0xFF000000) + b"sRGB" + bytes(36 + 12)
    offset = 14 + len(info)
    return b"BM" + struct.pack("<IHHI", offset + len(rows), 0, 0, offset) + info + rows


def tiff(image: pyvips.Image, **options: object) -> bytes:
    """``image`` as a TIFF (libvips' tiffsave options: ``compression``, ``tile``, ...)."""
    return bytes(image.tiffsave_buffer(**options))


def multipage_tiff(first: pyvips.Image, second: pyvips.Image) -> bytes:
    """A TIFF of two pages of the same size: the sidecar uses the first."""
    strip = pyvips.Image.arrayjoin([first, second], across=1).copy()
    strip.set_type(pyvips.GValue.gint_type, "page-height", first.height)
    return bytes(strip.tiffsave_buffer())


def to_pyvips(image: Image.Image) -> pyvips.Image:
    """A Pillow RGB(A) picture as a pyvips image."""
    bands = len(image.mode)
    return pyvips.Image.new_from_memory(image.tobytes(), image.width, image.height, bands, "uchar").copy(
        interpretation="srgb"
    )
