"""The demo gallery in a real browser: headless Chromium (Debian's) through nginx, the sidecar and the middleware.

Every image must load, and where the page offers 1x and 2x derivatives the browser must pick the one whose width
matches its device pixel ratio. A screenshot of the gallery is saved to ``tests/artifacts/gallery.png``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from resize_sidecar.core.settings import Settings
from resize_sidecar.middleware.variants import VariantPolicy
from tests.support.browser import ALL_LOADED, chromium
from tests.support.gallery import make_media_root, media_env, run_gallery
from tests.support.images import photo
from tests.support.pages import signed
from tests.support.servers import REPO, NginxServer

pytestmark = pytest.mark.e2e

ARTIFACTS = REPO / "tests" / "artifacts"
LADDER = VariantPolicy(Settings())
# Large enough for every box on the page at 2x (the 480x320 cards need 960x640) without upscaling.
ORIGINALS = {
    "landscape/dawn.jpg": photo(1600, 1000),
    "portrait/tower.jpg": photo(1000, 1500),
    "square/tile.png": photo(1200, 1200, "png"),
    "Été/café crème.jpg": photo(1400, 1000),
    "wide/panorama.webp": photo(2000, 800, "webp"),
}


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxServer]:
    root = make_media_root(ORIGINALS)
    try:
        with run_gallery(media_env(root), tmp_path_factory.mktemp("browser-logs")) as nginx:
            yield nginx
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("device_pixel_ratio", [1, 2])
def test_every_gallery_image_loads_at_the_width_for_the_screen(gallery: NginxServer, device_pixel_ratio: int) -> None:
    browser = chromium(device_pixel_ratio)
    try:
        browser.set_script_timeout(120)
        browser.get(gallery.url + "/")
        assert browser.execute_script("return window.devicePixelRatio") == device_pixel_ratio
        images = browser.execute_async_script(ALL_LOADED)
        if device_pixel_ratio == 1:
            height = browser.execute_script("return document.documentElement.scrollHeight")
            browser.set_window_size(1280, height + 200)  # the window's own frame takes some of its height
            ARTIFACTS.mkdir(exist_ok=True)
            browser.save_screenshot(str(ARTIFACTS / "gallery.png"))
            assert (ARTIFACTS / "gallery.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    finally:
        browser.quit()
    # The grid, three <picture>s, up to six smart crops and four plain <img> rewritten by the middleware.
    assert len(images) == len(ORIGINALS) + 3 + min(6, len(ORIGINALS)) + 4
    for image in images:
        assert image["natural"] > 0, image
        path = signed(urlsplit(image["current"]).path)
        box = int(image["width"])
        if image["inPicture"]:
            assert path.fmt == "avif", image  # Chromium decodes AVIF, so it takes the first source
        if "1x" in image["srcset"]:
            # The browser took the candidate for its pixel density (the middleware snaps the plain 240-pixel images'
            # boxes up its width ladder)...
            wanted = box * device_pixel_ratio
            assert path.spec.split("x")[0] == str(LADDER.side(wanted) if box == 240 else wanted), image
            if "-fill" in path.spec and box != 240:
                # ...and a crop has exactly that many pixels (a "fit" keeps the original's shape inside the box).
                # naturalWidth is the image's width divided by the density of the candidate the browser took.
                assert image["natural"] == box, image
