"""HEIC, TIFF and BMP originals, in-process: orientation, colour profile, depth, alpha and pages as for the other
formats, their pixel limits named in their refusals, what an upload stores of them, and ``check``'s finding."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
import pyvips
from PIL import Image

from resize_sidecar.core.errors import SourceTooLargeError, UndecodableImageError, UnsupportedImageError
from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import parse_spec
from resize_sidecar.media import imaging, originals
from resize_sidecar.ops import check
from tests.support.pictures import (
    ORIENTATION_TAG,
    bmp,
    display_p3_profile,
    heic,
    multipage_tiff,
    picture,
    tiff,
    to_pyvips,
)

MakeSettings = Callable[..., Settings]
#: Largest difference per channel allowed between two lossy codings of the same picture.
TOLERANCE = 12


def render(data: bytes, spec: str = "0x0", fmt: str = "png", settings: Settings | None = None) -> pyvips.Image:
    made = imaging.render(data, parse_spec(spec), fmt, (settings or Settings()).image_limits)
    return pyvips.Image.new_from_buffer(made.body, "")


def prepare(data: bytes) -> originals.Original:
    """An upload as the default settings store it."""
    settings = Settings()
    return originals.prepare_original(
        data, settings.image_limits, auto_orient=settings.auto_orient_original, strip_gps=settings.strip_original_gps
    )


def corners(image: pyvips.Image) -> list[list[float]]:
    """The mean colour of a small square inside each corner, clockwise from the top left."""
    side = max(2, min(image.width, image.height) // 10)
    spots = [(1, 1), (image.width - side - 1, 1), (image.width - side - 1, image.height - side - 1),
             (1, image.height - side - 1)]  # fmt: skip
    return [[image.crop(x, y, side, side)[band].avg() for band in range(3)] for x, y in spots]


def close(first: list[list[float]], second: list[list[float]]) -> bool:
    pairs = zip(sum(first, []), sum(second, []), strict=True)
    return all(abs(a - b) <= TOLERANCE for a, b in pairs)


def jpeg_with_orientation(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95, exif=exif.tobytes())
    return out.getvalue()


# HEIC ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_an_heic_is_turned_by_its_transform_boxes_once_as_a_jpeg_by_its_exif_tag(orientation: int) -> None:
    stored = picture(96, 64)
    data = heic(stored, orientation=orientation, quality=95)
    # The tag stays in the EXIF beside the boxes that apply it, as iPhones write it: it must not turn it again.
    assert b"\x01\x12\x00\x03\x00\x00\x00\x01\x00" + bytes([orientation]) in data  # big-endian IFD0 entry
    made, expected = render(data), render(jpeg_with_orientation(stored, orientation))
    assert (made.width, made.height) == (expected.width, expected.height)
    assert close(corners(made), corners(expected))


def test_a_display_p3_heic_is_converted_to_srgb_as_a_display_p3_png_is() -> None:
    flat = Image.new("RGB", (64, 64), (40, 200, 60))
    profile = display_p3_profile()
    out = io.BytesIO()
    flat.save(out, "PNG", icc_profile=profile)
    from_heic, from_png = render(heic(flat, icc=profile, quality=95)), render(out.getvalue())
    untagged = render(heic(flat, quality=95))
    assert close(corners(from_heic), corners(from_png))
    # Display P3's green is outside sRGB: converted, it is not the number stored.
    assert not close(corners(from_heic), corners(untagged))


def test_a_10_bit_heic_with_alpha_keeps_its_alpha_and_comes_out_8_bit() -> None:
    data = heic(picture(64, 48, alpha=True), ten_bit=True, quality=95)
    assert imaging.decode_whole(data, imaging.probe(data, Settings().image_limits)).format == "ushort"
    made = render(data)
    assert (made.bands, made.format) == (4, "uchar")
    assert made.crop(2, 2, 10, 10)[3].avg() == pytest.approx(255, abs=2)
    assert made.crop(52, 2, 10, 10)[3].avg() == pytest.approx(128, abs=4)


def test_an_iphone_heic_from_the_corpus_renders_upright_at_its_size(testdata: Path) -> None:
    made = render((testdata / "formats/IMG_5195.HEIC").read_bytes(), "300x", "jpg")
    assert (made.width, made.height) == (300, 387)
    assert not [name for name in made.get_fields() if name.startswith(("exif-", "icc-", "xmp-"))]


def test_an_heic_cut_short_is_undecodable_and_says_so() -> None:
    data = heic(picture(256, 256), quality=95)
    with pytest.raises(UndecodableImageError) as raised:
        render(data[: len(data) - 200])
    assert raised.value.status == 422
    assert raised.value.detail.startswith("heifload: ")


def test_an_heic_over_max_heif_pixels_is_refused_naming_the_setting(make_settings: MakeSettings) -> None:
    with pytest.raises(SourceTooLargeError, match=r"over the limit of 3071 pixels \(MAX_HEIF_PIXELS\)"):
        imaging.probe(heic(picture(64, 48)), make_settings(max_heif_pixels=64 * 48 - 1).image_limits)


# TIFF ---------------------------------------------------------------------------------------------------------------


def test_a_multipage_tiff_renders_its_first_page() -> None:
    first = to_pyvips(picture(64, 48))
    made = render(multipage_tiff(first, first.flip("horizontal")))
    assert (made.width, made.height) == (64, 48)
    assert close(corners(made), corners(first))


def test_a_16_bit_tiff_comes_out_8_bit_with_the_same_colours() -> None:
    image = to_pyvips(picture(64, 48))
    made = render(tiff((image.cast("ushort") * 257).cast("ushort").copy(interpretation="rgb16"), compression="lzw"))
    assert made.format == "uchar"
    assert close(corners(made), corners(image))


def test_a_cmyk_tiff_with_its_profile_comes_out_srgb_in_its_colours() -> None:
    cmyk = to_pyvips(picture(64, 48)).icc_transform("cmyk", intent="relative")  # with libvips' CMYK profile
    made = render(tiff(cmyk, compression="deflate"))
    assert (made.bands, made.interpretation) == (3, "srgb")
    assert close(corners(made), corners(cmyk.icc_transform("srgb", intent="relative")))


def test_a_tiff_over_max_tiff_pixels_is_refused_naming_the_setting(make_settings: MakeSettings) -> None:
    with pytest.raises(SourceTooLargeError, match=r"a TIFF of 64x48 pixels .* \(MAX_TIFF_PIXELS\)"):
        imaging.probe(tiff(to_pyvips(picture(64, 48))), make_settings(max_tiff_pixels=1000).image_limits)


# BMP ----------------------------------------------------------------------------------------------------------------


def test_a_bmp_with_alpha_keeps_it() -> None:
    made = render(bmp(picture(64, 48, alpha=True)))
    assert made.bands == 4
    assert made.crop(52, 2, 10, 10)[3].avg() == pytest.approx(128, abs=1)
    assert made.crop(2, 2, 10, 10)[3].avg() == 255


def test_an_rle8_bmp_renders_as_its_picture() -> None:
    stored = picture(64, 48)
    data = bmp(stored, rle=True)
    assert data[30:34] == b"\x01\x00\x00\x00"  # BI_RLE8
    made = render(data)
    assert (made.width, made.height) == (64, 48)
    assert close(corners(made), corners(to_pyvips(stored)))


@pytest.mark.parametrize("cut", [60, 5000])
def test_a_bmp_cut_short_is_undecodable(cut: int) -> None:
    with pytest.raises(UndecodableImageError) as raised:
        render(bmp(picture(64, 48))[:cut])
    assert raised.value.status == 422
    assert raised.value.detail.startswith("bmpload: ")


def test_a_bmp_declaring_more_than_max_bmp_pixels_is_refused_from_its_header(make_settings: MakeSettings) -> None:
    header = bytearray(bmp(picture(8, 8)))
    header[18:26] = (5000).to_bytes(4, "little") + (4000).to_bytes(4, "little")  # 20 MP, eight pixels of data
    with pytest.raises(SourceTooLargeError, match=r"a BMP of 5000x4000 pixels .* \(MAX_BMP_PIXELS\)"):
        imaging.probe(bytes(header), make_settings().image_limits)


def test_a_bmp_over_pillows_own_limit_is_too_large_naming_the_setting_set_above_it(make_settings: MakeSettings) -> None:
    header = bytearray(bmp(picture(8, 8)))
    header[18:26] = (20_000).to_bytes(4, "little") + (20_000).to_bytes(4, "little")  # 400 MP
    with pytest.raises(SourceTooLargeError, match=r"\(MAX_BMP_PIXELS allows more than Pillow reads\)"):
        imaging.probe(bytes(header), make_settings(max_source_pixels=10**9, max_bmp_pixels=10**9).image_limits)


def test_a_bmp_is_refused_when_bmpload_is_not_allowed(make_settings: MakeSettings) -> None:
    others = tuple(name for name in Settings().allowed_loaders if name != "bmpload")
    with pytest.raises(UnsupportedImageError, match="bmpload originals are not allowed"):
        imaging.probe(bmp(picture(8, 8)), make_settings(allowed_loaders=others).image_limits)


# Uploads ------------------------------------------------------------------------------------------------------------


def test_an_upload_that_needs_no_change_is_stored_as_uploaded(testdata: Path) -> None:
    for name in ("formats/Flag_of_the_Netherlands-16bit.png", "formats/iss634.apng", "formats/4.webp"):
        data = (testdata / name).read_bytes()
        assert prepare(data).body == data, name


def test_an_iphone_heic_upload_is_stored_as_avif_upright_without_its_location_and_not_larger() -> None:
    data = heic(picture(640, 480), orientation=6, icc=display_p3_profile(), gps=True)
    stored = prepare(data)
    assert (stored.fmt, stored.content_type, stored.width, stored.height) == ("avif", "image/avif", 480, 640)
    image = pyvips.Image.new_from_buffer(stored.body, "")
    assert (image.width, image.height) == (480, 640)
    assert not [name for name in image.get_fields() if name.startswith("exif-ifd3-")]
    assert image.get("exif-ifd0-Model").startswith("iPhone 15")
    exif = Image.Exif()
    exif.load(image.get("exif-data"))
    assert exif[ORIENTATION_TAG] == 1  # the pixels are upright: a viewer honouring the tag must not turn them
    assert image.get_typeof("icc-profile-data")


def test_the_corpus_iphone_heic_is_stored_as_an_avif_about_its_size(testdata: Path) -> None:
    data = (testdata / "formats/IMG_5195.HEIC").read_bytes()
    stored = prepare(data)
    assert stored.fmt == "avif"
    assert len(stored.body) <= 1.1 * len(data)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: tiff(to_pyvips(picture(64, 48)), compression="lzw"), id="tiff"),
        pytest.param(lambda: bmp(picture(64, 48, alpha=True)), id="bmp with alpha"),
    ],
)
def test_a_tiff_or_bmp_upload_is_stored_as_png(make: Callable[[], bytes]) -> None:
    stored = prepare(make())
    assert (stored.fmt, stored.content_type, stored.width, stored.height) == ("png", "image/png", 64, 48)
    assert pyvips.Image.new_from_buffer(stored.body, "").get("vips-loader") == "pngload_buffer"


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: heic(picture(64, 48), gps=True), id="heic"),
        pytest.param(lambda: bmp(picture(64, 48)), id="bmp"),
    ],
)
def test_an_heic_or_bmp_is_described_with_a_placeholder(make: Callable[[], bytes]) -> None:
    described = originals.describe(make(), Settings().image_limits)
    assert (described.info.width, described.info.height) == (64, 48)
    assert len(described.blurhash) == 28


def test_without_pillow_heif_an_heic_is_refused_as_unsupported_and_check_warns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(imaging, "HEVC_DECODER", False)
    with pytest.raises(UnsupportedImageError, match="needs pillow-heif, which is not installed"):
        imaging.probe(heic(picture(64, 48)), Settings().image_limits)
    finding = check._check_heic(Settings())
    assert (finding.status, finding.detail) == (
        "warn",
        "HEIC originals are refused: HEVC-coded HEIF (HEIC) needs pillow-heif, which is not installed",
    )


def test_check_reports_heic_as_ok_naming_its_decoder() -> None:
    finding = check._check_heic(Settings())
    assert finding.status == "ok"
    assert "libde265" in finding.detail


@pytest.mark.parametrize("name", ["malformed/truncated.jpg", "malformed/truncated.png", "malformed/truncated.gif"])
def test_an_upload_with_nothing_to_change_is_still_decoded_in_full_and_refused_when_cut_short(
    testdata: Path, name: str
) -> None:
    with pytest.raises(UndecodableImageError) as raised:
        prepare((testdata / name).read_bytes())
    assert raised.value.status == 422


def test_a_10_bit_heic_upload_with_alpha_is_stored_deep_with_its_alpha() -> None:
    stored = prepare(heic(picture(64, 48, alpha=True), ten_bit=True))
    image = pyvips.Image.new_from_buffer(stored.body, "")
    assert (stored.fmt, image.bands, image.format) == ("avif", 4, "ushort")
