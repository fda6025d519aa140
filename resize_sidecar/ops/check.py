"""``resize-sidecar check``: a doctor for a setup (secrets, storage, image formats, the nginx configuration)."""

from __future__ import annotations

import base64
import struct
import uuid
import zlib
from dataclasses import dataclass
from typing import Literal

from resize_sidecar.core.errors import SettingsError, SidecarError, UnsupportedImageError
from resize_sidecar.core.formats import FORMATS
from resize_sidecar.core.objects import write_headers
from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import DerivativeSpec
from resize_sidecar.media import imaging
from resize_sidecar.media.storage import Storage
from resize_sidecar.ops.bucket import NO_PUBLIC_ACCESS_BLOCK
from resize_sidecar.ops.nginx import render_nginx

# A 16x16 HEIC of one colour, written by libheif with x265 (pillow-heif): nothing here can write one.
_HEIC_SAMPLE = base64.b64decode(
    "AAAAHGZ0eXBoZWljAAAAAG1pZjFoZWljbWlhZgAAAXxtZXRhAAAAAAAAACFoZGxyAAAAAAAAAABwaWN0AAAAAAAAAAAAAAAAAAAAACJpbG9j"
    "AAAAAERAAAEAAQAAAAABoAABAAAAAAAAACYAAAAjaWluZgAAAAAAAQAAABVpbmZlAgAAAAABAABodmMxAAAAAA5waXRtAAAAAAABAAAA/Glw"
    "cnAAAADcaXBjbwAAAHVodmNDAQNwAAAAkAAAAAAAHvAA/P34+AAADwNgAAEAGEABDAH//wNwAAADAJAAAAMAAAMAHroCQGEAAQApQgEBA3AA"
    "AAMAkAAAAwAAAwAeoCCBBZbqrprm4CGgwIAAAAyAAAADAIRiAAEABkQBwXPBiQAAABNjb2xybmNseAABAA0ABoAAAAAUaXNwZQAAAAAAAABA"
    "AAAAQAAAAChjbGFwAAAAEAAAAAEAAAAQAAAAAf///9AAAAAC////0AAAAAIAAAAQcGl4aQAAAAADCAgIAAAAGGlwbWEAAAAAAAAAAQABBYEC"
    "AwWEAAAALm1kYXQAAAAiKAGvBBITTOD46cJoP9Kn+SZV668n7asr40mfd7EYkqn/oA=="
)


@dataclass(frozen=True)
class Finding:
    """One line of the doctor's report; only a ``fail`` makes the setup unhealthy."""

    name: str
    status: Literal["ok", "warn", "fail"]
    detail: str


def check(settings: Settings, storage: Storage) -> list[Finding]:
    """A doctor for a setup: secrets, storage (reached, written, read back), image formats, the nginx config.

    The settings are valid when this is called (loading them validates them). Image formats are checked by
    rendering a small image to every output format and reading each result back through the sidecar's own code.
    """
    findings = [Finding("settings", "ok", f"valid: storage {settings.storage}, on miss {settings.on_miss}")]
    findings.append(_check_secrets(settings))
    findings.append(_check_storage(settings, storage))
    findings.append(Finding("libvips", "ok", imaging.libvips_version()))
    findings.extend(_check_formats(settings))
    if "heifload" in settings.allowed_loaders:
        findings.append(_check_heic(settings))
    findings.append(_check_nginx(settings))
    return findings


def _check_secrets(settings: Settings) -> Finding:
    try:
        secrets = settings.require_secrets()
    except SettingsError as error:
        return Finding("secrets", "fail", str(error))
    weak = [number for number, secret in enumerate(secrets, 1) if len(secret) < 16 or len(set(secret)) < 6]
    short = [number for number, secret in enumerate(secrets, 1) if len(secret) < 32]
    advice = "make one with: python -c 'import secrets; print(secrets.token_hex(32))'"
    if weak:
        return Finding(
            "secrets",
            "fail",
            f"secret number {weak[0]} is guessable (under 16 characters or 6 different ones); {advice}",
        )
    if short:
        return Finding("secrets", "warn", f"secret number {short[0]} is under 32 characters; {advice}")
    return Finding("secrets", "ok", f"{len(secrets)} configured, the shortest of {min(map(len, secrets))} characters")


def _check_storage(settings: Settings, storage: Storage) -> Finding:
    key = f"{settings.derived_prefix}resize-sidecar-check-{uuid.uuid4().hex}"
    data = uuid.uuid4().bytes
    try:
        storage.check()
    except SidecarError as error:
        return Finding("storage", "fail", error.detail)
    try:
        storage.put(key, data, *write_headers("check_object", settings))
    except SidecarError as error:
        # Some S3-compatible stores (Ceph's RADOS Gateway) answer reads and refuse every write under this block.
        advice = f"a public access block? see setup-bucket {NO_PUBLIC_ACCESS_BLOCK}"
        return Finding("storage", "fail", f"reached, but it refuses writes: {error.detail} ({advice})")
    try:
        try:
            read = storage.get(key)
        finally:
            storage.delete(key)
    except SidecarError as error:
        return Finding("storage", "fail", error.detail)
    if read != data:
        return Finding("storage", "fail", f"{storage!r}: a test object read back different bytes")
    return Finding("storage", "ok", f"{storage!r}: reached; a test object was written, read back and deleted")


def _check_formats(settings: Settings) -> list[Finding]:
    original = _tiny_png()
    findings = []
    for fmt in FORMATS:
        try:
            made = imaging.render(original, DerivativeSpec(), fmt, settings.image_limits)
        except SidecarError as error:
            findings.append(Finding(f"format {fmt}", "fail", f"cannot write it: {error.detail}"))
            continue
        try:
            loader = imaging.probe(made.body, settings.image_limits).loader
            imaging.render(made.body, DerivativeSpec(8, 8), "png", settings.image_limits)
        except SidecarError as error:
            findings.append(Finding(f"format {fmt}", "warn", f"written, but not read as an original: {error.detail}"))
            continue
        findings.append(Finding(f"format {fmt}", "ok", f"written and read back ({loader})"))
    return findings


def _check_heic(settings: Settings) -> Finding:
    try:
        info = imaging.probe(_HEIC_SAMPLE, settings.image_limits)
        imaging.render(_HEIC_SAMPLE, DerivativeSpec(8, 8), "png", settings.image_limits, info)
    except UnsupportedImageError as error:
        return Finding("heic", "warn", f"HEIC originals are refused: {error.detail}")
    except SidecarError as error:
        return Finding("heic", "fail", f"an HEIC original cannot be read: {error.detail}")
    return Finding("heic", "ok", f"an HEIC original read and rendered ({info.decoder}: {imaging.heic_decoder()})")


def _tiny_png(width: int = 16, height: int = 16) -> bytes:
    """A small RGB gradient as PNG, made with the standard library (the check must not depend on a file)."""
    rows = b"".join(
        b"\x00" + bytes(value for x in range(width) for value in (x * 15, y * 15, 128)) for y in range(height)
    )

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _check_nginx(settings: Settings) -> Finding:
    try:
        text = render_nginx(settings, listen="8080", sidecar="http://127.0.0.1:8000")
    except SettingsError as error:
        return Finding("nginx", "fail", str(error))
    return Finding("nginx", "ok", f"the configuration renders ({len(text.splitlines())} lines)")

