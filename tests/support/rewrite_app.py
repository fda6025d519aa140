"""A WSGI app for the rewriting tests in Chromium: the pages of the JSON file ``REWRITE_TEST_PAGES`` behind
``MediaMiddleware`` (settings from the ``RESIZE_SIDECAR_*`` environment). Run it with gunicorn:
``gunicorn tests.support.rewrite_app:application``. It imports nothing of the test suite, whose conftest clears that
environment.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from resize_sidecar.middleware import MediaMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

PAGES: dict[str, str] = json.loads(Path(os.environ["REWRITE_TEST_PAGES"]).read_text())


def pages(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    page = PAGES.get(environ.get("PATH_INFO", ""))
    if page is None:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no such page"]
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
    return [page.encode()]


application = MediaMiddleware(pages)
