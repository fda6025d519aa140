"""The floor: the least a gunicorn + pyvips server can do per derivative, to measure the sidecar's overhead against.

``GET /{mode}/{width}x{height}/{fmt}/{key}`` reads ``$BENCH_FLOOR_ROOT/{key}``, makes one ``thumbnail_buffer`` of it
and answers the encoded bytes with the sidecar's encoder settings (quality, AVIF effort, no metadata). No signature,
no header probe, no limits, no storage write, no nginx: everything the sidecar does beyond this is its overhead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import pyvips

# Nothing is ever rendered twice, as in the sidecar: an operation cache would only hold memory.
pyvips.cache_set_max(0)

ROOT = os.environ.get("BENCH_FLOOR_ROOT", ".")
_KEEP_NONE = pyvips.ForeignKeep.NONE
#: The sidecar's default qualities (resize_sidecar.core.settings); PNG and GIF are lossless.
QUALITIES = {"jpg": 80, "webp": 80, "avif": 55}


def save(image: pyvips.Image, fmt: str, quality: int | None = None) -> bytes:
    """Encode as the sidecar does (resize_sidecar.media.imaging): same options, no metadata."""
    q = quality or QUALITIES.get(fmt, 0)
    if fmt == "jpg":
        return bytes(image.jpegsave_buffer(Q=q, optimize_coding=True, keep=_KEEP_NONE))
    if fmt == "webp":
        return bytes(image.webpsave_buffer(Q=q, keep=_KEEP_NONE))
    if fmt == "avif":
        return bytes(image.heifsave_buffer(Q=q, compression="av1", bitdepth=8, effort=2, keep=_KEEP_NONE))
    if fmt == "png":
        return bytes(image.pngsave_buffer(keep=_KEEP_NONE))
    if fmt == "gif":
        return bytes(image.gifsave_buffer(keep=_KEEP_NONE))
    raise KeyError(fmt)


TYPES = {"jpg": "image/jpeg", "webp": "image/webp", "avif": "image/avif", "png": "image/png", "gif": "image/gif"}


def render(data: bytes, mode: str, width: int, height: int, fmt: str, quality: int | None = None) -> bytes:
    options: dict[str, Any] = {"height": height, "size": "down"}
    if mode == "fill":
        options["crop"] = "centre"
    image = pyvips.Image.thumbnail_buffer(data, width, **options)
    if fmt == "jpg" and image.hasalpha():
        # JPEG has no alpha; flattening is what any server must do for a transparent source.
        image = image.flatten(background=[255, 255, 255])
    return save(image, fmt, quality)


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if path == "/healthz":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
        return [b"ok\n"]
    try:
        _, mode, size, fmt, key = path.split("/", 4)
        width, height = (int(side) for side in size.split("x"))
        with open(os.path.join(ROOT, key), "rb") as file:
            data = file.read()
        body = render(data, mode, width, height, fmt)
    except (ValueError, OSError, KeyError, pyvips.Error) as error:
        message = f"{type(error).__name__}: {error}\n".encode()
        start_response("400 Bad Request", [("Content-Type", "text/plain"), ("Content-Length", str(len(message)))])
        return [message]
    start_response("200 OK", [("Content-Type", TYPES[fmt]), ("Content-Length", str(len(body)))])
    return [body]
