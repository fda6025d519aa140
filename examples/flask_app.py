"""A Flask app with the ``ResizeSidecar`` extension: ``MediaMiddleware`` and the ``media_url`` Jinja2 global.

Run it with no nginx at all (development serving answers ``/media/``)::

    RESIZE_SIDECAR_LOCAL_ROOT=media RESIZE_SIDECAR_SECRETS=dev-secret RESIZE_SIDECAR_SERVE_ORIGINALS=true \\
        flask --app examples.flask_app run

and put a photo at ``media/example.jpg`` (``EXAMPLE_KEY`` names another one).
"""

from __future__ import annotations

import os

from flask import Flask, render_template_string

from resize_sidecar.middleware.flask import ResizeSidecar

EXAMPLE_KEY = os.environ.get("EXAMPLE_KEY", "example.jpg")

PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Flask + resize-sidecar</title></head>
<body>
  <h1>Flask + resize-sidecar</h1>
  <h2>Built in the template</h2>
  {{ media_url.img(key, width=320, height=240, fit="fill", alt="Cropped to 320x240", attrs={"id": "built"}) }}
  {{ media_url.picture(key, width=320, height=240, fit="fill", alt="AVIF, WebP or JPEG", attrs={"id": "picture"}) }}
  <h2>Plain HTML, rewritten by the middleware</h2>
  <img id="automatic" src="{{ key|media_url }}" width="300" height="200" alt="Sized from its attributes">
  <img id="explicit" src="{{ media_prefix }}{{ key }}?w=200&amp;fmt=webp" alt="Asked for in the URL">
  <p><a id="original" href="{{ key|media_url }}">The original</a></p>
</body>
</html>
"""

app = Flask(__name__)
media = ResizeSidecar(app, serve_media=True)


@app.get("/")
def index() -> str:
    media_prefix = app.extensions["resize_sidecar"].settings.media_url
    return render_template_string(PAGE, key=EXAMPLE_KEY, media_prefix=media_prefix)
