"""The media API under ``/api/``: upload, activate, list, describe, temporary URLs, zip archives, delete.

Every route needs ``Authorization: Bearer {token}`` with one of the ``API_SECRET`` tokens, except the OpenAPI
document (``/api/openapi.json``) and the temporary URLs (``/api/files/…``), which carry their own expiring
signature. With no ``API_SECRET`` the API does not exist: every ``/api/`` path is 404.

Uploads are stored under ``INCOMING_PREFIX`` with their preset derivatives; activation moves them to their final
key (the same key without the prefix), and an S3 lifecycle rule can expire what was never activated. Keys in paths
are percent-encoded UTF-8; every key is checked against the URL contract
(:func:`~resize_sidecar.core.signing.validate_key`) before storage sees it. Client mistakes are 4xx with a JSON
body ``{"error", "detail"}``, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import hmac
import io
import logging
import re
import secrets
import time
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from webob import Request, Response

from resize_sidecar.core.errors import (
    BadSignatureError,
    ConflictError,
    MalformedPathError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    PolicyError,
    SidecarError,
    SourceTooLargeError,
    UnauthorizedError,
    UnsupportedImageError,
    UnsupportedMediaTypeError,
    WrongSecretError,
)
from resize_sidecar.core.formats import CONTENT_TYPES, DEFAULT_FORMAT, format_of_key
from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import (
    MAX_KEY_BYTES,
    PRIVATE_PREFIX,
    DerivativePath,
    encode_key,
    format_path,
    names_a_derivative,
    sign,
    validate_key,
)
from resize_sidecar.media import imaging, originals
from resize_sidecar.media.derive import Deriver
from resize_sidecar.media.storage import Storage, StoredObject, delete_derivatives, read_capped
from resize_sidecar.web import openapi

log = logging.getLogger(__name__)

#: Room for the multipart boundaries and part headers around an uploaded file of the largest allowed size.
_MULTIPART_OVERHEAD = 64 * 1024
#: Attempts at a free random key before giving up (a collision of 128 random bits is not expected, ever).
_KEY_ATTEMPTS = 3
_RANDOM_BYTES = 16
#: Listing: objects per page by default and at most, and objects looked at per request (a filter that matches
#: little ends the page early with a cursor, rather than scanning a large bucket in one request).
_LIST_DEFAULT = 100
_LIST_MAX = 1000
_SCAN_BUDGET = 5000
_MATCH_MAX_CHARACTERS = 256
#: Sorts after every key that starts with a given prefix: listing from prefix + this skips the whole area.
_AFTER_EVERY_KEY = "\U0010ffff"
_TEMP_URL_DEFAULT_SECONDS = 300
#: Stored originals may be replaced by a delete and a new upload to the same key: caches must ask again.
_ORIGINAL_CACHE_CONTROL = "no-cache"
_NO_STORE = "no-store"
_ZIP_ERRORS_NAME = "ERRORS.txt"
#: Routes that check a signature of their own instead of the API secret.
_OPEN_ROUTES = ("openapi", "files")
#: Per-image routes named by the path's last segment; any other path under /api/images/ is the key itself.
_ACTIONS = ("activate", "meta", "url")


class RouteMethodError(MethodNotAllowedError):
    """A method the route does not answer; ``allowed`` lists those it does."""

    def __init__(self, method: str, allowed: list[str]) -> None:
        super().__init__(f"{method} is not allowed here; use {', '.join(allowed)}")
        self.allowed = allowed


class ApiApp:
    """Answers every ``/api/…`` request; errors become JSON answers with their status, never exceptions."""

    def __init__(self, settings: Settings, storage: Storage, deriver: Deriver) -> None:
        """Answer with ``deriver``, the process's one: every decode takes one of its transform slots."""
        self.settings = settings
        self.storage = storage
        self.deriver = deriver
        self.enabled = bool(settings.api_secret)
        # (route, method) -> handler; HEAD is answered as GET (webob drops the body).
        self.handlers: dict[tuple[str, str], Callable[[Request, str], Response]] = {
            ("openapi", "GET"): self.openapi_document,
            ("files", "GET"): self.temporary_file,
            ("images", "GET"): self.list_images,
            ("images", "POST"): self.upload,
            ("image", "DELETE"): self.delete,
            ("activate", "POST"): self.activate,
            ("meta", "GET"): self.meta,
            ("url", "GET"): self.temporary_url,
            ("archive", "GET"): self.archive,
        }

    def handle(self, request: Request) -> Response:
        """The answer to an ``/api/…`` request; never raises."""
        if not self.enabled:
            return self.error_response(NotFoundError("the media API is not enabled"))
        try:
            return self.dispatch(request)
        except SidecarError as error:
            return self.error_response(error)
        except UnicodeDecodeError:
            return self.error_response(MalformedPathError("the path or query is not valid UTF-8"))
        except Exception:
            log.exception("unexpected error answering %s %s", request.method, request.path_qs)
            return self.error_response(SidecarError())

    def dispatch(self, request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        # webob decodes the path (as UTF-8), so a key may arrive with or without its slashes percent-encoded.
        name, key = self.route(request.path_info, method)
        if name not in _OPEN_ROUTES:
            self.authenticate(request)
        handler = self.handlers.get((name, method))
        if handler is None:
            raise RouteMethodError(request.method, self.allowed_methods(name))
        if key is not None:
            self.checked_key(key)
        return handler(request, key or "")

    @staticmethod
    def route(path: str, method: str) -> tuple[str, str | None]:
        """The route a decoded path names, and the key in it (None for routes without one).

        Raises:
            NotFoundError: no route has this path.
        """
        fixed = {"/api/openapi.json": "openapi", "/api/images": "images", "/api/archive": "archive"}
        if path in fixed:
            return fixed[path], None
        if path.startswith("/api/files/"):
            return "files", path.removeprefix("/api/files/")
        if path.startswith("/api/images/"):
            rest = path.removeprefix("/api/images/")
            key, _, action = rest.rpartition("/")
            # A key may itself end in "/meta": DELETE names the whole rest as the key.
            if action in _ACTIONS and method != "DELETE":
                return action, key
            return "image", rest
        raise NotFoundError("no such API route")

    def allowed_methods(self, name: str) -> list[str]:
        allowed = [method for route, method in self.handlers if route == name]
        if name in _ACTIONS:
            allowed.append("DELETE")
        return [*allowed, "HEAD"] if "GET" in allowed else allowed

    def checked_key(self, key: str) -> str:
        """Raises: MalformedPathError: the key breaks the URL contract."""
        validate_key(key, self.settings.derived_prefix)
        return key

    def authenticate(self, request: Request) -> None:
        """Accept a request that carries one of the API secrets as its bearer token.

        Raises:
            UnauthorizedError: no bearer token.
            WrongSecretError: a bearer token that is none of the secrets.
        """
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise UnauthorizedError("send the API secret as 'Authorization: Bearer …'")
        # Header values are latin-1 text under WSGI: compare bytes, so that no value can make compare_digest fail.
        offered = token.strip().encode("latin-1")
        valid = False
        for secret in self.settings.api_secret:
            # Every secret is tried, so the time taken does not tell which one (if any) came close.
            valid |= hmac.compare_digest(secret.encode(), offered)
        if not valid:
            raise WrongSecretError("the bearer token is not an API secret")

    # Routes. Each takes the request and the key the path names ("" for routes without one).

    def openapi_document(self, request: Request, key: str) -> Response:
        return self.json_response(200, openapi.document(self.settings))

    def upload(self, request: Request, key: str) -> Response:
        """``POST /api/images``: check, re-encode and store an original under the incoming prefix, with presets."""
        wanted = self.query(request, "key")
        if wanted is not None:
            if not self.settings.upload_custom_keys:
                raise PolicyError("choosing a key is not allowed (UPLOAD_CUSTOM_KEYS)")
            self.checked_key(wanted)
            if wanted.startswith(self.settings.incoming_prefix):
                raise MalformedPathError(f"a key may not start with {self.settings.incoming_prefix!r}")
            # Its derivatives would live under _r/{key}/: on local storage, a folder where another image's
            # derivative file goes (or the other way round), so one of the two could never be stored.
            if any(names_a_derivative(segment) for segment in wanted.split("/")[1:]):
                raise MalformedPathError("a key's names after the first may not look like a derivative's file name")
        data = self.read_upload(request)
        # Decoding an upload in full costs what a transform does: it waits for one of the machine's transform slots.
        with self.deriver.transform_slot():
            original = self.prepare(data)
            del data  # the upload can be tens of megabytes: from now on only what is stored is kept
            if wanted is not None and format_of_key(wanted) != original.fmt:
                raise MalformedPathError(f"the key's extension does not fit the image's format ({original.fmt})")
            final_key = self.store_incoming(wanted, original)
            incoming_key = self.settings.incoming_prefix + final_key
            try:
                urls = self.make_presets(incoming_key, original)
            except SidecarError:
                # Nothing partial stays behind: the original goes with whatever derivatives were stored.
                self.remove(incoming_key)
                raise
        body = {
            "key": final_key,
            "incoming_key": incoming_key,
            "width": original.width,
            "height": original.height,
            "pages": original.pages,
            "format": original.fmt,
            "content_type": original.content_type,
            "bytes": len(original.body),
            "urls": urls,
        }
        response = self.json_response(201, body)
        response.location = f"/api/images/{encode_key(incoming_key)}/meta"
        return response

    def activate(self, request: Request, key: str) -> Response:
        """``POST /api/images/{key}/activate``: move an upload and its derivatives to the final key; idempotent.

        Every step can be run again: derivatives are copied first (re-signed for the new key), then the original,
        then the incoming objects are deleted, derivatives before the original, so that while the incoming original
        exists nothing is lost and a second call finishes what a first one did not.
        """
        final_key = key.removeprefix(self.settings.incoming_prefix)
        self.checked_key(final_key)
        incoming_key = self.settings.incoming_prefix + final_key
        data = self.storage.get(incoming_key, max_bytes=self.settings.max_source_bytes)
        if data is None:
            if not self.storage.exists(final_key):
                raise NotFoundError(f"no upload at {incoming_key!r} and no image at {final_key!r}")
            return self.json_response(200, self.activated(final_key, moved=0, activated=False))
        existing = self.storage.get(final_key, max_bytes=self.settings.max_source_bytes)
        if existing is not None and existing != data:
            raise ConflictError(f"another image is stored at {final_key!r}")
        moved = self.move_derivatives(incoming_key, final_key)
        self.storage.put_if_absent(final_key, data, self.content_type(data), _ORIGINAL_CACHE_CONTROL)
        self.remove(incoming_key)
        return self.json_response(200, self.activated(final_key, moved=moved, activated=True))

    def list_images(self, request: Request, key: str) -> Response:
        """``GET /api/images``: one page of originals (never derivatives) in key order, with a cursor to the next."""
        prefix = self.query(request, "prefix") or ""
        if len(prefix.encode()) > MAX_KEY_BYTES:
            raise MalformedPathError(f"prefix is longer than {MAX_KEY_BYTES} bytes")
        if prefix.startswith(self.settings.derived_prefix):
            raise MalformedPathError("derivatives are not listed; list their originals")
        if prefix.startswith(PRIVATE_PREFIX):
            raise MalformedPathError(f"keys under {PRIVATE_PREFIX!r} are resize-sidecar's own and are not listed")
        pattern = _glob(self.query(request, "match"))
        limit = self.int_query(request, "limit", _LIST_DEFAULT, 1, _LIST_MAX)
        items, cursor = self.scan(prefix, _decode_cursor(self.query(request, "cursor")), pattern, limit)
        return self.json_response(
            200,
            {
                "items": [_listed(item) for item in items],
                "cursor": None if cursor is None else _encode_cursor(cursor),
            },
        )

    def meta(self, request: Request, key: str) -> Response:
        """``GET /api/images/{key}/meta``: what the original is, with a BlurHash; GPS only with ``?gps=1``."""
        gps = self.flag_query(request, "gps")
        # The BlurHash decodes the original: a transform slot bounds it, and the original held, as on a miss.
        with self.deriver.transform_slot():
            data = self.original(key)
            described = originals.describe(data, self.settings, gps=gps)
        info = described.info
        body: dict[str, Any] = {
            "key": key,
            "width": info.width,
            "height": info.height,
            "pages": info.pages,
            "format": described.fmt,
            "has_alpha": info.has_alpha,
            "orientation": info.orientation,
            "icc_profile": described.icc_profile,
            "bytes": len(data),
            "exif": {"camera": described.camera, "taken_at": described.taken_at},
            "blurhash": described.blurhash,
        }
        if gps:
            location = described.gps
            body["gps"] = None if location is None else {"latitude": location[0], "longitude": location[1]}
        return self.json_response(200, body)

    def temporary_url(self, request: Request, key: str) -> Response:
        """``GET /api/images/{key}/url``: a URL to the original that works without the secret until it expires."""
        limit = self.settings.temp_url_max_seconds
        seconds = self.int_query(request, "expires", min(_TEMP_URL_DEFAULT_SECONDS, limit), 1, limit)
        if not self.storage.exists(key):
            raise NotFoundError(f"no original at {key!r}")
        expires = int(time.time()) + seconds
        url = self.storage.presigned_url(key, seconds)
        if url is None:
            signature = _file_signature(key, expires, self.settings.secrets[0])
            url = f"/api/files/{encode_key(key)}?expires={expires}&sig={signature}"
        return self.json_response(200, {"key": key, "url": url, "expires": expires})

    def temporary_file(self, request: Request, key: str) -> Response:
        """``GET /api/files/{key}?expires=&sig=``: the original, for as long as the signature says.

        Raises:
            BadSignatureError: a missing, wrong or expired signature.
        """
        expires = self.int_query(request, "expires", 0, 0, 2**63)
        offered = (self.query(request, "sig") or "").encode("ascii", "replace")
        valid = False
        for secret in self.settings.secrets:
            valid |= hmac.compare_digest(_file_signature(key, expires, secret).encode(), offered)
        remaining = expires - int(time.time())
        if not valid or remaining <= 0:
            raise BadSignatureError("the temporary URL is not valid or has expired")
        data = self.original(key)
        response = Response(body=data, conditional_response=True)
        try:
            response.content_type = self.content_type(data)
            disposition = "inline"
        except SidecarError:
            # Not an image we would store: never let a browser render it as a page of this origin.
            response.content_type = "application/octet-stream"
            disposition = "attachment"
        response.content_disposition = f"{disposition}; filename*=UTF-8''{quote(key.rpartition('/')[2])}"
        response.cache_control = f"private, max-age={remaining}"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = "default-src 'none'"
        response.md5_etag()
        return response

    def archive(self, request: Request, key: str) -> Response:
        """``GET /api/archive``: a zip of originals or of one derivative of each, streamed entry by entry."""
        keys = self.archive_keys(request)
        limit = self.settings.archive_max_bytes
        spec, fmt = self.query(request, "spec"), self.query(request, "fmt")
        entries: list[tuple[str, Callable[[], bytes]]]
        if spec is None and fmt is None:
            # Originals' sizes are known: refuse now rather than send a zip cut short. Derivatives' sizes are
            # known once made, and the stream leaves out what does not fit.
            total = sum(size for _, size in keys)
            if total > limit:
                raise PolicyError(
                    f"the originals add up to {total} bytes, over the limit of {limit} (ARCHIVE_MAX_BYTES)"
                )
            entries = [(name, self.loader_of_original(name)) for name, _ in keys]
        else:
            # A format alone converts the whole picture; a spec alone makes JPEGs.
            spec, fmt = spec or "0x0", fmt or "jpg"
            paths = [(name, self.derivative_path(name, spec, fmt)) for name, _ in keys]
            # Refuse a bad spec, format or size now, while an error can still be an HTTP status.
            self.deriver.authorize(paths[0][1])
            entries = [(f"{name}.{spec}.{fmt}", self.loader_of_derivative(path)) for name, path in paths]
        response = Response(app_iter=_zip_stream(entries, limit), content_type="application/zip")
        response.content_disposition = 'attachment; filename="images.zip"'
        response.cache_control = _NO_STORE
        return response

    def delete(self, request: Request, key: str) -> Response:
        """``DELETE /api/images/{key}``: the original first, then its derivatives (see Deriver.confirm_source for a
        miss that runs meanwhile); a folder's name is no original, and deletes nothing."""
        existed = self.storage.exists(key)
        self.storage.delete(key)
        derivatives = delete_derivatives(self.storage, key, self.settings.derived_prefix)
        if not existed and not derivatives:
            raise NotFoundError(f"no original at {key!r}")
        return self.json_response(200, {"key": key, "deleted_original": existed, "deleted_derivatives": derivatives})

    # Helpers of the routes.

    def read_upload(self, request: Request) -> bytes:
        """The uploaded file: the multipart field ``file``, or the whole body; at most ``max_source_bytes``.

        The body is read in chunks and refused as soon as it passes the cap (first by its Content-Length), so an
        oversized upload never sits in memory, whether or not it announced its length.

        Raises:
            PayloadTooLargeError: the body or the file is over the cap.
            MalformedPathError: a malformed Content-Length, or a multipart body without a ``file`` part.
        """
        cap = self.settings.max_source_bytes
        multipart = request.content_type == "multipart/form-data"
        limit = cap + _MULTIPART_OVERHEAD if multipart else cap
        announced = request.environ.get("CONTENT_LENGTH") or None
        if announced is not None and not announced.isdigit():
            raise MalformedPathError("Content-Length is not a number")
        if announced is not None and int(announced) > limit:
            raise PayloadTooLargeError(f"the body has {announced} bytes; uploads are at most {cap} (MAX_SOURCE_BYTES)")
        try:
            body = read_capped(request.body_file.read, limit, "the body")
        except SourceTooLargeError:
            raise PayloadTooLargeError(
                f"the body has more than {limit} bytes; uploads are at most {cap} (MAX_SOURCE_BYTES)"
            ) from None
        if not multipart:
            return body
        parsed = Request(
            {
                "REQUEST_METHOD": "POST",
                "CONTENT_TYPE": request.environ["CONTENT_TYPE"],
                "CONTENT_LENGTH": str(len(body)),
                "wsgi.input": io.BytesIO(body),
            }
        )
        try:
            form = parsed.POST
        except (ValueError, DeprecationWarning) as error:
            # What webob's multipart parser raises for a bad boundary, and for a charset other than UTF-8.
            raise MalformedPathError(f"malformed multipart body: {error}") from None
        part = form.get("file")
        if not hasattr(part, "file"):
            raise MalformedPathError("the multipart body has no file part named 'file'")
        data = bytes(part.value)
        if len(data) > cap:
            raise PayloadTooLargeError(f"the file has {len(data)} bytes; uploads are at most {cap} (MAX_SOURCE_BYTES)")
        return data

    def prepare(self, data: bytes) -> originals.Original:
        """The original to store, with upload statuses: not an allowed image 415, over a limit 413.

        Raises:
            UnsupportedMediaTypeError, PayloadTooLargeError, UndecodableImageError: as said.
        """
        try:
            return originals.prepare_original(data, self.settings)
        except UnsupportedImageError as error:
            raise UnsupportedMediaTypeError(error.detail) from None
        except SourceTooLargeError as error:
            raise PayloadTooLargeError(error.detail) from None

    def store_incoming(self, wanted: str | None, original: originals.Original) -> str:
        """Store the original under the incoming prefix at a free key, and return its final key.

        Raises:
            ConflictError: the key asked for is taken (by an upload or an active image).
        """
        for _ in range(_KEY_ATTEMPTS):
            key = wanted or self.random_key(original.fmt)
            free = not self.storage.exists(key) and self.storage.put_if_absent(
                self.settings.incoming_prefix + key, original.body, original.content_type, _ORIGINAL_CACHE_CONTROL
            )
            if free:
                return key
            if wanted is not None:
                raise ConflictError(f"an image is already stored at {wanted!r}")
        raise ConflictError("no free random key was found; try again")

    def random_key(self, fmt: str) -> str:
        now = datetime.now(UTC)
        # A CSPRNG: keys are the only thing between an upload and a stranger guessing its URL.
        token = secrets.token_urlsafe(_RANDOM_BYTES)
        return f"{self.settings.upload_prefix}{now:%Y}/{now:%m}/{token}.{fmt}"

    def make_presets(self, key: str, original: originals.Original) -> dict[str, str]:
        """Make and store each configured preset of a new original; their public URLs by preset name."""
        info = imaging.probe(original.body, self.settings)
        urls = {}
        for name in self.settings.presets:
            path = self.derivative_path(key, name, original.fmt)
            # Settings refuse presets over the output cap, and presets are exempt from ALLOWED_WIDTHS.
            parsed, spec = self.deriver.authorize(path)
            rendered = imaging.render(original.body, spec, parsed.fmt, self.settings, info)
            self.storage.put_if_absent(
                parsed.storage_key(self.settings.derived_prefix),
                rendered.body,
                rendered.content_type,
                self.settings.cache_control,
            )
            urls[name] = self.settings.public_base_url.rstrip("/") + path
        return urls

    def move_derivatives(self, incoming_key: str, final_key: str) -> int:
        """Copy every derivative of the incoming original to the final key, signed anew for it; how many."""
        folder = f"{self.settings.derived_prefix}{incoming_key}/"
        moved = 0
        for item in self.all_objects(folder):
            name, _, fmt = item.key.removeprefix(folder).rpartition(".")
            spec, dash, _ = name.rpartition("-")
            data = self.storage.get(item.key) if dash and fmt in CONTENT_TYPES and "/" not in name else None
            if data is None:
                continue  # not a derivative's name, or deleted meanwhile: the incoming folder goes anyway
            # The signature covers the key: the same spec and format under the final key need a new one.
            path = DerivativePath(final_key, spec, fmt, sign(final_key, spec, fmt, self.settings.secrets[0]))
            self.storage.put_if_absent(
                path.storage_key(self.settings.derived_prefix),
                data,
                CONTENT_TYPES[fmt],
                self.settings.cache_control,
            )
            moved += 1
        return moved

    def activated(self, key: str, *, moved: int, activated: bool) -> dict[str, Any]:
        # Uploads are stored in the format their key's extension names.
        fmt = format_of_key(key) or DEFAULT_FORMAT
        urls = {
            name: self.settings.public_base_url.rstrip("/") + self.derivative_path(key, name, fmt)
            for name in self.settings.presets
        }
        return {"key": key, "activated": activated, "moved_derivatives": moved, "urls": urls}

    def remove(self, key: str) -> None:
        """Delete an incoming original's derivatives, then the original: while it exists, a retried activation
        finishes the work. (A delete of an activated image goes the other way round: see :meth:`delete`.)"""
        delete_derivatives(self.storage, key, self.settings.derived_prefix)
        self.storage.delete(key)

    def all_objects(self, prefix: str) -> Iterator[StoredObject]:
        start_after = ""
        while page := self.storage.list(prefix, start_after=start_after, limit=_LIST_MAX):
            yield from page
            start_after = page[-1].key

    def scan(
        self, prefix: str, start_after: str, pattern: re.Pattern[str] | None, limit: int
    ) -> tuple[list[StoredObject], str | None]:
        """Up to ``limit`` originals after ``start_after`` that match, and the key to go on after (None: the end).

        Derivatives and the program's own objects (upload manifests, the write probe) are skipped, and so are
        uploads unless the prefix asks for them, each area with one jump.
        """
        found: list[StoredObject] = []
        budget = _SCAN_BUDGET
        while budget > 0:
            asked = min(budget, _LIST_MAX)
            page = self.storage.list(prefix, start_after=start_after, limit=asked)
            budget -= len(page)
            for item in page:
                start_after = item.key
                area = self.hidden_area(item.key, prefix)
                if area is not None:
                    start_after = area + _AFTER_EVERY_KEY
                    break
                if pattern is None or pattern.match(item.key):
                    found.append(item)
                    if len(found) == limit:
                        return found, start_after
            else:
                if len(page) < asked:
                    return found, None
        return found, start_after

    def hidden_area(self, key: str, prefix: str) -> str | None:
        for never_listed in (self.settings.derived_prefix, PRIVATE_PREFIX):
            if key.startswith(never_listed):
                return never_listed
        incoming = self.settings.incoming_prefix
        if key.startswith(incoming) and not prefix.startswith(incoming):
            return incoming
        return None

    def archive_keys(self, request: Request) -> list[tuple[str, int]]:
        """The originals an archive holds, with their sizes: named (``keys``, ``key``) or matched (``match``).

        Raises:
            MalformedPathError: neither or both ways, or a bad key.
            NotFoundError: a named original does not exist.
            PolicyError: more originals than ``archive_max_files``.
        """
        cap = self.settings.archive_max_files
        named = [key for text in request.GET.getall("keys") for key in text.split(",") if key]
        named += request.GET.getall("key")
        match = self.query(request, "match")
        if bool(named) == (match is not None):
            raise MalformedPathError("name the images with keys= (or key=), or select them with match=")
        if match is not None:
            items, more = self.scan(self.query(request, "prefix") or "", "", _glob(match), cap + 1)
            if len(items) > cap or more is not None:
                raise PolicyError(f"more than {cap} images match; an archive holds at most {cap} (ARCHIVE_MAX_FILES)")
            if not items:
                raise NotFoundError("no image matches")
            return [(item.key, item.size) for item in items]
        names = list(dict.fromkeys(named))
        if len(names) > cap:
            raise PolicyError(f"{len(names)} images asked for; an archive holds at most {cap} (ARCHIVE_MAX_FILES)")
        found = []
        for name in names:
            self.checked_key(name)
            listed = self.storage.list(name, limit=1)
            if not listed or listed[0].key != name:
                raise NotFoundError(f"no original at {name!r}")
            found.append((name, listed[0].size))
        return found

    def loader_of_original(self, key: str) -> Callable[[], bytes]:
        return lambda: self.original(key)

    def loader_of_derivative(self, path: str) -> Callable[[], bytes]:
        return lambda: self.deriver.derive(path).body

    def content_type(self, data: bytes) -> str:
        """The Content-Type of an original, from its bytes.

        Raises:
            UnsupportedImageError, UndecodableImageError, SourceTooLargeError: as :func:`imaging.probe`.
        """
        return CONTENT_TYPES[imaging.FORMAT_OF_LOADER[imaging.probe(data, self.settings).loader]]

    def original(self, key: str) -> bytes:
        """Raises: NotFoundError: no original at the key."""
        data = self.storage.get(key, max_bytes=self.settings.max_source_bytes)
        if data is None:
            raise NotFoundError(f"no original at {key!r}")
        return data

    def derivative_path(self, key: str, spec: str, fmt: str) -> str:
        """The signed public path of a derivative (a preset name or a spec).

        Raises:
            MalformedPathError: a bad spec or format.
        """
        settings = self.settings
        return format_path(
            key, spec, fmt, settings.secrets[0], media_url=settings.media_url, derived_prefix=settings.derived_prefix
        )

    @staticmethod
    def query(request: Request, name: str) -> str | None:
        """Raises: MalformedPathError: the parameter is given more than once."""
        values = request.GET.getall(name)
        if len(values) > 1:
            raise MalformedPathError(f"query parameter {name!r} is given more than once")
        return values[0] if values else None

    def int_query(self, request: Request, name: str, default: int, lowest: int, highest: int) -> int:
        """Raises: MalformedPathError: not a whole number within the bounds."""
        text = self.query(request, name)
        if text is None:
            return default
        if not text.isascii() or not text.isdigit() or len(text) > 19 or not lowest <= int(text) <= highest:
            raise MalformedPathError(f"{name} must be a whole number from {lowest} to {highest}")
        return int(text)

    def flag_query(self, request: Request, name: str) -> bool:
        """Raises: MalformedPathError: neither 0 nor 1."""
        return bool(self.int_query(request, name, 0, 0, 1))

    @staticmethod
    def json_response(status: int, body: dict[str, Any]) -> Response:
        return Response(status=status, json_body=body, cache_control=_NO_STORE)

    def error_response(self, error: SidecarError) -> Response:
        if error.report:
            log.error("%s %s: %s", error.status, error.public_message, error.detail, exc_info=error)
            body = {"error": error.public_message}  # a fault of ours: say no more than the status does
        else:
            body = {"error": error.public_message, "detail": error.detail}
        response = self.json_response(error.status, body)
        if isinstance(error, UnauthorizedError):
            response.www_authenticate = ("Bearer", {"realm": "resize-sidecar"})
        if isinstance(error, RouteMethodError):
            response.allow = error.allowed
        if error.retry_after is not None:
            response.retry_after = error.retry_after
        return response


def _file_signature(key: str, expires: int, secret: str) -> str:
    # NUL cannot occur in a key, and never occurs in a derivative's signed text: no temporary URL's signature can
    # be taken for a derivative's, or the other way round.
    message = f"file\0{key}\0{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _glob(match: str | None) -> re.Pattern[str] | None:
    """A glob (``*``, ``?``, ``[…]``; ``*`` crosses ``/``) as a compiled pattern; never a client's own regex.

    fnmatch writes each ``*`` as an atomic group, so matching takes linear time whatever the glob.

    Raises:
        MalformedPathError: a glob longer than the limit.
    """
    if match is None:
        return None
    if len(match) > _MATCH_MAX_CHARACTERS:
        raise MalformedPathError(f"match is longer than {_MATCH_MAX_CHARACTERS} characters")
    return re.compile(fnmatch.translate(match))


def _encode_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> str:
    """Raises: MalformedPathError: not a cursor this API wrote."""
    if not cursor:
        return ""
    try:
        return base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise MalformedPathError("cursor is not one this API returned") from None


def _listed(item: StoredObject) -> dict[str, Any]:
    return {"key": item.key, "size": item.size, "last_modified": item.last_modified.isoformat()}


class _Sink:
    """A write-only file that keeps what is written until it is taken: zipfile writes, the response yields."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        """zipfile flushes after each entry; there is nothing to flush to."""

    def close(self) -> None:
        """Part of the file protocol zipfile expects; nothing to release."""

    def take(self) -> bytes:
        data, self.chunks = b"".join(self.chunks), []
        return data


def _zip_stream(entries: list[tuple[str, Callable[[], bytes]]], max_bytes: int) -> Iterator[bytes]:
    """A zip of the entries, yielded as each one is read: one image in memory at a time, never the archive.

    Entries are stored, not compressed: images are compressed already. An entry that cannot be read, or would
    take the archive past ``max_bytes``, is left out and named, with its reason, in a last entry ``ERRORS.txt``.
    """
    sink = _Sink()
    problems = []
    written = 0
    # An unseekable file: zipfile writes each entry's sizes and CRC after its data (a data descriptor).
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, load in entries:
            try:
                data = load()
            except SidecarError as error:
                # A fault of ours (storage) is named by its status only, as in any error answer.
                problems.append(f"{name}: {error.public_message}" + ("" if error.report else f": {error.detail}"))
                continue
            if written + len(data) > max_bytes:
                problems.append(f"{name}: left out, the archive would pass {max_bytes} bytes")
                continue
            written += len(data)
            archive.writestr(_zip_entry(name), data)
            yield sink.take()
        if problems:
            archive.writestr(_zip_entry(_ZIP_ERRORS_NAME), "\n".join(problems) + "\n")
    yield sink.take()


def _zip_entry(name: str) -> zipfile.ZipInfo:
    entry = zipfile.ZipInfo(name, date_time=time.gmtime()[:6])
    entry.external_attr = 0o644 << 16  # readable by everyone once extracted, as any downloaded file
    return entry
