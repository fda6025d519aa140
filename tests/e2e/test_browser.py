"""The demo gallery in a real browser: headless Chromium (Debian's) through nginx, the sidecar and the middleware.

Every image must load, and where the page offers 1x and 2x derivatives the browser must pick the one whose width
matches its device pixel ratio. A screenshot of the gallery is saved to ``tests/artifacts/gallery.png``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from resize_sidecar.core.settings import Settings
from resize_sidecar.middleware.variants import VariantPolicy
from tests.conftest import photo
from tests.e2e.test_examples import make_media_root, media_env, run_gallery, signed
from tests.support.servers import REPO, NginxServer

pytestmark = pytest.mark.e2e

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
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
# Wait for every image, lazy ones included, once each has been scrolled into view.
ALL_LOADED = """
const done = arguments[arguments.length - 1];
const images = Array.from(document.images);
(async () => {
  for (const image of images) { image.scrollIntoView(); await new Promise(r => setTimeout(r, 20)); }
  await Promise.all(images.map(image => image.complete ? null :
    new Promise(r => { image.addEventListener('load', r); image.addEventListener('error', r); })));
  window.scrollTo(0, 0);
  done(images.map(image => ({
    width: image.getAttribute('width'), natural: image.naturalWidth, current: image.currentSrc,
    inPicture: image.parentElement.tagName === 'PICTURE', srcset: image.getAttribute('srcset') || ''
  })));
})();
"""


def _browser(device_pixel_ratio: int) -> Any:
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(binary):
            message = f"{binary} is missing: apt-get install chromium chromium-driver"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # tests run as root in CI containers, where Chromium's sandbox cannot start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--force-device-scale-factor={device_pixel_ratio}",
        "--window-size=1280,1600",
    ):
        options.add_argument(argument)
    # An explicit driver keeps Selenium Manager from looking for (and downloading) one.
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))


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
    browser = _browser(device_pixel_ratio)
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
