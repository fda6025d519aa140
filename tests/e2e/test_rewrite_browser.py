"""Rewritten pages in headless Chromium, through nginx, the sidecar and the middleware under gunicorn.

- Sanitizer round trips: hostile comments cleaned by html5lib's serializer, bleach and nh3 (each keeps or escapes
  ``<`` and ``>`` inside attribute values its own way), then rewritten on the way out, must not run script; a
  comment that does carry a live handler proves the page would notice.
- No distortion: an ``<img width height>`` rewritten automatically shows a derivative of exactly the box's aspect
  ratio, for a portrait and a landscape original, at 1x and 2x.

The app is ``tests/support/rewrite_app.py``: it answers each page of :func:`pages`, written to a JSON file.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.browser import chromium
from tests.support.gallery import make_media_root, media_env
from tests.support.images import photo
from tests.support.servers import GunicornServer, NginxServer, SidecarServer

pytestmark = pytest.mark.e2e

ORIGINALS = {"portrait.jpg": photo(600, 900), "landscape.jpg": photo(900, 600)}
# Counts calls of pwned(): the only way a payload below can show it ran.
COUNTER = "<script>window.ran = 0; function pwned() { window.ran++; }</script>"
# Comments as their authors wrote them: markup hidden in attribute values next to media URLs the rewriter reads.
HOSTILE_COMMENTS = [
    '<img src="x" title="<img src=/media/landscape.jpg?w=10 onerror=pwned() x=>">',
    '<img src="/media/landscape.jpg?w=100" alt="<img src=\'/media/portrait.jpg?w=10\' onerror=pwned() x=\'>">',
    '<a title="<img src=/media/portrait.jpg?w=10 onerror=pwned()>" href="/media/portrait.jpg?w=200">photo</a>',
    '<p title="<!--"><img src="/media/portrait.jpg?w=64" title="--><img src=x onerror=pwned()>"></p>',
    '<img srcset="/media/landscape.jpg?w=64 1x, x onerror=pwned() 2x" title="<svg onload=pwned()>">',
    '<img src="/media/landscape.jpg" width="240" height="160" alt="&quot; onerror=pwned() x=&quot;">',
]
ALLOWED_TAGS = {"img", "a", "p"}
ALLOWED_ATTRIBUTES = ("title", "alt", "src", "srcset", "href", "width", "height")
# Each box once at 1x and once at 2x; a portrait and a landscape original in landscape and portrait boxes.
BOXES = [(240, 160), (160, 240), (300, 300), (500, 120)]
# Wait for every image to load or fail, then report what the browser drew.
LOADED = """
const done = arguments[arguments.length - 1];
Promise.all(Array.from(document.images).map(image => image.complete ? null :
  new Promise(r => { image.addEventListener('load', r); image.addEventListener('error', r); })))
.then(() => setTimeout(() => done({ran: window.ran, images: Array.from(document.images).map(image => ({
  id: image.id, natural: [image.naturalWidth, image.naturalHeight], drawn: [image.clientWidth, image.clientHeight],
  current: image.currentSrc}))}), 200));
"""


def sanitized(comment: str) -> dict[str, str]:
    """The comment as each sanitizer lets it through, allowing images and links with their ordinary attributes."""
    import bleach
    import html5lib
    import nh3
    from html5lib.serializer import serialize

    return {
        "html5lib": serialize(html5lib.parseFragment(comment), tree="etree"),
        "bleach": bleach.clean(comment, tags=ALLOWED_TAGS, attributes={"*": list(ALLOWED_ATTRIBUTES)}),
        "nh3": nh3.clean(comment, tags=ALLOWED_TAGS, attributes={"*": set(ALLOWED_ATTRIBUTES)}),
    }


def pages() -> dict[str, str]:
    found = {}
    for number, comment in enumerate(HOSTILE_COMMENTS):
        for sanitizer, markup in sanitized(comment).items():
            found[f"/comment-{number}-{sanitizer}"] = f"<!doctype html>{COUNTER}<article>{markup}</article>"
    found["/live-handler"] = f"<!doctype html>{COUNTER}<img src=/media/nothing.jpg?w=9 onerror=pwned()>"
    boxes = "".join(
        f'<img id="{key}-{width}x{height}" src="/media/{key}" width="{width}" height="{height}">'
        for key in ORIGINALS
        for width, height in BOXES
    )
    found["/boxes"] = f"<!doctype html><body style='margin:0'>{boxes}</body>"
    return found


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxServer]:
    root = make_media_root(ORIGINALS)
    logs = tmp_path_factory.mktemp("rewrite-browser")
    pages_file = logs / "pages.json"
    pages_file.write_text(json.dumps(pages()))
    env = {**media_env(root), "RESIZE_SIDECAR_SERVE_ORIGINALS": "false", "REWRITE_TEST_PAGES": str(pages_file)}
    try:
        with (
            SidecarServer(env, logs) as sidecar,
            GunicornServer("tests.support.rewrite_app:application", env, logs) as app,
            NginxServer(env, sidecar_url=sidecar.url, app_url=app.url) as nginx,
        ):
            yield nginx
    finally:
        shutil.rmtree(root, ignore_errors=True)


def load(browser: Any, url: str) -> dict[str, Any]:
    browser.set_script_timeout(60)
    browser.get(url)
    result: dict[str, Any] = browser.execute_async_script(LOADED)
    result["html"] = browser.page_source
    return result


def test_a_live_handler_in_a_comment_is_noticed(stack: NginxServer) -> None:
    browser = chromium(1)
    try:
        assert load(browser, stack.url + "/live-handler")["ran"] == 1
    finally:
        browser.quit()


@pytest.mark.parametrize("sanitizer", ["html5lib", "bleach", "nh3"])
def test_sanitized_hostile_comments_stay_inert_after_rewriting(stack: NginxServer, sanitizer: str) -> None:
    browser = chromium(1)
    try:
        for number in range(len(HOSTILE_COMMENTS)):
            result = load(browser, f"{stack.url}/comment-{number}-{sanitizer}")
            assert result["ran"] == 0, (HOSTILE_COMMENTS[number], result["html"])
        # The comments' media URLs were rewritten: the pages went through the rewriter, not around it.
        assert "/media/_r/" in result["html"]
    finally:
        browser.quit()


@pytest.mark.parametrize("device_pixel_ratio", [1, 2])
def test_sized_images_show_a_derivative_of_the_boxs_aspect_ratio(stack: NginxServer, device_pixel_ratio: int) -> None:
    browser = chromium(device_pixel_ratio)
    try:
        images = load(browser, stack.url + "/boxes")["images"]
    finally:
        browser.quit()
    assert len(images) == len(ORIGINALS) * len(BOXES)
    for image in images:
        (natural_width, natural_height), (drawn_width, drawn_height) = image["natural"], image["drawn"]
        box_width, box_height = (int(side) for side in image["id"].rpartition("-")[2].split("x"))
        assert "/media/_r/" in image["current"] and "-fill-" in image["current"], image
        assert (drawn_width, drawn_height) == (box_width, box_height), image
        # The picture the browser draws into the box has the box's shape: nothing is stretched or squashed.
        assert abs(natural_width / natural_height - box_width / box_height) <= 0.01 * box_width / box_height, image
