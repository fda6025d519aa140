"""Flask: a fresh app factory built from the README's snippets, seen in Chromium; the extension and Jinja2 helpers.

The app runs under gunicorn (``'app:create_app()'``) behind nginx with the sidecar, exactly as the README writes it.
"""

from __future__ import annotations

import ast
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from resize_sidecar.core.errors import MalformedPathError, SettingsError
from resize_sidecar.core.settings import Settings
from resize_sidecar.middleware import MediaMiddleware, MediaURLs
from resize_sidecar.middleware.images import MediaImages, Original, original, shown_size
from tests.support.fresh_projects import (
    assert_every_image_loads_in_its_box,
    assert_placeholders_load,
    images_in_chromium,
    page_of,
    served,
    snippet,
)
from tests.support.images import photo
from tests.support.pages import Page, signed
from tests.support.servers import SECRET, world_readable_dir

IMAGES_PER_PHOTO = 4


def readme_photos() -> list[dict[str, Any]]:
    """The PHOTOS rows of the README's app: the originals the test stores for it."""
    found = re.search(r"^PHOTOS = (\[.*?^\])", snippet("flask-app"), re.DOTALL | re.MULTILINE)
    assert found is not None
    rows: list[dict[str, Any]] = ast.literal_eval(found.group(1))
    return rows


@pytest.fixture
def flask_project() -> Iterator[tuple[Path, Path]]:
    folder, media = world_readable_dir("resize-sidecar-flask-"), world_readable_dir("resize-sidecar-flask-media-")
    (folder / "app.py").write_text(snippet("flask-app"))
    (folder / "templates").mkdir()
    (folder / "templates" / "index.html").write_text(snippet("flask-template"))
    for row in readme_photos():
        path = media / row["key"]
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        path.write_bytes(photo(row["width"], row["height"]))
    yield folder, media
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(media, ignore_errors=True)


@pytest.mark.e2e
@pytest.mark.parametrize("device_pixel_ratio", [1, 2])
def test_a_fresh_app_factory_shows_every_image_in_chromium(
    flask_project: tuple[Path, Path], tmp_path: Path, device_pixel_ratio: int
) -> None:
    folder, media = flask_project
    env = {"RESIZE_SIDECAR_SECRETS": SECRET, "RESIZE_SIDECAR_STORAGE": "local", "RESIZE_SIDECAR_LOCAL_ROOT": str(media)}
    rows = readme_photos()
    with served(folder, "app:create_app()", env, tmp_path) as nginx:
        page, images = page_of(nginx.url + "/", IMAGES_PER_PHOTO * len(rows))
        assert {signed(url).key for url in page.media_urls()} == {row["key"] for row in rows}
        # Fitted into 400 wide, its height from the row's size: 1600x1000 and 1000x1500.
        assert [(a["width"], a["height"]) for a in images if signed(a["src"]).spec == "400x"] == [
            ("400", "250"),
            ("400", "600"),
        ]
        assert assert_placeholders_load(nginx.url, images) == len(rows)
        links = [attributes for tag, attributes in page.tags if tag == "a"]
        assert [(a["href"], "data-resize" in a) for a in links] == [(f"/media/{row['key']}", True) for row in rows]
        seen = images_in_chromium(nginx.url, "/", device_pixel_ratio)
    assert_every_image_loads_in_its_box(seen, IMAGES_PER_PHOTO * len(rows))


# --- the extension ---------------------------------------------------------------------------------------------------


def test_init_app_installs_the_middleware_and_the_helpers_from_app_config() -> None:
    flask = pytest.importorskip("flask")
    from resize_sidecar.middleware.flask import ResizeSidecar

    media = ResizeSidecar(rewrite_scope="marked")
    app = flask.Flask(__name__)
    app.config.update(RESIZE_SIDECAR_SECRETS=[SECRET], RESIZE_SIDECAR_MEDIA_URL="/files/")
    middleware = media.init_app(app)

    assert app.wsgi_app is middleware and app.extensions["resize_sidecar"] is middleware
    assert isinstance(middleware, MediaMiddleware) and middleware.settings.media_url == "/files/"
    assert middleware.rewriter is not None and middleware.rewriter.scope == "marked"
    with app.test_request_context():
        rendered = flask.render_template_string("{{ media_url('a.jpg') }} {{ '/files/b.jpg'|media_url(width=10) }}")
    assert rendered.split()[0] == "/files/a.jpg"
    assert rendered.split()[1].startswith("/files/_r/b.jpg/10x-")
    with pytest.raises(RuntimeError, match="twice"):
        media.init_app(app)


def test_development_serving_is_on_in_debug_mode_with_local_storage_only(tmp_path: Path) -> None:
    flask = pytest.importorskip("flask")
    from resize_sidecar.middleware.flask import ResizeSidecar

    def media_served(debug: bool, **config: object) -> bool:
        app = flask.Flask(__name__)
        app.debug = debug
        app.config.update(RESIZE_SIDECAR_SECRETS=SECRET, RESIZE_SIDECAR_LOCAL_ROOT=str(tmp_path), **config)
        ResizeSidecar(app)
        return app.extensions["resize_sidecar"].media is not None

    assert media_served(debug=True)
    assert not media_served(debug=False)
    # Against S3 it would read and write the real bucket: not by default, and without an error.
    assert not media_served(debug=True, RESIZE_SIDECAR_STORAGE="s3", RESIZE_SIDECAR_S3_BUCKET="media")


def test_init_app_refuses_an_app_without_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    flask = pytest.importorskip("flask")
    from resize_sidecar.middleware.flask import ResizeSidecar

    monkeypatch.delenv("RESIZE_SIDECAR_SECRETS", raising=False)
    app = flask.Flask(__name__)

    with pytest.raises(SettingsError, match="RESIZE_SIDECAR_SECRETS"):
        ResizeSidecar(app)
    assert "resize_sidecar" not in app.extensions


# --- what the helpers take ------------------------------------------------------------------------------------------


class FieldFile:
    """What a Django ``ImageFieldFile`` offers the helpers: name, storage, field and the model instance."""

    def __init__(self, name: str, storage: Any, width: int | None = None, height: int | None = None) -> None:
        self.name, self.storage = name, storage
        self.field = type("Field", (), {"width_field": "width", "height_field": "height"})()
        self.instance = type("Row", (), {"width": width, "height": height})()

    @property
    def width(self) -> int:
        raise AssertionError("the helpers must not open the file to measure it")


class Folder:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> str:
        return str(self.root / name)


class Bucket:
    def __init__(self, bucket_name: str, location: str) -> None:
        self.bucket_name, self.location = bucket_name, location


@pytest.fixture
def local(tmp_path: Path) -> Settings:
    return Settings(local_root=str(tmp_path), secrets=(SECRET,), public_base_url="https://cdn.example.com").validate()


def test_a_file_field_a_media_url_and_a_key_name_the_same_original(local: Settings, tmp_path: Path) -> None:
    field = FieldFile("photos/Été 1.jpg", Folder(tmp_path), 800, 600)

    assert original(field, local) == Original("photos/Été 1.jpg", 800, 600)
    assert original("/media/photos/%C3%89t%C3%A9%201.jpg", local).key == "photos/Été 1.jpg"
    assert original("https://cdn.example.com/media/photos/a.jpg?v=2", local).key == "photos/a.jpg"
    assert original("photos/a.jpg", local) == Original("photos/a.jpg")
    assert original({"key": "photos/a.jpg", "width": 10, "height": 20}, local) == Original("photos/a.jpg", 10, 20)


def test_a_file_the_sidecar_cannot_read_is_refused_with_its_reason(local: Settings, tmp_path: Path) -> None:
    cases = [
        (FieldFile("", Folder(tmp_path)), "holds no file"),
        (FieldFile("a.jpg", Folder(tmp_path.parent)), "outside LOCAL_ROOT"),
        (FieldFile("a.jpg", Bucket("b", "")), "not a folder"),
        ("/static/a.jpg", "not under MEDIA_URL"),
        ("https://elsewhere.example.com/a.jpg", "not under MEDIA_URL"),
        ("/media/_r/a.jpg/10x-0123.jpg", "derivative"),
    ]
    for image, reason in cases:
        with pytest.raises(MalformedPathError, match=reason):
            original(image, local)
    with pytest.raises(TypeError, match="expected a file field"):
        original(42, local)


def test_a_file_in_s3_is_named_by_its_key_under_the_storage_location() -> None:
    settings = Settings(storage="s3", s3_bucket="media", s3_prefix="site/", secrets=(SECRET,)).validate()

    assert original(FieldFile("photos/a.jpg", Bucket("media", "site")), settings).key == "photos/a.jpg"
    with pytest.raises(MalformedPathError, match="not S3_BUCKET 'media'"):
        original(FieldFile("photos/a.jpg", Bucket("other", "site")), settings)
    with pytest.raises(MalformedPathError, match="outside S3_PREFIX 'site/'"):
        original(FieldFile("photos/a.jpg", Bucket("media", "")), settings)


@pytest.mark.parametrize(
    ("size", "box", "fit", "shown"),
    [
        ((1600, 1000), (400, None), "fit", (400, 250)),
        ((1600, 1000), (400, 400), "fit", (400, 250)),
        ((1000, 1500), (None, 300), "fit", (200, 300)),
        ((300, 200), (400, None), "fit", (300, 200)),  # never enlarged
        ((1600, 1000), (300, 300), "fill", (300, 300)),
        ((None, None), (300, 300), "pad", (300, 300)),
        ((None, None), (400, None), "fit", (400, None)),
        ((None, None), (400, 300), "fit", (None, None)),  # unknown shape: no side that could stretch it
    ],
)
def test_the_shown_size_comes_from_the_stored_size_or_the_box(
    size: tuple[int | None, int | None], box: tuple[int | None, int | None], fit: str, shown: tuple[int, int]
) -> None:
    assert shown_size(Original("a.jpg", *size), *box, fit) == shown


def test_img_picture_and_responsive_carry_the_shown_size(local: Settings, tmp_path: Path) -> None:
    images = MediaImages(MediaURLs(local))
    field = FieldFile("a.jpg", Folder(tmp_path), 1000, 1500)

    img = Page(images.img(field, width=400, alt="x", placeholder=True, attrs={"loading": "lazy"})).tags[0][1]
    assert (img["width"], img["height"], img["loading"]) == ("400", "600", "lazy")
    backdrop = img["style"].removeprefix('background-size:cover;background-image:url("https://cdn.example.com')
    backdrop = backdrop.removesuffix('")')
    assert (signed(backdrop).spec, signed(backdrop).key) == ("16x24-fill-blur5", "a.jpg")
    picture = Page(images.picture(field, width=300, height=300, fit="fill")).tags
    assert [(a["width"], a["height"]) for tag, a in picture if tag == "img"] == [("300", "300")]
    responsive = Page(images.responsive(field, sizes="50vw")).tags
    fallback = next(a for tag, a in responsive if tag == "img")
    assert (fallback["width"], fallback["height"]) == ("1000", "1500")
    widths = [int(c.split()[1][:-1]) for c in fallback["srcset"].split(", ")]
    assert widths == [step for step in images.policy.widths if step < 1000] + [1000]
    cropped = next(a for tag, a in Page(images.responsive("a.jpg", aspect_ratio=2)).tags if tag == "img")
    assert (cropped["width"], cropped["height"]) == ("3840", "1920")
    assert all("-fill-" in candidate for candidate in cropped["srcset"].split(", "))
