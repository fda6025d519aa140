"""A derivative's recipe: what changes its fingerprint (and so makes it due for regeneration) and what does not, and
the metadata the miss path and the upload's presets store it in."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import format_path, parse_spec, resolve_spec
from resize_sidecar.media import imaging, recipe
from resize_sidecar.media.derive import Deriver, Source
from resize_sidecar.media.local import LocalStorage
from tests.support.images import photo
from tests.support.pictures import heic, picture
from tests.support.servers import SECRET

MakeSettings = Callable[..., Settings]
SPEC = parse_spec("300x200-fill")


@pytest.fixture
def settings(make_settings: MakeSettings) -> Settings:
    return make_settings()


def test_the_same_inputs_give_the_same_short_fingerprint(settings: Settings) -> None:
    first = recipe.fingerprint(SPEC, "webp", settings.image_limits, "libvips")
    assert first == recipe.fingerprint(parse_spec("300x200-fill"), "webp", settings.image_limits, "libvips")
    assert len(first) == 20 and int(first, 16) >= 0


def test_a_preset_is_fingerprinted_by_its_definition_not_its_name(make_settings: MakeSettings) -> None:
    settings = make_settings(presets={"card": "300x200-fill", "tile": "300x200-fill", "other": "300x"})
    limits = settings.image_limits
    card = recipe.fingerprint(resolve_spec("card", settings.preset_specs), "jpg", limits, "libvips")
    assert card == recipe.fingerprint(resolve_spec("tile", settings.preset_specs), "jpg", limits, "libvips")
    assert card == recipe.fingerprint(SPEC, "jpg", limits, "libvips")
    assert card != recipe.fingerprint(resolve_spec("other", settings.preset_specs), "jpg", limits, "libvips")


@pytest.mark.parametrize(
    ("fmt", "setting", "changes"),
    [("webp", "quality_webp", True), ("jpg", "quality_jpg", True), ("avif", "quality_avif", True),
     ("webp", "quality_jpg", False), ("png", "quality_webp", False)],
)  # fmt: skip
def test_only_the_quality_a_format_is_encoded_with_changes_its_fingerprint(
    make_settings: MakeSettings, fmt: str, setting: str, changes: bool
) -> None:
    before = recipe.fingerprint(SPEC, fmt, make_settings().image_limits, "libvips")
    after = recipe.fingerprint(SPEC, fmt, make_settings(**{setting: 41}).image_limits, "libvips")
    assert (before != after) is changes


def test_a_quality_the_spec_names_is_kept_whatever_the_default(make_settings: MakeSettings) -> None:
    spec = parse_spec("300x-q90")
    before = recipe.fingerprint(spec, "webp", make_settings().image_limits, "libvips")
    assert before == recipe.fingerprint(spec, "webp", make_settings(quality_webp=41).image_limits, "libvips")


def test_the_format_the_libvips_version_the_encoder_settings_and_the_recipe_version_each_change_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits = settings.image_limits
    seen = {recipe.fingerprint(SPEC, fmt, limits, "libvips") for fmt in ("jpg", "png", "webp", "avif", "gif")}
    assert len(seen) == 5
    today = recipe.fingerprint(SPEC, "avif", limits, "libvips")
    with monkeypatch.context() as patched:
        patched.setattr(imaging, "libvips_version", lambda: "99.0.0")
        assert recipe.fingerprint(SPEC, "avif", limits, "libvips") != today
    with monkeypatch.context() as patched:
        patched.setattr(imaging, "_AVIF_EFFORT", imaging._AVIF_EFFORT + 1)
        assert recipe.fingerprint(SPEC, "avif", limits, "libvips") != today
    with monkeypatch.context() as patched:
        patched.setattr(recipe, "RECIPE_VERSION", recipe.RECIPE_VERSION + 1)
        assert recipe.fingerprint(SPEC, "avif", limits, "libvips") != today
    assert recipe.fingerprint(SPEC, "avif", limits, "libvips") == today


def test_the_version_of_a_decoder_other_than_libvips_changes_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits = settings.image_limits
    heic = recipe.fingerprint(SPEC, "jpg", limits, "libheif")
    assert heic != recipe.fingerprint(SPEC, "jpg", limits, "libvips")
    monkeypatch.setattr(imaging, "heic_decoder", lambda: "pillow-heif 0.0.1")
    assert recipe.fingerprint(SPEC, "jpg", limits, "libheif") != heic


def test_a_derivative_is_current_only_with_the_recipe_and_the_original_it_would_be_made_from_now(
    settings: Settings,
) -> None:
    limits = settings.image_limits
    recorded = recipe.record(SPEC, "webp", limits, "libvips", '"etag-1"')
    assert recorded == {
        "recipe": recipe.fingerprint(SPEC, "webp", limits, "libvips"),
        "decoder": "libvips",
        "source": '"etag-1"',
    }
    assert recipe.is_current(recorded, SPEC, "webp", limits, '"etag-1"')
    assert not recipe.is_current(recorded, SPEC, "webp", limits, '"etag-2"')  # the original was replaced
    assert not recipe.is_current(recorded, parse_spec("300x"), "webp", limits, '"etag-1"')
    assert not recipe.is_current(recorded, SPEC, "jpg", limits, '"etag-1"')
    assert not recipe.is_current({}, SPEC, "webp", limits, '"etag-1"')
    assert not recipe.is_current(None, SPEC, "webp", limits, '"etag-1"')
    assert not recipe.is_current({**recorded, "decoder": "something"}, SPEC, "webp", limits, '"etag-1"')


def test_a_miss_and_an_upload_preset_store_the_derivative_with_its_recipe(settings: Settings, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "media")
    storage.put("a.jpg", photo(640, 480), "image/jpeg", "no-cache")
    deriver = Deriver(settings, storage)
    made = deriver.derive(format_path("a.jpg", "300x200-fill", "webp", SECRET))
    expected = recipe.record(SPEC, "webp", settings.image_limits, "libvips", str(storage.version("a.jpg")))
    assert storage.head(made.storage_key) == expected

    storage.put("b.jpg", photo(640, 480), "image/jpeg", "no-cache")
    data, version = photo(640, 480), str(storage.version("b.jpg"))
    source = Source(data, version, imaging.probe(data, settings.image_limits))
    path = deriver.authorize(format_path("b.jpg", "300x200-fill", "png", SECRET))[0]
    stored = deriver.derive_from(source, path, SPEC)
    assert storage.head(stored.storage_key) == recipe.record(SPEC, "png", settings.image_limits, "libvips", version)


def test_a_heic_original_records_the_decoder_that_read_it(settings: Settings, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "media")
    storage.put("a.heic", heic(picture(320, 240)), "image/heic", "no-cache")
    made = Deriver(settings, storage).derive(format_path("a.heic", "300x200-fill", "jpg", SECRET))
    expected = recipe.record(SPEC, "jpg", settings.image_limits, "libheif", str(storage.version("a.heic")))
    assert (storage.head(made.storage_key) or {})["decoder"] == "libheif"
    assert storage.head(made.storage_key) == expected
