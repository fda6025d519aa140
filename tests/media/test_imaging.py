"""imaging: probe and render against the shared corpus of real images and small synthetic ones made here."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import pyvips

from resize_sidecar.core.errors import (
    MalformedPathError,
    SidecarError,
    SourceTooLargeError,
    TransformTimeoutError,
    UndecodableImageError,
    UnsupportedImageError,
)
from resize_sidecar.core.formats import BY_NAME, CONTENT_TYPES, FORMATS
from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import parse_spec
from resize_sidecar.media import imaging

MakeSettings = Callable[..., Settings]

SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'
PDF_STUB = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
RED, GREEN, BLUE = (220, 30, 30), (30, 200, 30), (30, 30, 220)


# Helpers ------------------------------------------------------------------------------------------------------------


def solid(width: int, height: int, colour: Sequence[int]) -> pyvips.Image:
    """A one-colour sRGB image; four values make an image with alpha."""
    image = pyvips.Image.black(width, height, bands=len(colour)) + list(colour)
    return image.cast("uchar").copy(interpretation="srgb")


def stripes(width: int, height: int, colours: Sequence[Sequence[int]], *, across: bool) -> pyvips.Image:
    """Equal stripes, left to right when ``across``, else top to bottom."""
    if across:
        parts = [solid(width // len(colours), height, colour) for colour in colours]
    else:
        parts = [solid(width, height // len(colours), colour) for colour in colours]
    return pyvips.Image.arrayjoin(parts, across=len(parts) if across else 1)


def noise(width: int, height: int, sigma: float = 40) -> pyvips.Image:
    bands = [pyvips.Image.gaussnoise(width, height, sigma=sigma, mean=128) for _ in range(3)]
    return bands[0].bandjoin(bands[1:]).cast("uchar").copy(interpretation="srgb")


def png(image: pyvips.Image) -> bytes:
    return bytes(image.pngsave_buffer(compression=1))


def jpeg(image: pyvips.Image) -> bytes:
    return bytes(image.jpegsave_buffer(Q=95))


def decode(body: bytes, *, animated: bool = False) -> pyvips.Image:
    """The rendered bytes as an image in memory (all frames when ``animated``)."""
    image = pyvips.Image.new_from_buffer(body, "", n=-1) if animated else pyvips.Image.new_from_buffer(body, "")
    return image.copy_memory()


def pixel(image: pyvips.Image, x: int, y: int) -> list[float]:
    return list(image(x, y))


def close(actual: Sequence[float], expected: Sequence[float], tolerance: float) -> bool:
    return len(actual) == len(expected) and all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def difference(image: pyvips.Image, reference: pyvips.Image) -> float:
    """Mean absolute difference of the two images shrunk to 90 pixels wide, where compression noise averages out."""
    return float((image.thumbnail_image(90) - reference.thumbnail_image(90)).abs().avg())


def band_means(image: pyvips.Image) -> list[float]:
    return [image.extract_band(band).avg() for band in range(image.bands)]


def render(data: bytes, spec: str, fmt: str, settings: Settings) -> imaging.Rendered:
    return imaging.render(data, parse_spec(spec), fmt, settings.image_limits)


def read(testdata: Path, name: str) -> bytes:
    return (testdata / name).read_bytes()


@pytest.fixture(scope="module")
def landscape() -> bytes:
    """A 600x400 JPEG."""
    return jpeg(solid(600, 400, GREEN))


@pytest.fixture(scope="module")
def portrait() -> bytes:
    """A 100x600 JPEG."""
    return jpeg(solid(100, 600, GREEN))


# Import-time safety -------------------------------------------------------------------------------------------------


def test_importing_imaging_blocks_untrusted_loaders() -> None:
    assert os.environ["VIPS_BLOCK_UNTRUSTED"] == "1"
    with pytest.raises(pyvips.Error, match="blocked"):
        pyvips.Image.svgload_buffer(SVG)


def test_a_fresh_process_that_imports_imaging_cannot_load_svg() -> None:
    code = (
        "import resize_sidecar.media.imaging, pyvips\n"
        f"try:\n    pyvips.Image.svgload_buffer({SVG!r})\n"
        "except pyvips.Error as error:\n    print('blocked' if 'blocked' in str(error) else error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "blocked"


# probe --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param(
            "orientation/Landscape_6.jpg",
            imaging.SourceInfo("jpegload", 1200, 1800, 1, 6, False, False, scans=1),
            id="jpeg with orientation 6, size as stored",
        ),
        pytest.param(
            "orientation/Landscape_0.jpg",
            imaging.SourceInfo("jpegload", 1800, 1200, 1, 1, False, False, scans=1),
            id="invalid orientation 0 reads as 1",
        ),
        pytest.param(
            "orientation/Exif6.webp",
            imaging.SourceInfo("webpload", 427, 640, 1, 6, False, False),
            id="webp with exif orientation",
        ),
        pytest.param(
            "formats/animated-loop-3.gif",
            imaging.SourceInfo("gifload", 370, 285, 10, 1, True, False),
            id="animated gif, height of one frame",
        ),
        pytest.param(
            "formats/animated-loop-3.webp",
            imaging.SourceInfo("webpload", 370, 285, 10, 1, True, False),
            id="animated webp",
        ),
        pytest.param("formats/p3.png", imaging.SourceInfo("pngload", 8, 8, 1, 1, True, True), id="png with icc"),
        pytest.param(
            "formats/fox.profile0.10bpc.yuv420.avif",
            imaging.SourceInfo("heifload", 1204, 800, 1, 1, False, False),
            id="10-bit avif",
        ),
        pytest.param(
            "formats/ultra-hdr.jpg",
            imaging.SourceInfo("uhdrload", 3840, 2160, 1, 1, False, True, scans=1),
            id="ultra hdr jpeg",
        ),
        pytest.param(
            "formats/IMG_5195.HEIC",
            imaging.SourceInfo("heifload", 2566, 3313, 1, 1, False, True, decoder="libheif"),
            id="hevc heic header, decoded by pillow-heif",
        ),
    ],
)
def test_probe_reads_what_the_header_says(
    testdata: Path, make_settings: MakeSettings, name: str, expected: imaging.SourceInfo
) -> None:
    assert imaging.probe(read(testdata, name), make_settings().image_limits) == expected


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"hello, world\n" * 10, id="text"),
        pytest.param(SVG, id="svg"),
        pytest.param(PDF_STUB, id="pdf header stub"),
    ],
)
def test_probe_refuses_what_is_not_an_image_of_an_allowed_format(make_settings: MakeSettings, data: bytes) -> None:
    with pytest.raises(UnsupportedImageError):
        imaging.probe(data, make_settings().image_limits)


@pytest.mark.parametrize("loader", ["tiffload", "heifload"])
def test_probe_refuses_a_loader_taken_out_of_the_allowed_ones(
    testdata: Path, make_settings: MakeSettings, loader: str
) -> None:
    data = read(testdata, "formats/multipage.tiff" if loader == "tiffload" else "formats/IMG_5195.HEIC")
    assert imaging.probe(data, make_settings().image_limits).loader == loader
    others = tuple(name for name in Settings().allowed_loaders if name != loader)
    with pytest.raises(UnsupportedImageError, match=f"{loader} originals are not allowed"):
        imaging.probe(data, make_settings(allowed_loaders=others).image_limits)


def test_probe_refuses_a_png_when_only_jpeg_is_allowed(make_settings: MakeSettings) -> None:
    with pytest.raises(UnsupportedImageError, match="pngload"):
        imaging.probe(png(solid(4, 4, RED)), make_settings(allowed_loaders=("jpegload",)).image_limits)


@pytest.mark.parametrize(
    "name",
    ["bombs/lottapixel.jpg", "bombs/65536-uint32-limit.png", "bombs/17000x17000.avif"],
)
def test_pixel_bombs_are_refused_from_their_header(testdata: Path, make_settings: MakeSettings, name: str) -> None:
    data = read(testdata, name)
    with pytest.raises(SourceTooLargeError):
        imaging.probe(data, make_settings().image_limits)
    with pytest.raises(SourceTooLargeError):
        render(data, "100x", "jpg", make_settings())


def test_a_png_header_claiming_100000_by_100000_pixels_is_refused(make_settings: MakeSettings) -> None:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )
    with pytest.raises(SourceTooLargeError):
        render(data, "100x", "jpg", make_settings())


def test_one_frame_over_the_pixel_limit_is_refused(make_settings: MakeSettings) -> None:
    with pytest.raises(SourceTooLargeError):
        imaging.probe(png(solid(100, 100, RED)), make_settings(max_source_pixels=9_999).image_limits)


def test_render_checks_the_limits_of_the_info_it_is_given(make_settings: MakeSettings) -> None:
    data = png(solid(100, 100, RED))
    info = imaging.probe(data, make_settings().image_limits)
    with pytest.raises(SourceTooLargeError):
        imaging.render(data, parse_spec("10x"), "png", make_settings(max_source_pixels=9_999).image_limits, info)


def test_render_with_the_probed_info_makes_the_same_bytes_as_without(
    testdata: Path, make_settings: MakeSettings
) -> None:
    data, settings = read(testdata, "exif/DSCN0010.jpg"), make_settings()
    info = imaging.probe(data, settings.image_limits)
    rendered = imaging.render(data, parse_spec("120x"), "jpg", settings.image_limits, info)
    assert rendered == render(data, "120x", "jpg", settings)


# Hostile input: every file is a 422, never another exception ---------------------------------------------------------

HOSTILE = [
    "malformed/POC_img_phpinfo-CR.gif",
    "malformed/broken.png",
    "malformed/corrupt-header.jpg",
    "malformed/empty.png",
    "malformed/libtiff_segfault.tif",
    "malformed/truncated.gif",
    "malformed/truncated.jpg",
    "malformed/truncated.png",
    "malformed/truncated.webp",
    "malformed/zero_width.gif",
    "bombs/17000x17000.avif",
    "bombs/65536-uint32-limit.png",
    "bombs/decompression_bomb.gif",
    "bombs/lottapixel.jpg",
]
# Valid 1x1 image whose zTXt chunk inflates to a huge text; it must render without that text.
TEXT_BOMB = "bombs/png_decompression_dos.png"


def test_the_hostile_table_lists_every_file_in_malformed_and_bombs(testdata: Path) -> None:
    on_disk = {
        str(path.relative_to(testdata)) for folder in ("malformed", "bombs") for path in (testdata / folder).iterdir()
    }
    assert on_disk == {*HOSTILE, TEXT_BOMB}


@pytest.mark.parametrize("name", HOSTILE)
@pytest.mark.parametrize("fmt", ["jpg", "webp"])
def test_hostile_files_raise_a_422_sidecar_error(
    testdata: Path, make_settings: MakeSettings, name: str, fmt: str
) -> None:
    with pytest.raises(SidecarError) as raised:
        render(read(testdata, name), "100x100-fill", fmt, make_settings())
    assert raised.value.status == 422


@pytest.mark.parametrize(
    "name",
    ["malformed/truncated.jpg", "malformed/truncated.png", "malformed/truncated.gif"],
)
def test_truncated_originals_are_undecodable_not_grey_filled(
    testdata: Path, make_settings: MakeSettings, name: str
) -> None:
    data, settings = read(testdata, name), make_settings()
    imaging.probe(data, settings.image_limits)  # the header is intact; the pixels are not
    with pytest.raises(UndecodableImageError):
        render(data, "0x0", "png", settings)


def test_a_png_with_a_text_bomb_renders_without_its_text(testdata: Path, make_settings: MakeSettings) -> None:
    rendered = render(read(testdata, TEXT_BOMB), "0x0", "png", make_settings())
    assert (rendered.width, rendered.height) == (1, 1)
    assert len(rendered.body) < 1000


@pytest.mark.parametrize(
    ("name", "height"), [("formats/samplefilehub.heif", 67), ("formats/IMG_5195.HEIC", 129)]
)
@pytest.mark.parametrize("spec", ["100x", "100x100-fill-sm"])
def test_hevc_heic_that_libvips_cannot_decode_renders_through_pillow_heif(
    testdata: Path, make_settings: MakeSettings, name: str, height: int, spec: str
) -> None:
    rendered = render(read(testdata, name), spec, "jpg", make_settings())
    assert (rendered.width, rendered.height) == (100, 100 if spec.endswith("sm") else height)


@pytest.mark.parametrize(
    "data",
    [pytest.param(SVG, id="svg"), pytest.param(PDF_STUB, id="pdf header stub")],
)
def test_render_refuses_formats_that_are_not_allowed(make_settings: MakeSettings, data: bytes) -> None:
    with pytest.raises(UnsupportedImageError):
        render(data, "100x", "png", make_settings())


def test_render_refuses_an_unknown_output_format(landscape: bytes, make_settings: MakeSettings) -> None:
    with pytest.raises(MalformedPathError):
        render(landscape, "100x", "bmp", make_settings())


# Sizes --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "size"),
    [
        pytest.param("200x", (200, 133), id="fit width only"),
        pytest.param("x100", (150, 100), id="fit height only"),
        pytest.param("200x200", (200, 133), id="fit inside a box"),
        pytest.param("1000x1000", (600, 400), id="fit never enlarges"),
        pytest.param("1000x1000-up", (1000, 667), id="fit enlarges with up"),
        pytest.param("1000x-up", (1000, 667), id="fit one side enlarges with up"),
        pytest.param("200x200-fill", (200, 200), id="fill crops to the box"),
        pytest.param("150x300-fill", (150, 300), id="fill crops across"),
        pytest.param("1000x1000-fill", (400, 400), id="fill without up keeps the aspect at most source size"),
        pytest.param("900x300-fill", (600, 200), id="fill without up wide box"),
        pytest.param("300x900-fill", (133, 400), id="fill without up tall box"),
        pytest.param("1000x1000-fill-up", (1000, 1000), id="fill enlarges with up"),
        pytest.param("200x200-pad", (200, 200), id="pad to the box"),
        pytest.param("1000x1000-pad", (1000, 1000), id="pad without up pads the unenlarged image"),
        pytest.param("0x0", (600, 400), id="full size"),
        pytest.param("0x0-up", (600, 400), id="full size is not enlarged by up"),
    ],
)
def test_render_sizes_a_600x400_original(
    landscape: bytes, make_settings: MakeSettings, spec: str, size: tuple[int, int]
) -> None:
    rendered = render(landscape, spec, "jpg", make_settings())
    output = decode(rendered.body)
    assert (rendered.width, rendered.height) == (output.width, output.height) == size


def test_fit_rounds_to_the_nearest_pixel(make_settings: MakeSettings) -> None:
    data = bytes(pyvips.Image.black(6000, 4000, bands=3).copy(interpretation="srgb").jpegsave_buffer(Q=50))
    rendered = render(data, "400x300", "jpg", make_settings())
    assert (rendered.width, rendered.height) == (400, 267)


@pytest.mark.parametrize(
    ("fixture", "spec", "cap", "size"),
    [
        pytest.param("landscape", "0x0", 300, (300, 200), id="full size"),
        pytest.param("landscape", "x300-up", 300, (300, 200), id="height only, width enlarged past the cap"),
        pytest.param("portrait", "200x-up", 300, (50, 300), id="width only, height enlarged past the cap"),
        pytest.param("portrait", "x500", 500, (83, 500), id="explicit side at the cap is untouched"),
    ],
)
def test_full_size_and_one_sided_specs_are_clamped_to_the_output_cap(
    request: pytest.FixtureRequest,
    make_settings: MakeSettings,
    fixture: str,
    spec: str,
    cap: int,
    size: tuple[int, int],
) -> None:
    rendered = render(request.getfixturevalue(fixture), spec, "png", make_settings(max_output_dimension=cap))
    assert (rendered.width, rendered.height) == size


# JPEG shrink-on-load -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "result", "shrink"),
    [
        pytest.param(6000, 400, 8, id="24 MP into 400 px at 1/8"),
        pytest.param(4000, 400, 8, id="12 MP into 400 px at 1/8: 500 px, as Pillow's draft"),
        pytest.param(1920, 400, 4, id="1080p into 400 px at 1/4: 480 px, as Pillow's draft"),
        pytest.param(1200, 150, 8, id="from 150 px the decoded side may equal the result's"),
        pytest.param(1199, 150, 4, id="a decoded side short of the result's: the next scale"),
        pytest.param(1920, 1100, 1, id="under the result at any scale: a full decode"),
        pytest.param(6000, 100, 8, id="a small result of a large original"),
        pytest.param(1200, 149, 2, id="under 150 px a margin of 2.5: 600 px for 149"),
        pytest.param(500, 100, 2, id="a small result keeps a margin of 2.5: 250 px for 100"),
        pytest.param(980, 100, 2, id="245 px is under 2.5 times 100: the scale before"),
        pytest.param(480, 128, 1, id="a small result under a margin of 2.5 at 1/2"),
        pytest.param(600, 800, 1, id="enlarged"),
    ],
)
def test_a_jpeg_is_decoded_at_the_smallest_scale_that_keeps_the_margin(source: int, result: int, shrink: int) -> None:
    assert imaging._jpeg_shrink(source, result) == shrink


@pytest.mark.parametrize(
    ("size", "spec"),
    [
        pytest.param((6000, 4000), "400x300", id="24 MP into a box"),
        pytest.param((2133, 2040), "132x", id="odd sides"),
        pytest.param((500, 333), "64x", id="small"),
        pytest.param((2512, 241), "507x", id="panorama"),
        pytest.param((1023, 1537), "x150", id="height binds"),
    ],
)
def test_a_jpeg_decoded_at_a_reduced_scale_has_the_size_a_full_decode_gives(
    make_settings: MakeSettings, size: tuple[int, int], spec: str
) -> None:
    # libvips rounds a scaled side down (333 px at 1/2: 166), and its thumbnail sized its result from that: 64x42 here,
    # not 64x43.
    source = pyvips.Image.black(*size, bands=3).copy(interpretation="srgb")
    parsed = parse_spec(spec)
    full = source.thumbnail_image(parsed.width or 10_000_000, height=parsed.height or 10_000_000)
    rendered = render(jpeg(source), spec, "jpg", make_settings())
    assert (rendered.width, rendered.height) == (full.width, full.height)


@pytest.mark.parametrize(
    ("size", "spec"),
    [
        pytest.param((2133, 2041), "131x97-fill", id="fill"),
        pytest.param((3001, 1999), "97x131-fill-sw", id="fill across"),
        pytest.param((1999, 3001), "250x250-pad", id="pad"),
    ],
)
def test_fill_and_pad_of_a_jpeg_decoded_at_a_reduced_scale_are_exactly_the_box(
    make_settings: MakeSettings, size: tuple[int, int], spec: str
) -> None:
    parsed = parse_spec(spec)
    rendered = render(jpeg(noise(*size)), spec, "jpg", make_settings())
    assert (rendered.width, rendered.height) == (parsed.width, parsed.height)


@pytest.mark.parametrize(
    ("name", "spec"),
    [
        pytest.param("orientation/Landscape_1.jpg", "480x", id="1800 px to 480 at 1/2"),
        pytest.param("orientation/Landscape_1.jpg", "240x", id="1800 px to 240 at 1/4"),
        pytest.param("orientation/Landscape_1.jpg", "96x", id="1800 px to 96 at 1/4"),
        pytest.param("formats/fox.progressive.jpg", "160x", id="progressive 1204 px to 160 at 1/4"),
        pytest.param("exif/DSCN0010.jpg", "100x", id="640 px to 100 at 1/2"),
        pytest.param("exif/Landscape_9.jpg", "128x", id="480 px to 128 in full"),
        pytest.param("exif/POC_phpinfo-metadata.jpg", "200x", id="640 px to 200 at 1/2"),
    ],
)
def test_a_jpeg_at_a_reduced_scale_keeps_an_ssim_of_099_against_a_full_decode(
    testdata: Path, make_settings: MakeSettings, name: str, spec: str
) -> None:
    from bench.quality import References

    data = read(testdata, name)
    assert References(data).score(render(data, spec, "png", make_settings()).body) >= 0.99


@pytest.mark.parametrize(
    ("name", "spec"),
    [
        pytest.param("formats/fox.progressive.jpg", "150x", id="1204 px to 150 at 1/8: 150 px decoded"),
        pytest.param("orientation/Landscape_1.jpg", "400x", id="1800 px to 400 at 1/4"),
        pytest.param("exif/DSCN0010.jpg", "320x", id="640 px to 320 at 1/2: 320 px decoded"),
        pytest.param("exif/DSCN0010.jpg", "100x", id="a small result: 640 px to 100 at 1/2"),
    ],
)
def test_a_jpeg_at_a_reduced_scale_keeps_the_ssim_of_pillows_draft(
    testdata: Path, make_settings: MakeSettings, name: str, spec: str
) -> None:
    # What the margins were chosen for (bench/results/jpeg_shrink.md): thumbor's decode, Pillow's draft() to the
    # result's size then LANCZOS, does no better. 0.00015 is how far the two resizes differ from the same pixels.
    import io

    from PIL import Image

    from bench.quality import References

    data = read(testdata, name)
    rendered = render(data, spec, "png", make_settings())
    drafted = Image.open(io.BytesIO(data))
    drafted.draft(None, (rendered.width, rendered.height))
    out = io.BytesIO()
    drafted.resize((rendered.width, rendered.height), Image.Resampling.LANCZOS).save(out, "PNG")
    references = References(data)
    assert references.score(rendered.body) >= references.score(out.getvalue()) - 0.00015


@pytest.mark.parametrize("orientation", [1, 5, 6, 7, 8])
def test_a_turned_jpeg_at_a_reduced_scale_comes_out_upright(
    testdata: Path, make_settings: MakeSettings, orientation: int
) -> None:
    # The scale applies to the stored pixels: 1200x1800 for orientations 5 to 8, and x320 binds their width.
    spec = "x320"
    reference = decode(render(read(testdata, "orientation/Landscape_1.jpg"), spec, "png", make_settings()).body)
    rendered = render(read(testdata, f"orientation/Landscape_{orientation}.jpg"), spec, "png", make_settings())
    output = decode(rendered.body)
    assert (rendered.width, rendered.height) == (output.width, output.height) == (480, 320)
    assert difference(output, reference) < 5


def test_a_truncated_jpeg_decoded_at_a_reduced_scale_is_undecodable(
    testdata: Path, make_settings: MakeSettings
) -> None:
    # 2725x2225 into 300 px is decoded at 1/4: libjpeg still finds the end missing, and fail_on=error stops there.
    with pytest.raises(UndecodableImageError):
        render(read(testdata, "malformed/truncated.jpg"), "300x", "png", make_settings())


def test_a_jpeg_decoded_at_a_reduced_scale_is_stopped_at_the_deadline(make_settings: MakeSettings) -> None:
    tile = noise(600, 400)
    data = bytes(tile.replicate(10, 10).jpegsave_buffer(Q=85))  # 6000x4000, decoded at 1/2 for 1500 px
    with pytest.raises(TransformTimeoutError) as raised:
        render(data, "1500x-sharp", "png", make_settings(transform_timeout=0.05))
    assert isinstance(raised.value.__context__, pyvips.Error)


# Fill gravity, pad, background ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gravity", "wide", "tall"),
    [
        pytest.param("c", GREEN, GREEN, id="centre"),
        pytest.param("n", GREEN, RED, id="north"),
        pytest.param("s", GREEN, BLUE, id="south"),
        pytest.param("e", BLUE, GREEN, id="east"),
        pytest.param("w", RED, GREEN, id="west"),
        pytest.param("ne", BLUE, RED, id="north-east"),
        pytest.param("nw", RED, RED, id="north-west"),
        pytest.param("se", BLUE, BLUE, id="south-east"),
        pytest.param("sw", RED, BLUE, id="south-west"),
    ],
)
def test_fill_gravity_keeps_the_side_it_names(
    make_settings: MakeSettings, gravity: str, wide: tuple[int, ...], tall: tuple[int, ...]
) -> None:
    spec = "100x100-fill" if gravity == "c" else f"100x100-fill-{gravity}"
    for data, expected in (
        (png(stripes(300, 100, (RED, GREEN, BLUE), across=True)), wide),
        (png(stripes(100, 300, (RED, GREEN, BLUE), across=False)), tall),
    ):
        output = decode(render(data, spec, "png", make_settings()).body)
        assert (output.width, output.height) == (100, 100)
        assert close(pixel(output, 50, 50), expected, 2)


def test_smart_fill_crops_towards_the_interesting_part(make_settings: MakeSettings) -> None:
    canvas = solid(300, 100, (128, 128, 128)).insert(solid(60, 60, (230, 40, 40)), 225, 20)
    output = decode(render(png(canvas), "100x100-fill-sm", "png", make_settings()).body)
    centred = decode(render(png(canvas), "100x100-fill", "png", make_settings()).body)
    redness = (output[0] - output[1]).max()
    assert (output.width, output.height) == (100, 100)
    assert redness > 150
    assert (centred[0] - centred[1]).max() < 10


@pytest.mark.parametrize(
    ("spec", "fmt", "padding"),
    [
        pytest.param("200x200-pad", "jpg", [255, 255, 255], id="jpeg pads white"),
        pytest.param("200x200-pad-bg336699", "jpg", [0x33, 0x66, 0x99], id="jpeg pads with bg"),
        pytest.param("200x200-pad", "png", [255, 255, 255, 0], id="png pads transparent"),
        pytest.param("200x200-pad-bg336699", "png", [0x33, 0x66, 0x99], id="png pads with opaque bg"),
        pytest.param("200x200-pad", "webp", [255, 255, 255, 0], id="webp pads transparent"),
    ],
)
def test_pad_centres_the_image_on_its_background(
    landscape: bytes, make_settings: MakeSettings, spec: str, fmt: str, padding: list[int]
) -> None:
    output = decode(render(landscape, spec, fmt, make_settings()).body)
    assert (output.width, output.height) == (200, 200)
    # The 600x400 original fits as 200x133, with 33 rows of padding above and 34 below.
    assert close(pixel(output, 100, 100)[:3], GREEN, 4)
    assert close(pixel(output, 100, 10), padding, 4)
    assert close(pixel(output, 100, 190), padding, 4)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param("0x0", [255, 255, 255], id="white by default"),
        pytest.param("0x0-bgff0000", [255, 0, 0], id="onto bg"),
    ],
)
def test_alpha_is_flattened_onto_the_background_for_jpeg(
    make_settings: MakeSettings, spec: str, expected: list[int]
) -> None:
    transparent_blue = png(solid(64, 64, (0, 0, 255, 0)))
    output = decode(render(transparent_blue, spec, "jpg", make_settings()).body)
    assert output.bands == 3
    assert close(pixel(output, 32, 32), expected, 3)


@pytest.mark.parametrize("fmt", ["png", "webp", "avif", "gif"])
@pytest.mark.parametrize(
    "name",
    ["formats/Flag_of_the_Netherlands-alpha.png", "formats/2_webp_ll.webp", "formats/pil123p.png"],
)
def test_alpha_is_kept_for_formats_that_have_it(
    testdata: Path, make_settings: MakeSettings, name: str, fmt: str
) -> None:
    output = decode(render(read(testdata, name), "120x", fmt, make_settings()).body)
    assert output.hasalpha()
    # GIF transparency is all or nothing: the flag's half-transparent colours come out opaque.
    if not (fmt == "gif" and name == "formats/Flag_of_the_Netherlands-alpha.png"):
        assert output.extract_band(output.bands - 1).min() < 255


def test_alpha_sources_lose_their_alpha_band_in_jpeg(testdata: Path, make_settings: MakeSettings) -> None:
    output = decode(render(read(testdata, "formats/2_webp_ll.webp"), "120x", "jpg", make_settings()).body)
    assert output.bands == 3


# Quality and filters ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jpg", "webp", "avif"])
def test_quality_changes_the_size_of_lossy_formats(make_settings: MakeSettings, fmt: str) -> None:
    data = png(noise(160, 160))
    low = render(data, "0x0-q10", fmt, make_settings())
    high = render(data, "0x0-q95", fmt, make_settings())
    default = render(data, "0x0", fmt, make_settings())
    assert len(low.body) < len(default.body) < len(high.body)


def test_blur_smooths_without_changing_the_size(make_settings: MakeSettings) -> None:
    data = png(noise(120, 80))
    plain = decode(render(data, "0x0", "png", make_settings()).body)
    blurred = decode(render(data, "0x0-blur20", "png", make_settings()).body)
    assert (blurred.width, blurred.height) == (120, 80)
    assert blurred.deviate() < plain.deviate() / 3


def test_blur_gives_transparent_pixels_no_say_in_the_colour(make_settings: MakeSettings) -> None:
    # Left half: invisible red; right half: opaque green. Blurred edge pixels must stay green.
    image = pyvips.Image.arrayjoin([solid(50, 40, (255, 0, 0, 0)), solid(50, 40, (0, 255, 0, 255))], across=2)
    output = decode(render(png(image), "0x0-blur30", "png", make_settings()).body)
    red, green, _, alpha = pixel(output, 49, 20)
    assert 0 < alpha < 255
    assert red < 10 < green


def test_sharp_sharpens_without_changing_the_size(make_settings: MakeSettings) -> None:
    data = png(noise(120, 80, sigma=10))
    plain = decode(render(data, "0x0", "png", make_settings()).body)
    sharpened = decode(render(data, "0x0-sharp", "png", make_settings()).body)
    assert (sharpened.width, sharpened.height) == (120, 80)
    assert sharpened.deviate() > plain.deviate()


# Formats ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "content_type", "magic"),
    [
        pytest.param("jpg", "image/jpeg", (0, b"\xff\xd8\xff"), id="jpg"),
        pytest.param("png", "image/png", (0, b"\x89PNG\r\n\x1a\n"), id="png"),
        pytest.param("webp", "image/webp", (8, b"WEBP"), id="webp"),
        pytest.param("avif", "image/avif", (4, b"ftypavif"), id="avif"),
        pytest.param("gif", "image/gif", (0, b"GIF8"), id="gif"),
    ],
)
def test_each_format_has_its_content_type_and_signature(
    landscape: bytes, make_settings: MakeSettings, fmt: str, content_type: str, magic: tuple[int, bytes]
) -> None:
    rendered = render(landscape, "60x", fmt, make_settings())
    offset, signature = magic
    assert rendered.content_type == CONTENT_TYPES[fmt] == content_type
    assert rendered.body[offset : offset + len(signature)] == signature
    assert (rendered.width, rendered.height) == (60, 40)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_of_the_table_is_written_as_the_type_and_format_it_names(
    landscape: bytes, make_settings: MakeSettings, fmt: str
) -> None:
    """libvips reads back what was written with the loader of the table's format, whatever the table says."""
    rendered = render(landscape, "60x", fmt, make_settings())
    loader = pyvips.Image.new_from_buffer(rendered.body, "").get("vips-loader").removesuffix("_buffer")
    assert imaging.FORMAT_OF_LOADER[loader] == fmt
    assert rendered.content_type == BY_NAME[fmt].content_type


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_format_keeps_alpha_exactly_when_the_table_says_it_holds_alpha(
    make_settings: MakeSettings, fmt: str
) -> None:
    half_transparent = pyvips.Image.black(16, 16, bands=3).bandjoin(128).copy(interpretation="srgb")
    rendered = render(png(half_transparent), "0x0", fmt, make_settings())
    assert bool(decode(rendered.body).hasalpha()) is BY_NAME[fmt].alpha


# Orientation --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def upright(testdata: Path) -> pyvips.Image:
    return decode(render(read(testdata, "orientation/Landscape_1.jpg"), "90x", "png", Settings()).body)


@pytest.mark.parametrize("orientation", range(9))
def test_every_exif_orientation_comes_out_upright(
    testdata: Path, make_settings: MakeSettings, upright: pyvips.Image, orientation: int
) -> None:
    output = decode(
        render(read(testdata, f"orientation/Landscape_{orientation}.jpg"), "90x", "png", make_settings()).body
    )
    assert (output.width, output.height) == (90, 60)
    assert (output - upright).abs().avg() < 5


@pytest.mark.parametrize("orientation", [1, 5, 6, 7, 8])
@pytest.mark.parametrize(
    ("spec", "size"),
    [
        pytest.param("60x60-fill", (60, 60), id="fill"),
        pytest.param("3600x1200-fill", (1800, 600), id="fill without up, from the upright size"),
        pytest.param("60x60-pad", (60, 60), id="pad"),
    ],
)
def test_fill_and_pad_work_on_the_upright_image(
    testdata: Path, make_settings: MakeSettings, orientation: int, spec: str, size: tuple[int, int]
) -> None:
    reference = decode(render(read(testdata, "orientation/Landscape_1.jpg"), spec, "jpg", make_settings()).body)
    rendered = render(read(testdata, f"orientation/Landscape_{orientation}.jpg"), spec, "jpg", make_settings())
    output = decode(rendered.body)
    assert (rendered.width, rendered.height) == (output.width, output.height) == size
    assert difference(output, reference) < 5


def test_the_orientation_check_tells_a_mirrored_image_apart(upright: pyvips.Image) -> None:
    assert (upright.fliphor() - upright).abs().avg() > 30


def test_a_rotated_jpeg_at_full_size_is_1800x1200_without_an_orientation_tag(
    testdata: Path, make_settings: MakeSettings
) -> None:
    rendered = render(read(testdata, "orientation/Landscape_6.jpg"), "0x0", "jpg", make_settings())
    output = decode(rendered.body)
    assert (rendered.width, rendered.height) == (output.width, output.height) == (1800, 1200)
    assert not output.get_typeof("orientation") or output.get("orientation") == 1


@pytest.mark.parametrize(
    ("name", "size"),
    [
        pytest.param("orientation/Exif6.webp", (640, 427), id="webp exif orientation is applied"),
        pytest.param("orientation/rot1mir0.avif", (640, 427), id="avif irot is applied once by the decoder"),
        pytest.param("orientation/Exif6.avif", (427, 640), id="avif exif orientation is ignored as MIAF says"),
        # libvips does not read a PNG eXIf chunk: the stored pixels are rendered as they are.
        pytest.param("orientation/test-rotation-90cw.png", (128, 96), id="png exif chunk is not read"),
    ],
)
def test_orientation_of_other_formats(
    testdata: Path, make_settings: MakeSettings, name: str, size: tuple[int, int]
) -> None:
    rendered = render(read(testdata, name), "0x0", "png", make_settings())
    assert (rendered.width, rendered.height) == size


# Metadata -----------------------------------------------------------------------------------------------------------

EXIF_FILES = [
    "exif/32-lens_data.jpeg",
    "exif/Canon_40D.jpg",
    "exif/DSCN0010.jpg",
    "exif/Landscape_9.jpg",
    "exif/POC_phpinfo-metadata.jpg",
    "exif/exif_gps.jpg",
    "exif/paris_icc_exif_xmp.avif",
]


def test_the_metadata_table_lists_every_file_in_exif(testdata: Path) -> None:
    assert {str(path.relative_to(testdata)) for path in (testdata / "exif").iterdir()} == set(EXIF_FILES)


@pytest.mark.parametrize("fmt", ["jpg", "png", "webp", "avif"])
@pytest.mark.parametrize("name", EXIF_FILES)
def test_outputs_carry_no_metadata(testdata: Path, make_settings: MakeSettings, name: str, fmt: str) -> None:
    source = read(testdata, name)
    assert any(
        field.startswith(("exif-", "xmp-", "iptc-")) for field in pyvips.Image.new_from_buffer(source, "").get_fields()
    )
    body = render(source, "64x", fmt, make_settings()).body
    fields = decode(body).get_fields()
    assert [
        field for field in fields if field.startswith(("exif-", "xmp-", "iptc-", "icc-", "gps")) or "comment" in field
    ] == []
    for marker in (b"<?php", b"Exif\x00\x00", b"http://ns.adobe.com/xap/1.0/", b"Photoshop 3.0"):
        assert marker not in body


# Colour -------------------------------------------------------------------------------------------------------------


def managed(data: bytes, **profiles: str) -> pyvips.Image:
    """The whole original decoded and converted to sRGB by libvips directly: what render must agree with."""
    return pyvips.Image.new_from_buffer(data, "").icc_transform("srgb", **profiles).cast("uchar")


@pytest.mark.parametrize(
    ("name", "profiles"),
    [
        pytest.param("formats/Channel_digital_image_CMYK_color.jpg", {"embedded": True}, id="cmyk with profile"),
        pytest.param("formats/pil_sample_cmyk.jpg", {"input_profile": "cmyk"}, id="inverted cmyk without profile"),
        pytest.param("formats/sample-xyb.jpg", {"embedded": True}, id="xyb"),
        pytest.param("formats/countergirl-adobergb.jpg", {"embedded": True}, id="adobe rgb"),
        pytest.param("formats/p3.png", {"embedded": True}, id="display p3 with alpha"),
    ],
)
def test_tagged_colours_are_converted_to_srgb(
    testdata: Path, make_settings: MakeSettings, name: str, profiles: dict[str, object]
) -> None:
    data = read(testdata, name)
    output = decode(render(data, "0x0", "png", make_settings()).body)
    expected = managed(data, **profiles)  # type: ignore[arg-type]
    assert output.interpretation == "srgb" and output.format == "uchar"
    assert close(band_means(output), band_means(expected), 2)


def test_an_xyb_jpeg_is_far_from_its_raw_pixels_once_managed(testdata: Path, make_settings: MakeSettings) -> None:
    data = read(testdata, "formats/sample-xyb.jpg")
    output = decode(render(data, "0x0", "png", make_settings()).body)
    raw = pyvips.Image.new_from_buffer(data, "")
    assert (output - raw).abs().avg() > 10


def test_cmyk_without_a_profile_is_not_inverted(testdata: Path, make_settings: MakeSettings) -> None:
    # Pillow's test for this file: red in the top left corner, black in the bottom right.
    output = decode(render(read(testdata, "formats/pil_sample_cmyk.jpg"), "0x0", "png", make_settings()).body)
    assert output.bands == 3
    red, green, blue = pixel(output, 1, 1)
    assert red > 180 and green < 80 and blue < 80
    assert max(pixel(output, output.width - 2, output.height - 2)) < 60


def test_a_grey_jpeg_with_an_rgb_profile_renders(testdata: Path, make_settings: MakeSettings) -> None:
    rendered = render(read(testdata, "formats/test-grey-rgb-profile.jpg"), "0x0", "png", make_settings())
    output = decode(rendered.body)
    assert (output.width, output.height) == (538, 577)
    assert output.format == "uchar"
    assert output.avg() < 5  # the original is black


@pytest.mark.parametrize(
    ("name", "bands"),
    [
        pytest.param("formats/Flag_of_the_Netherlands-16bit.png", 3, id="16-bit rgb png"),
        pytest.param("formats/bggn4a16.png", 4, id="16-bit grey and alpha png"),
        pytest.param("formats/fox.profile0.10bpc.yuv420.avif", 3, id="10-bit avif"),
    ],
)
@pytest.mark.parametrize("fmt", ["png", "webp"])
def test_deep_originals_come_out_8_bit_srgb(
    testdata: Path, make_settings: MakeSettings, name: str, bands: int, fmt: str
) -> None:
    data = read(testdata, name)
    output = decode(render(data, "0x0", fmt, make_settings()).body)
    source = pyvips.Image.new_from_buffer(data, "")
    assert output.format == "uchar" and output.interpretation == "srgb" and output.bands == bands
    # Same picture, same brightness: 16-bit values scaled to 8 bits, not clipped or truncated.
    assert abs(output.extract_band(0).avg() - source.extract_band(0).avg() / 257) < 3


def test_a_10_bit_avif_matches_its_8_bit_twin(testdata: Path, make_settings: MakeSettings) -> None:
    deep = decode(render(read(testdata, "formats/fox.profile0.10bpc.yuv420.avif"), "200x", "png", make_settings()).body)
    shallow = decode(
        render(read(testdata, "formats/fox.profile0.8bpc.yuv420.avif"), "200x", "png", make_settings()).body
    )
    assert (deep - shallow).abs().avg() < 4


# Animation ----------------------------------------------------------------------------------------------------------

ANIMATIONS = ["formats/animated-loop-3.gif", "formats/animated-loop-3.webp"]


@pytest.mark.parametrize("name", ANIMATIONS)
@pytest.mark.parametrize(
    ("spec", "frame"),
    [
        pytest.param("100x", (100, 77), id="fit"),
        pytest.param("80x80-fill", (80, 80), id="fill"),
        pytest.param("80x80-fill-sm", (80, 80), id="smart fill uses the centre"),
        pytest.param("200x100-pad", (200, 100), id="pad"),
        pytest.param("100x-blur10-sharp", (100, 77), id="filters"),
    ],
)
def test_animations_stay_animated_into_webp(
    testdata: Path, make_settings: MakeSettings, name: str, spec: str, frame: tuple[int, int]
) -> None:
    rendered = render(read(testdata, name), spec, "webp", make_settings())
    output = decode(rendered.body, animated=True)
    assert (rendered.width, rendered.height) == frame
    assert output.get_n_pages() == 10
    assert (output.width, output.get_page_height(), output.height) == (frame[0], frame[1], frame[1] * 10)
    assert output.get("loop") == 3


@pytest.mark.parametrize("name", ANIMATIONS)
def test_animations_stay_animated_into_gif_with_their_timing(
    testdata: Path, make_settings: MakeSettings, name: str
) -> None:
    data = read(testdata, name)
    source = pyvips.Image.new_from_buffer(data, "", n=-1)
    rendered = render(data, "100x", "gif", make_settings())
    output = decode(rendered.body, animated=True)
    # The GIF encoder merges identical consecutive frames and adds up their delays.
    assert 1 < output.get_n_pages() <= 10
    assert sum(output.get("delay")) == sum(source.get("delay"))
    assert output.get("loop") == 3
    assert (output.width, output.get_page_height()) == (rendered.width, rendered.height) == (100, 77)


@pytest.mark.parametrize("fmt", ["jpg", "png", "avif"])
def test_animations_give_their_first_frame_to_still_formats(
    testdata: Path, make_settings: MakeSettings, fmt: str
) -> None:
    rendered = render(read(testdata, "formats/animated-loop-3.gif"), "100x", fmt, make_settings())
    output = decode(rendered.body)
    assert (output.width, output.height) == (rendered.width, rendered.height) == (100, 77)


@pytest.mark.parametrize(
    ("spec", "overrides"),
    [
        pytest.param("100x", {"max_frames": 5}, id="more frames than allowed"),
        pytest.param("100x", {"max_source_pixels": 370 * 285 * 9}, id="all frames over the pixel budget"),
        pytest.param("1000x-up", {"max_source_pixels": 5_000_000}, id="enlarged frames over the pixel budget"),
        pytest.param("1000x1000-pad", {"max_source_pixels": 5_000_000}, id="padded frames over the pixel budget"),
    ],
)
def test_animations_over_the_limits_render_their_first_frame(
    testdata: Path, make_settings: MakeSettings, spec: str, overrides: dict[str, int]
) -> None:
    settings = make_settings(**overrides)
    data = read(testdata, "formats/animated-loop-3.webp")
    imaging.probe(data, settings.image_limits)
    rendered = render(data, spec, "webp", settings)
    output = decode(rendered.body, animated=True)
    assert output.get_n_pages() == 1
    assert output.height == rendered.height
