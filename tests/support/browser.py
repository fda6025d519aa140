"""Headless Chromium (Debian's chromium and chromium-driver) driven by Selenium, as the browser tests use it."""

from __future__ import annotations

import os
from typing import Any

import pytest

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
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


def chromium(device_pixel_ratio: int) -> Any:
    """A headless Chromium at ``device_pixel_ratio``; the test skips (fails under CI) where it is not installed."""
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
