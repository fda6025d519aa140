"""The spec's focal point, crop, rotate and flip, rendered: pixel checks on pictures with marked places.

Each picture is made here with blocks of colour where the test looks for them; a check reads the colour at the
place the contract says the mark lands, so a crop cut elsewhere, a turn the wrong way or a focal point ignored
shows up as the wrong colour there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import pyvips

from resize_sidecar.core.errors import MalformedPathError
from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import parse_spec
from resize_sidecar.media import imaging

MakeSettings = Callable[..., Settings]
Colour = tuple[int, int, int]
GREY, BLACK = (128, 128, 128), (0, 0, 0)
RED, GREEN, BLUE, YELLOW = (230, 20, 20), (20, 200, 20), (20, 20, 230), (240, 220, 0)
# A decoded JPEG or a resized edge is never the exact colour: near enough is within this of each band.
TOLERANCE = 40


def marked(width: int, height: int, marks: Sequence[tuple[float, float, float, float, Colour]]) -> pyvips.Image:
    """A grey picture with a block of colour per mark: (x, y, width, height) as fractions of the picture."""
    image = (pyvips.Image.black(width, height, bands=3) + list(GREY)).cast("uchar")
    for x, y, w, h, colour in marks:
        left, top = round(x * width), round(y * height)
        block = (pyvips.Image.black(round(w * width), round(h * height), bands=3) + list(colour)).cast("uchar")
        image = image.insert(block, left, top)
    return image.copy(interpretation="srgb")


def quadrants(width: int, height: int) -> pyvips.Image:
    """Red top left, green top right, blue bottom left, yellow bottom right."""
    return marked(
        width,
        height,
        [(0, 0, 0.5, 0.5, RED), (0.5, 0, 0.5, 0.5, GREEN), (0, 0.5, 0.5, 0.5, BLUE), (0.5, 0.5, 0.5, 0.5, YELLOW)],
    )


def encode(image: pyvips.Image, fmt: str, orientation: int = 1) -> bytes:
    if orientation != 1:
        image = image.copy()
        image.set_type(pyvips.GValue.gint_type, "orientation", orientation)
    if fmt == "jpg":
        return bytes(image.jpegsave_buffer(Q=95))
    return bytes(image.pngsave_buffer(compression=1))


def render(data: bytes, spec: str, settings: Settings, fmt: str = "png") -> pyvips.Image:
    made = imaging.render(data, parse_spec(spec), fmt, settings.image_limits)
    image = pyvips.Image.new_from_buffer(made.body, "").copy_memory()
    assert (image.width, image.height) == (made.width, made.height)
    return image


def colour_at(image: pyvips.Image, x: float, y: float) -> Colour:
    """The colour at fractions of the picture's width and height (nearest pixel)."""
    values = image(min(int(x * image.width), image.width - 1), min(int(y * image.height), image.height - 1))
    return values[0], values[1], values[2]


def is_colour(actual: Sequence[float], expected: Colour) -> bool:
    return all(abs(a - e) <= TOLERANCE for a, e in zip(actual[:3], expected, strict=True))


def dark_centre(image: pyvips.Image) -> tuple[float, float]:
    """The centre of the black pixels, in pixels."""
    mask = image.extract_band(0) < 60
    ys, xs = mask.project()  # rows of column sums, columns of row sums
    columns = [index for index in range(ys.width) if ys(index, 0)[0] > 0]
    rows = [index for index in range(xs.height) if xs(0, index)[0] > 0]
    assert columns and rows, "no black pixel left"
    return (columns[0] + columns[-1] + 1) / 2, (rows[0] + rows[-1] + 1) / 2


def turned(x: float, y: float, rotate: int, flip: str | None) -> tuple[float, float]:
    """Where a point (fractions) of a picture lands once turned clockwise by ``rotate``, then flipped."""
    for _ in range(rotate // 90):
        x, y = 1 - y, x
    if flip == "x":
        x = 1 - x
    elif flip == "y":
        y = 1 - y
    return x, y


def stored_for(upright: pyvips.Image, orientation: int) -> pyvips.Image:
    """The pixels a camera stores with EXIF ``orientation`` for a picture that is ``upright`` once shown."""
    candidates = [upright, upright.flip("horizontal")]
    for turn in ("d90", "d180", "d270"):
        candidates += [upright.rot(turn), upright.rot(turn).flip("horizontal")]
    for candidate in candidates:
        tagged = candidate.copy()
        tagged.set_type(pyvips.GValue.gint_type, "orientation", orientation)
        shown = tagged.autorot()
        if (shown.width, shown.height) == (upright.width, upright.height) and (shown - upright).abs().max() == 0:
            return candidate
    raise AssertionError(f"no stored picture shows upright with orientation {orientation}")


def from_camera(marks: Sequence[tuple[float, float, float, float, Colour]], orientation: int) -> bytes:
    """A JPEG of an 800x600 picture with ``marks`` once shown upright, stored as a camera held at ``orientation``."""
    return encode(stored_for(marked(800, 600, marks), orientation), "jpg", orientation)


# Crop -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_a_crop_keeps_exactly_its_region(make_settings: MakeSettings, fmt: str) -> None:
    # A blue block at x 600..800 and y 250..500 of 1000 (pixels 600..800, 200..400): the crop is the block.
    original = encode(marked(1000, 800, [(0.6, 0.25, 0.2, 0.25, BLUE)]), fmt)
    image = render(original, "0x0-crop600.250.200.250", make_settings())
    assert (image.width, image.height) == (200, 200)
    for x, y in ((0.02, 0.02), (0.98, 0.02), (0.5, 0.5), (0.02, 0.98), (0.98, 0.98)):
        assert is_colour(colour_at(image, x, y), BLUE), (x, y)


def test_a_crop_comes_before_the_resize(make_settings: MakeSettings) -> None:
    # The top-right quadrant of 1200x800 is 600x400; fitted to 300 wide it is 300x200 and wholly green.
    image = render(encode(quadrants(1200, 800), "png"), "300x-crop500.0.500.500", make_settings())
    assert (image.width, image.height) == (300, 200)
    assert all(is_colour(colour_at(image, x, y), GREEN) for x in (0.05, 0.95) for y in (0.05, 0.95))


def test_a_crop_of_a_large_jpeg_is_cut_from_a_decode_shrunk_on_load(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A sixteenth of 4000x3000 (1000x750) to 200 wide: libjpeg decodes the whole at the DCT scale that keeps the
    # margin over the result for the region's 1000 pixels, a finer one than the whole original's 4000 would take.
    loads: list[dict[str, object]] = []
    call = pyvips.Operation.call

    def recording(name: str, *args: object, **options: object) -> object:
        if name == "jpegload_source":
            loads.append(options)
        return call(name, *args, **options)

    original = encode(quadrants(4000, 3000), "jpg")
    monkeypatch.setattr(pyvips.Operation, "call", recording)
    image = render(original, "200x-crop0.500.250.250", make_settings())
    assert [load["shrink"] for load in loads if "shrink" in load] == [imaging._jpeg_shrink(1000, 200)]
    assert 1 < imaging._jpeg_shrink(1000, 200) < imaging._jpeg_shrink(4000, 200)
    assert (image.width, image.height) == (200, 150)
    assert all(is_colour(colour_at(image, x, y), BLUE) for x in (0.05, 0.95) for y in (0.05, 0.95))


def test_a_crop_of_one_per_mille_is_still_at_least_one_pixel(make_settings: MakeSettings) -> None:
    image = render(encode(quadrants(500, 300), "png"), "0x0-crop999.999.1.1", make_settings())
    assert (image.width, image.height) == (1, 1)
    assert is_colour(colour_at(image, 0, 0), YELLOW)


def test_an_upscaled_tiny_crop_is_held_to_the_output_cap(make_settings: MakeSettings) -> None:
    # One per mille of each side, enlarged with "up": the box, not the crop, decides the size, within the cap.
    settings = make_settings(max_output_dimension=300)
    image = render(encode(quadrants(2000, 2000), "png"), "300x-crop0.0.1.1-up", settings)
    assert (image.width, image.height) == (300, 300)
    assert is_colour(colour_at(image, 0.5, 0.5), RED)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_crop_is_of_the_upright_picture_whatever_the_exif_orientation(
    make_settings: MakeSettings, orientation: int
) -> None:
    # A blue block in the top-right quadrant's top-left corner, however the camera was held.
    image = render(from_camera([(0.5, 0.0, 0.25, 0.25, BLUE)], orientation), "200x-crop500.0.500.500", make_settings())
    assert (image.width, image.height) == (200, 150)
    assert is_colour(colour_at(image, 0.2, 0.2), BLUE)
    assert is_colour(colour_at(image, 0.8, 0.8), GREY)
    assert is_colour(colour_at(image, 0.8, 0.2), GREY)


# Rotate and flip ------------------------------------------------------------------------------------------------

TURNS = [(0, None), (90, None), (180, None), (270, None), (0, "x"), (0, "y"), (90, "x"), (270, "x")]


def _turn_text(rotate: int, flip: str | None) -> str:
    return "".join(part for part in (f"-r{rotate}" if rotate else "", f"-flip{flip}" if flip else ""))


@pytest.mark.parametrize(("rotate", "flip"), TURNS)
def test_rotate_and_flip_move_the_marked_corners_where_the_turn_says(
    make_settings: MakeSettings, rotate: int, flip: str | None
) -> None:
    # A red top-left corner and a green top edge's right end tell all eight turns apart.
    original = encode(marked(600, 400, [(0, 0, 0.2, 0.2, RED), (0.8, 0, 0.2, 0.2, GREEN)]), "png")
    image = render(original, f"300x300{_turn_text(rotate, flip)}", make_settings())
    assert (image.width, image.height) == ((200, 300) if rotate in (90, 270) else (300, 200))
    for (x, y), colour in (((0.1, 0.1), RED), ((0.9, 0.1), GREEN), ((0.1, 0.9), GREY), ((0.9, 0.9), GREY)):
        assert is_colour(colour_at(image, *turned(x, y, rotate, flip)), colour), (x, y, colour)


def test_a_rotated_box_is_the_box_of_the_turned_picture(make_settings: MakeSettings) -> None:
    # 600x400 turned is 400x600; 300 wide makes 300x450.
    image = render(encode(quadrants(600, 400), "png"), "300x-r90", make_settings())
    assert (image.width, image.height) == (300, 450)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_then_crop_then_rotate(make_settings: MakeSettings, orientation: int) -> None:
    # The upright top-left quadrant (red, with a green mark in its own top-left corner), turned a quarter clockwise:
    # the green mark is then at the top right.
    original = from_camera([(0, 0, 0.5, 0.5, RED), (0, 0, 0.1, 0.1, GREEN)], orientation)
    image = render(original, "0x0-crop0.0.500.500-r90", make_settings())
    assert (image.width, image.height) == (300, 400)
    assert is_colour(colour_at(image, 0.9, 0.05), GREEN)
    assert is_colour(colour_at(image, 0.1, 0.05), RED)
    assert is_colour(colour_at(image, 0.5, 0.9), RED)


# Focal point ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("focal", "expected_x"),
    [
        pytest.param("fp700.500", 100.0, id="centred when the box allows"),
        pytest.param("fp950.500", 180.0, id="at the right edge, as near the centre as it allows"),
        pytest.param("fp50.500", 20.0, id="at the left edge"),
    ],
)
def test_a_fill_crop_centres_on_the_focal_point_as_far_as_the_box_allows(
    make_settings: MakeSettings, focal: str, expected_x: float
) -> None:
    # 1000x500 covers 200x200 at 400x200; the point x of 1000 is at 0.4 x pixels, the crop's left edge in 0..200.
    x = int(focal[2:].split(".")[0]) / 1000
    original = encode(marked(1000, 500, [(x - 0.01, 0.49, 0.02, 0.02, BLACK)]), "png")
    image = render(original, f"200x200-fill-{focal}", make_settings())
    assert (image.width, image.height) == (200, 200)
    centre_x, centre_y = dark_centre(image)
    assert abs(centre_x - expected_x) <= 1.5
    assert abs(centre_y - 100) <= 1.5


def test_the_focal_point_is_of_the_upright_original_through_crop_and_rotate(make_settings: MakeSettings) -> None:
    # A dot at (750, 600) per mille of a 2000x1000 original; cropped to its right half (1000x1000) the dot is at
    # (500, 600) of the crop; turned a quarter clockwise at (400, 500); a 100x200 fill of the turned 1000x1000
    # (at 200x200) centres on x 80 of 200: the crop starts at 30 and the dot is at 50, the box's middle.
    original = encode(marked(2000, 1000, [(0.745, 0.59, 0.01, 0.02, BLACK)]), "png")
    image = render(original, "100x200-fill-fp750.600-crop500.0.500.1000-r90", make_settings())
    assert (image.width, image.height) == (100, 200)
    centre_x, centre_y = dark_centre(image)
    assert abs(centre_x - 50) <= 1.5
    assert abs(centre_y - 100) <= 1.5


def test_the_focal_point_outside_the_crop_goes_to_the_crop_s_nearest_edge(make_settings: MakeSettings) -> None:
    # The left half of 1600x400 (800x400, covering 100x100 at 200x100) with the point far right of it: the fill box
    # sits at the right edge of the crop, where a black band ends the left half.
    original = encode(marked(1600, 400, [(0.49, 0, 0.01, 1, BLACK)]), "png")
    image = render(original, "100x100-fill-fp900.500-crop0.0.500.1000", make_settings())
    assert is_colour(colour_at(image, 0.98, 0.5), BLACK)
    assert is_colour(colour_at(image, 0.5, 0.5), GREY)


def test_fp500_500_would_be_the_centre_gravity_which_is_why_it_is_not_spelled(make_settings: MakeSettings) -> None:
    with pytest.raises(MalformedPathError, match="the default"):
        parse_spec("200x200-fill-fp500.500")
    original = encode(marked(1000, 500, [(0.49, 0.49, 0.02, 0.02, BLACK)]), "png")
    nearly = render(original, "200x200-fill-fp501.500", make_settings())
    centre = render(original, "200x200-fill", make_settings())
    assert abs(dark_centre(nearly)[0] - dark_centre(centre)[0]) <= 1


# Animations -----------------------------------------------------------------------------------------------------


def test_an_animation_is_cropped_and_turned_frame_by_frame(make_settings: MakeSettings) -> None:
    # Three frames, each a red top-left quadrant, a top-right quadrant of its own colour and a black bottom half.
    colours = (GREEN, BLUE, YELLOW)
    frames = [
        marked(200, 100, [(0, 0, 0.5, 0.5, RED), (0.5, 0, 0.5, 0.5, own), (0, 0.5, 1, 0.5, BLACK)]) for own in colours
    ]
    strip = pyvips.Image.arrayjoin(frames, across=1).copy()
    strip.set_type(pyvips.GValue.gint_type, "page-height", 100)
    strip.set_type(pyvips.GValue.array_int_type, "delay", [100, 100, 100])
    original = bytes(strip.gifsave_buffer())
    made = imaging.render(original, parse_spec("0x0-crop0.0.1000.500-r90"), "gif", make_settings().image_limits)
    image = pyvips.Image.new_from_buffer(made.body, "", n=-1).copy_memory()
    assert image.get_n_pages() == 3
    assert (image.width, image.get_page_height()) == (50, 200)
    for page, own in enumerate(colours):
        frame = image.crop(0, page * 200, 50, 200)
        # The top half turned a quarter clockwise: its left (red) on top, its right below.
        assert is_colour(colour_at(frame, 0.5, 0.25), RED), page
        assert is_colour(colour_at(frame, 0.5, 0.75), own), page
