"""The template helpers with a crop, a focal point, rotate and flip: the URLs they sign and the sizes they write."""

from __future__ import annotations

from collections.abc import Callable
from html.parser import HTMLParser

import jinja2
import pytest

from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import parse_path, resolve_spec, verify
from resize_sidecar.middleware import MediaURLs
from resize_sidecar.middleware.images import MediaImages
from resize_sidecar.middleware.jinja import install
from tests.support.contract import contract_url

MakeSettings = Callable[..., Settings]
# An original the app stored the upright size of (the media API's answer to an upload): 1200x800.
PHOTO = {"key": "people/ann.jpg", "width": 1200, "height": 800}


class _Tags(HTMLParser):
    def __init__(self, markup: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(markup)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def first(markup: str, tag: str) -> dict[str, str | None]:
    return next(attributes for name, attributes in _Tags(markup).tags if name == tag)


@pytest.fixture
def settings(make_settings: MakeSettings) -> Settings:
    return make_settings(presets={"avatar": "128x128-fill-crop250.0.500.750"}, max_output_dimension=2000)


@pytest.fixture
def images(settings: Settings) -> MediaImages:
    return MediaImages(MediaURLs(settings))


def spec_of(url: str, settings: Settings) -> str:
    path = parse_path(url)
    verify(path, settings.secrets)
    resolve_spec(path.spec, settings.preset_specs)
    return path.spec


@pytest.mark.parametrize(
    ("crop", "spec"),
    [
        pytest.param((0.3335, 0.1, 0.6665, 0.9), "128x128-fill-crop334.100.666.900", id="ending at the edge"),
        # Rounding the width on its own would make it 333 and end the region a per mille short.
        pytest.param((0.1234, 0.1, 0.3334, 0.8), "128x128-fill-crop123.100.334.800", id="edges rounded"),
    ],
)
def test_a_crop_from_a_cropper_s_fractions_is_signed_to_the_per_mille_of_its_edges(
    images: MediaImages, settings: Settings, crop: tuple[float, float, float, float], spec: str
) -> None:
    url = images.derivative(PHOTO, width=128, height=128, fit="fill", crop=crop)
    assert spec_of(url, settings) == spec
    assert url == contract_url("people/ann.jpg", spec, "jpg")


def test_a_fit_of_a_crop_is_sized_as_the_crop_and_a_quarter_turn_swaps_the_sides(images: MediaImages) -> None:
    # The crop is 600x400 of the 1200x800 original; turned a quarter it is 400x600; fitted 300 wide: 300x450.
    img = first(images.img(PHOTO, width=300, crop=(0.25, 0.25, 0.5, 0.5), rotate=90, alt=""), "img")
    assert (img["width"], img["height"]) == ("300", "450")
    assert spec_of(str(img["src"]), images.settings) == "300x-crop250.250.500.500-r90"


def test_a_preset_with_a_crop_is_sized_as_its_crop(images: MediaImages) -> None:
    img = first(images.img(PHOTO, preset="avatar", alt=""), "img")
    assert (img["width"], img["height"]) == ("128", "128")
    assert spec_of(str(img["src"]), images.settings) == "avatar"


def test_a_responsive_ladder_stops_at_the_crop_s_width(images: MediaImages) -> None:
    # The crop is 300 of the original's 1200 pixels wide: no candidate is wider.
    picture = images.responsive(PHOTO, widths=[160, 320, 640], crop=(0, 0, 0.25, 1), alt="")
    img = first(picture, "img")
    assert (img["width"], img["height"]) == ("300", "800")
    assert [candidate.split()[-1] for candidate in str(img["srcset"]).split(", ")] == ["160w", "300w"]


def test_a_placeholder_shows_the_same_crop_turn_and_focal_point(images: MediaImages) -> None:
    options = {"fit": "fill", "focal": (0.7, 0.4), "crop": (0.5, 0, 0.5, 1), "rotate": 270, "flip": "x"}
    img = first(images.img(PHOTO, width=200, height=100, placeholder=True, alt="", **options), "img")
    backdrop = str(img["style"]).split('url("', 1)[1].split('")', 1)[0]
    assert spec_of(backdrop, images.settings).startswith("16x8-fill-fp700.400-crop500.0.500.1000-r270-flipx-blur")


def test_jinja_templates_pass_the_options_by_name(images: MediaImages, settings: Settings) -> None:
    environment = jinja2.Environment(autoescape=True)
    install(environment, images)
    template = environment.from_string(
        "{{ media_url(photo, width=128, height=128, fit='fill', focal=(0.7, 0.4), crop=(0.5, 0, 0.5, 1), rotate=180) }}"
    )
    url = template.render(photo=PHOTO)
    assert spec_of(url, settings) == "128x128-fill-fp700.400-crop500.0.500.1000-r180"
