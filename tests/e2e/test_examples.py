"""The examples as users run them: Flask's and Django's development servers, and the gallery behind nginx.

Each page is fetched over HTTP; every media URL on it is checked against the contract (signature, spec) and then
fetched too, so a page that only looks right fails.
"""

from __future__ import annotations

import shutil
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gallery import KEY, make_media_root, media_env, run_gallery
from tests.support.images import image_size, photo
from tests.support.pages import Page, fetch, signed
from tests.support.servers import NginxServer, Server, free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def media_root() -> Iterator[Path]:
    root = make_media_root({KEY: photo(900, 600), "b/portrait.png": photo(300, 450, "png"), "c.jpg": photo(640, 480)})
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def env(media_root: Path) -> dict[str, str]:
    return media_env(media_root)


def check_framework_page(base_url: str, media_root: Path) -> None:
    """The example page of a framework: template-built and rewritten URLs, all served by development serving."""
    status, content_type, body = fetch(base_url + "/")
    page = Page(body.decode())
    assert (status, content_type) == (200, "text/html")
    built = page.by_id("built")
    assert (signed(built["src"]).key, signed(built["src"]).spec) == (KEY, "320x240-fill")
    automatic = page.by_id("automatic")
    # Rewriting snaps boxes up the width ladder and crops to the box's shape (middleware/variants.py).
    assert signed(automatic["src"]).spec == "384x256-fill"
    assert [signed(c.split()[0]).spec for c in automatic["srcset"].split(", ")] == ["384x256-fill", "640x427-fill"]
    sources = [attributes for tag, attributes in page.tags if tag == "source"]
    assert [signed(source["srcset"].split()[0]).fmt for source in sources] == ["avif", "webp"]
    for url in page.media_urls():
        status, content_type, data = fetch(base_url + url)
        path = signed(url)
        assert (status, content_type) == (200, {"jpg": "image/jpeg"}.get(path.fmt, f"image/{path.fmt}"))
        width = int(path.spec.split("x")[0])
        assert image_size(data)[0] == width, url
    original = page.by_id("original")["href"]
    assert fetch(base_url + original)[2] == (media_root / KEY).read_bytes()


def test_the_flask_example_under_flasks_development_server(
    env: dict[str, str], media_root: Path, tmp_path: Path
) -> None:
    port = free_port()
    command = [sys.executable, "-m", "flask", "--app", "examples.flask_app", "run", "--port", str(port)]
    with Server([*command, "--host", "127.0.0.1"], port=port, log=tmp_path / "flask.log", env=env) as server:
        check_framework_page(server.url, media_root)
        explicit = Page(fetch(server.url + "/")[2].decode()).by_id("explicit")
        assert (signed(explicit["src"]).spec, signed(explicit["src"]).fmt) == ("256x", "webp")


def test_the_django_example_under_runserver(env: dict[str, str], media_root: Path, tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "examples/django_site/manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]
    with Server(command, port=port, log=tmp_path / "django.log", env=env) as server:
        check_framework_page(server.url, media_root)


@pytest.fixture(scope="module")
def gallery_stack(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxServer]:
    with run_gallery(env, tmp_path_factory.mktemp("gallery-logs")) as nginx:
        yield nginx


def test_the_gallery_behind_nginx_serves_every_image_it_shows(gallery_stack: NginxServer, media_root: Path) -> None:
    status, content_type, body = fetch(gallery_stack.url + "/")
    assert (status, content_type) == (200, "text/html")
    page = Page(body.decode())
    keys = ["b/portrait.png", "c.jpg", KEY]
    grid = [attributes for tag, attributes in page.tags if tag == "img" and attributes.get("width") == "320"]
    assert [attributes["alt"] for attributes in grid] == keys
    assert [attributes["loading"] for attributes in grid] == ["eager"] * 3
    urls = page.media_urls()
    assert {signed(url).key for url in urls} == set(keys)
    for url in urls:
        status, _, data = fetch(gallery_stack.url + url)
        assert status == 200 and image_size(data)[0] > 0, url
    # The derivatives now stored under _r/ are not originals: the gallery still lists the same three.
    assert (media_root / "_r").is_dir()
    again = Page(fetch(gallery_stack.url + "/")[2].decode())
    assert [a["alt"] for tag, a in again.tags if tag == "img" and a.get("width") == "320"] == keys


def test_the_gallery_page_rewrites_its_plain_html_images(gallery_stack: NginxServer) -> None:
    page = Page(fetch(gallery_stack.url + "/")[2].decode())
    plain = [attributes for tag, attributes in page.tags if tag == "img" and attributes.get("width") == "240"]
    assert len(plain) == 3
    for attributes in plain:
        assert signed(attributes["src"]).spec == "256x171-fill"
        assert [signed(c.split()[0]).spec for c in attributes["srcset"].split(", ")] == ["256x171-fill", "640x427-fill"]


def test_the_gallery_answers_404_elsewhere(gallery_stack: NginxServer) -> None:
    with pytest.raises(urllib.request.HTTPError) as error:
        fetch(gallery_stack.url + "/nothing-here")
    assert error.value.code == 404
