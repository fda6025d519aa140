"""The demo gallery: every original in local storage on one responsive page, served through ``MediaMiddleware``.

``make demo`` runs it with gunicorn (``gunicorn examples.gallery:application``) behind nginx, next to the sidecar;
settings come from the ``RESIZE_SIDECAR_*`` environment (``STORAGE=local``, ``LOCAL_ROOT``, ``SECRETS``). The page
shows each way of asking for derivatives: ``<img srcset>`` built with :class:`~resize_sidecar.middleware.MediaURLs` (the
browser picks 1x or 2x by its pixel density), ``<picture>`` with AVIF and WebP, smart square crops, and plain
``<img src="/media/…" width height>`` that the middleware rewrites on the way out.
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from resize_sidecar.core.errors import MalformedPathError
from resize_sidecar.core.settings import Settings, load
from resize_sidecar.core.signing import validate_key
from resize_sidecar.middleware import MediaMiddleware, MediaURLs
from resize_sidecar.middleware.core import ENVIRON_KEY

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".avif", ".gif", ".heic", ".heif", ".tif", ".tiff", ".bmp"}
)
MAX_ORIGINALS = 60
#: Images above the fold load at once; the others when scrolled to.
EAGER = 4

STYLE = """
:root { --ink: #1d2230; --muted: #667085; --paper: #f6f5f2; --card: #fff; --accent: #e4572e; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink);
       background: var(--paper); }
header { padding: 2.5rem 1.5rem 1rem; max-width: 1200px; margin: auto; }
header h1 { margin: 0; font-size: 2rem; letter-spacing: -0.02em; }
header h1 span { color: var(--accent); }
header p { margin: .25rem 0 0; color: var(--muted); }
main { max-width: 1200px; margin: auto; padding: 0 1.5rem 3rem; }
section { margin-top: 2.5rem; }
h2 { font-size: 1.1rem; margin: 0 0 .25rem; }
h2 + p { margin: 0 0 1rem; color: var(--muted); font-size: .9rem; }
code { font-size: .85em; background: #ebe9e4; padding: .1em .35em; border-radius: 4px; }
.grid { display: grid; gap: 1rem; grid-template-columns: repeat(auto-fill, minmax(240px, 1fr)); }
.grid.small { grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); }
.grid.wide { grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); }
figure { margin: 0; background: var(--card); border-radius: 10px; overflow: hidden;
         box-shadow: 0 1px 2px rgba(16, 24, 40, .06), 0 4px 12px rgba(16, 24, 40, .06); }
figure img { display: block; width: 100%; height: auto; background: #e7e4de; }
.contain img { aspect-ratio: 3 / 2; object-fit: contain; }
figcaption { padding: .5rem .75rem .6rem; font-size: .8rem; color: var(--muted);
             white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.empty { padding: 3rem; text-align: center; background: var(--card); border-radius: 10px; color: var(--muted); }
"""


def list_originals(settings: Settings, limit: int = MAX_ORIGINALS) -> list[str]:
    """Keys of the image originals in local storage, sorted; derivatives and temporary files are left out."""
    if settings.storage != "local":
        return []
    root = Path(settings.local_root)
    derived = settings.derived_prefix.rstrip("/")
    keys = []
    for folder, folders, files in os.walk(root):
        relative = Path(folder).relative_to(root)
        # Derivatives live under their own prefix; hidden folders hold nothing to show.
        folders[:] = sorted(f for f in folders if not f.startswith(".") and (relative.parts or f != derived))
        for name in files:
            key = (relative / name).as_posix()
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            try:
                validate_key(key, settings.derived_prefix)
            except MalformedPathError:
                continue
            keys.append(key)
    return sorted(keys)[:limit]


def _figure(image: str, key: str, extra_class: str = "") -> str:
    class_attribute = f' class="{extra_class}"' if extra_class else ""
    caption = html.escape(key)
    return f'<figure{class_attribute}>{image}<figcaption title="{caption}">{caption}</figcaption></figure>'


def _section(title: str, note: str, figures: Iterable[str], grid: str = "grid") -> str:
    return f'<section><h2>{title}</h2><p>{note}</p><div class="{grid}">{"".join(figures)}</div></section>'


def render_page(urls: MediaURLs, keys: list[str]) -> str:
    """The gallery's HTML; every key and attribute is escaped."""
    media_url = html.escape(urls.settings.media_url)
    if not keys:
        body = (
            '<p class="empty">No originals yet: put a few photos in <code>'
            f"{html.escape(urls.settings.local_root)}</code> and reload.</p>"
        )
    else:
        grid = _section(
            "Every original",
            "Cropped to 4:3 with <code>fit=fill</code>; the browser picks the 1x or 2x derivative for its screen.",
            (
                _figure(
                    urls.img(
                        key, width=320, height=240, fit="fill", alt=key,
                        attrs={"loading": "eager" if index < EAGER else "lazy", "decoding": "async"},
                    ),
                    key,
                )
                for index, key in enumerate(keys)
            ),
        )  # fmt: skip
        modern = _section(
            "AVIF and WebP",
            "<code>&lt;picture&gt;</code> with AVIF and WebP sources and a JPEG fallback.",
            (
                _figure(urls.picture(key, width=480, height=320, fit="fill", alt=key, attrs={"loading": "lazy"}), key)
                for key in keys[:3]
            ),
            "grid wide",
        )
        crops = _section(
            "Smart crops",
            "Squares cut around what libvips finds most interesting (<code>gravity=sm</code>).",
            (
                _figure(
                    urls.img(key, width=180, height=180, fit="fill", gravity="sm", alt=key, attrs={"loading": "lazy"}),
                    key,
                )
                for key in keys[:6]
            ),
            "grid small",
        )
        automatic = _section(
            "Plain HTML",
            f'Written as <code>&lt;img src="{media_url}…" width="240" height="160"&gt;</code>; the middleware '
            "signed and sized it on the way out.",
            (
                _figure(
                    f'<img src="{html.escape(urls.url(key))}" width="240" height="160" alt="{html.escape(key)}" '
                    'loading="lazy">',
                    key,
                    "contain",
                )
                for key in keys[:4]
            ),
            "grid small",
        )
        body = grid + modern + crops + automatic
    count = f"{len(keys)} original{'s' if len(keys) != 1 else ''}"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>resize-sidecar gallery</title><style>{STYLE}</style></head><body>"
        f"<header><h1>resize<span>-</span>sidecar</h1><p>{count}, resized on demand and signed.</p></header>"
        f"<main>{body}</main></body></html>"
    )


class Gallery:
    """The bare WSGI app: ``/`` is the page, everything else 404."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        if environ.get("PATH_INFO", "/") != "/":
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"Not Found\n"]
        page = render_page(environ[ENVIRON_KEY], list_originals(self.settings)).encode()
        headers = [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(page))),
            # The list of originals changes whenever a file is added.
            ("Cache-Control", "no-cache"),
        ]
        start_response("200 OK", headers)
        return [page]


def make_application(settings: Settings | None = None) -> MediaMiddleware:
    """The gallery wrapped in the middleware (no development serving: nginx and the sidecar answer media)."""
    settings = settings if settings is not None else load()
    return MediaMiddleware(Gallery(settings), settings)


application = make_application()
