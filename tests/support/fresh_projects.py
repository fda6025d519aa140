"""Fresh Django and Flask projects built from the README's own snippets, served by the real stack, seen by Chromium.

A snippet is the fenced block right after ``<!-- test: NAME -->`` in README.md: a developer copies exactly that, so
the tests do too (never examples/). The project runs under gunicorn from its own folder (the venv's ``gunicorn``
script, so the repository is not on its path: the package is found as an installed user would find it), behind
nginx and next to the sidecar.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from tests.support.browser import chromium
from tests.support.images import image_size
from tests.support.pages import Page, fetch, signed
from tests.support.servers import REPO, NginxServer, Server, SidecarServer, free_port
from tests.support.trickle import trickled

VENV_BIN = Path(sys.executable).parent
_SNIPPET = re.compile(r"<!-- test: ([\w-]+) -->\n```[\w-]*\n(.*?)\n```", re.DOTALL)

# Waits for every image (lazy ones scrolled into view), then reports each with its layout and the page's layout
# shifts (the Layout Instability API, which Chromium implements).
IMAGES_AND_SHIFTS = """
const done = arguments[arguments.length - 1];
let shifts = 0;
const moved = [];
new PerformanceObserver(list => {
  for (const entry of list.getEntries()) {
    shifts += entry.value;
    const describe = node =>
      node ? (node.outerHTML || node.nodeName + ' ' + JSON.stringify(node.textContent)).slice(0, 120) : '?';
    const box = rect => [rect.x, rect.y, rect.width, rect.height].map(Math.round).join(',');
    for (const source of entry.sources) moved.push({
      at: Math.round(entry.startTime), node: describe(source.node),
      from: box(source.previousRect), to: box(source.currentRect),
    });
  }
}).observe({type: 'layout-shift', buffered: true});
const images = Array.from(document.images);
(async () => {
  for (const image of images) { image.scrollIntoView(); await new Promise(r => setTimeout(r, 20)); }
  await Promise.all(images.map(image => image.complete ? null :
    new Promise(r => { image.addEventListener('load', r); image.addEventListener('error', r); })));
  await new Promise(r => setTimeout(r, 200));
  done({shifts, moved, images: images.map(image => ({
    width: image.getAttribute('width'), height: image.getAttribute('height'),
    naturalWidth: image.naturalWidth, naturalHeight: image.naturalHeight, complete: image.complete,
    shownWidth: image.getBoundingClientRect().width, shownHeight: image.getBoundingClientRect().height,
    current: image.currentSrc,
  }))});
})();
"""


def readme_snippets() -> dict[str, str]:
    """Every marked snippet of README.md by name."""
    return dict(_SNIPPET.findall((REPO / "README.md").read_text()))


def snippet(name: str) -> str:
    found = readme_snippets()
    assert name in found, f"README.md has no snippet marked <!-- test: {name} -->"
    return found[name] + "\n"


def run(command: list[str], folder: Path, env: dict[str, str] | None = None) -> str:
    """A command of the project's (``manage.py …``) from its folder, as its developer runs it; its output."""
    result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


@contextmanager
def served(folder: Path, application: str, env: dict[str, str], logs: Path) -> Iterator[NginxServer]:
    """The sidecar, ``application`` under gunicorn from ``folder``, and nginx in front of both."""
    port = free_port()
    gunicorn = [str(VENV_BIN / "gunicorn"), "--chdir", str(folder), "--bind", f"127.0.0.1:{port}", application]
    with ExitStack() as servers:
        sidecar = servers.enter_context(SidecarServer(env, logs))
        app = servers.enter_context(Server(gunicorn, port=port, log=logs / f"app-{port}.log", env=env))
        yield servers.enter_context(NginxServer(env, sidecar_url=sidecar.url, app_url=app.url))


def page_of(url: str, images: int) -> tuple[Page, list[dict[str, str]]]:
    """The page at ``url`` (200, HTML) and its ``images`` images' attributes, each URL signed as the contract says."""
    status, content_type, body = fetch(url)
    assert (status, content_type) == (200, "text/html")
    page = Page(body.decode())
    found = [attributes for tag, attributes in page.tags if tag == "img"]
    assert len(found) == images, found
    for media_url in page.media_urls():
        signed(media_url)
    return page, found


def assert_placeholders_load(base_url: str, images: list[dict[str, str]]) -> int:
    """Each image's placeholder (a blurred derivative in its ``style``) is served, in the image's shape; how many."""
    count = 0
    for attributes in images:
        found = re.search(r'url\("([^"]+)"\)', attributes.get("style", ""))
        if found is None:
            continue
        status, content_type, data = fetch(base_url + found.group(1))
        assert (status, content_type) == (200, "image/jpeg"), found.group(1)
        width, height = image_size(data)
        assert abs(height - width * int(attributes["height"]) / int(attributes["width"])) <= 1, attributes
        count += 1
    return count


def images_in_chromium(origin: str, path: str, device_pixel_ratio: int = 1) -> dict[str, Any]:
    """What Chromium shows at ``path`` of ``origin``: each image (attributes, natural and laid-out size) and the layout
    shift, the page arriving an image at a time (:mod:`tests.support.trickle`)."""
    browser = chromium(device_pixel_ratio)
    try:
        browser.set_script_timeout(120)
        with trickled(origin) as slow:
            browser.get(slow + path)
            seen: dict[str, Any] = browser.execute_async_script(IMAGES_AND_SHIFTS)
        return seen
    finally:
        browser.quit()


def assert_every_image_loads_in_its_box(seen: dict[str, Any], count: int) -> None:
    """Every image loaded, with width and height attributes of the shape the browser got, and nothing shifted."""
    images = seen["images"]
    assert len(images) == count, images
    for image in images:
        assert image["complete"] and image["naturalWidth"] > 0, image
        assert image["width"] and image["height"], image
        width, height = int(image["width"]), int(image["height"])
        # The derivative's shape is the box's, to a pixel of rounding at the size the browser took.
        assert abs(image["naturalHeight"] - image["naturalWidth"] * height / width) <= 1, image
        assert abs(image["shownHeight"] - image["shownWidth"] * height / width) <= 1, image
    assert seen["shifts"] == 0, seen
