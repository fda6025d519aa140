"""The media API under ``/api/``: upload, activate, list, describe, temporary URLs, zip archives, delete.

Every route needs ``Authorization: Bearer {token}`` with one of the ``API_SECRET`` tokens, except the OpenAPI
document (``/api/openapi.json``) and the temporary URLs (``/api/files/…``), which carry their own expiring
signature. With no ``API_SECRET`` the API does not exist: every ``/api/`` path is 404.

Uploads are stored under ``INCOMING_PREFIX`` with their preset derivatives; activation moves them to their final
key (the same key without the prefix), and an S3 lifecycle rule can expire what was never activated. Keys in paths
are percent-encoded UTF-8; every key is checked against the URL contract
(:func:`~resize_sidecar.core.signing.validate_key`) before storage sees it. Client mistakes are 4xx with a JSON
body ``{"error", "detail"}``, never a 500.

This module routes, authenticates, parses requests and shapes answers; what a route does is a use case of
:class:`~resize_sidecar.media.library.MediaLibrary`, and its errors are rendered by :mod:`resize_sidecar.web.answers`.
"""

from __future__ import annotations

import hmac
import io
import logging
from collections.abc import Callable
from dataclasses import asdict
from typing import Any
from urllib.parse import quote

from webob import Request, Response

from resize_sidecar.core.errors import (
    BadRequestError,
    MalformedPathError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    SourceTooLargeError,
    UnauthorizedError,
    WrongSecretError,
)
from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import encode_key, validate_key
from resize_sidecar.media.derive import Deriver
from resize_sidecar.media.library import LIST_MAX, MediaLibrary
from resize_sidecar.media.storage import Storage, StoredObject, read_capped
from resize_sidecar.web import openapi
from resize_sidecar.web.answers import NO_STORE, json_response

log = logging.getLogger(__name__)

#: Room for the multipart boundaries and part headers around an uploaded file of the largest allowed size.
_MULTIPART_OVERHEAD = 64 * 1024
#: Listing: objects per page by default (and at most, the library's page of storage).
_LIST_DEFAULT = 100
_TEMP_URL_DEFAULT_SECONDS = 300
#: Routes that check a signature of their own instead of the API secret.
_OPEN_ROUTES = ("openapi", "files")
#: Per-image routes named by the path's last segment; any other path under /api/images/ is the key itself.
_ACTIONS = ("activate", "meta", "url")


class ApiApp:
    """Answers every ``/api/…`` request, or raises the :class:`SidecarError` that is its answer."""

    def __init__(self, settings: Settings, storage: Storage, deriver: Deriver) -> None:
        """Answer with ``deriver``, the process's one: every decode takes one of its transform slots."""
        self.settings = settings
        self.library = MediaLibrary(settings, storage, deriver)
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
        """The answer to an ``/api/…`` request.

        Raises:
            SidecarError: the request is refused or failed; with no ``API_SECRET``, NotFoundError for every path.
        """
        if not self.enabled:
            raise NotFoundError("the media API is not enabled")
        try:
            return self.dispatch(request)
        except UnicodeDecodeError:
            raise MalformedPathError("the path or query is not valid UTF-8") from None

    def dispatch(self, request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        # webob decodes the path (as UTF-8), so a key may arrive with or without its slashes percent-encoded.
        name, key = self.route(request.path_info, method)
        if name not in _OPEN_ROUTES:
            self.authenticate(request)
        handler = self.handlers.get((name, method))
        if handler is None:
            allowed = self.allowed_methods(name)
            raise MethodNotAllowedError(f"{request.method} is not allowed here; use {', '.join(allowed)}", allowed)
        if key is not None:
            validate_key(key, self.settings.derived_prefix)
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

    def allowed_methods(self, name: str) -> tuple[str, ...]:
        allowed = [method for route, method in self.handlers if route == name]
        if name in _ACTIONS:
            allowed.append("DELETE")
        return (*allowed, "HEAD") if "GET" in allowed else tuple(allowed)

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
        return json_response(200, openapi.document(self.settings))

    def upload(self, request: Request, key: str) -> Response:
        """``POST /api/images``: check, re-encode and store an original under the incoming prefix, with presets."""
        chosen = self.query(request, "key")
        if chosen is not None:
            self.library.check_chosen_key(chosen)
        # Read and handed over in one expression: the library lets go of the body once it is decoded.
        stored = self.library.upload(self.read_upload(request), chosen)
        original = stored.original
        body = {
            "key": stored.key,
            "incoming_key": stored.incoming_key,
            "width": original.width,
            "height": original.height,
            "pages": original.pages,
            "format": original.fmt,
            "content_type": original.content_type,
            "bytes": len(original.body),
            "urls": stored.urls,
        }
        response = json_response(201, body)
        response.location = f"/api/images/{encode_key(stored.incoming_key)}/meta"
        return response

    def activate(self, request: Request, key: str) -> Response:
        """``POST /api/images/{key}/activate``: move an upload and its derivatives to the final key; idempotent."""
        return json_response(200, asdict(self.library.activate(key)))

    def list_images(self, request: Request, key: str) -> Response:
        """``GET /api/images``: one page of originals (never derivatives) in key order, with a cursor to the next."""
        prefix = self.query(request, "prefix") or ""
        match = self.query(request, "match")
        limit = self.int_query(request, "limit", _LIST_DEFAULT, 1, LIST_MAX)
        page = self.library.list_originals(prefix, self.query(request, "cursor"), match, limit)
        return json_response(200, {"items": [_listed(item) for item in page.items], "cursor": page.cursor})

    def meta(self, request: Request, key: str) -> Response:
        """``GET /api/images/{key}/meta``: what the original is, with a BlurHash; GPS only with ``?gps=1``."""
        gps = self.flag_query(request, "gps")
        meta = self.library.meta(key, gps=gps)
        described, info = meta.description, meta.description.info
        body: dict[str, Any] = {
            "key": key,
            "width": info.width,
            "height": info.height,
            "pages": info.pages,
            "format": described.fmt,
            "has_alpha": info.has_alpha,
            "orientation": info.orientation,
            "icc_profile": described.icc_profile,
            "bytes": meta.size,
            "exif": {"camera": described.camera, "taken_at": described.taken_at},
            "blurhash": described.blurhash,
        }
        if gps:
            location = described.gps
            body["gps"] = None if location is None else {"latitude": location[0], "longitude": location[1]}
        return json_response(200, body)

    def temporary_url(self, request: Request, key: str) -> Response:
        """``GET /api/images/{key}/url``: a URL to the original that works without the secret until it expires; with
        ``?derivative={spec}.{format}``, a private derivative's URL, which nginx checks."""
        limit = self.settings.temp_url_max_seconds
        seconds = self.int_query(request, "expires", min(_TEMP_URL_DEFAULT_SECONDS, limit), 1, limit)
        derivative = self.query(request, "derivative")
        if derivative is not None:
            url, expires = self.library.private_derivative_url(key, derivative, seconds)
            return json_response(200, {"key": key, "url": url, "expires": expires})
        access = self.library.temporary_access(key, seconds)
        url = access.presigned_url or f"/api/files/{encode_key(key)}?expires={access.expires}&sig={access.signature}"
        return json_response(200, {"key": key, "url": url, "expires": access.expires})

    def temporary_file(self, request: Request, key: str) -> Response:
        """``GET /api/files/{key}?expires=&sig=``: the original, for as long as the signature says.

        Raises:
            BadSignatureError: a missing, wrong or expired signature.
        """
        expires = self.int_query(request, "expires", 0, 0, 2**63)
        shared = self.library.shared_file(key, expires, self.query(request, "sig") or "")
        response = Response(body=shared.data, conditional_response=True)
        if shared.content_type is not None:
            response.content_type = shared.content_type
            disposition = "inline"
        else:
            # Not an image we would store: never let a browser render it as a page of this origin.
            response.content_type = "application/octet-stream"
            disposition = "attachment"
        response.content_disposition = f"{disposition}; filename*=UTF-8''{quote(key.rpartition('/')[2])}"
        response.cache_control = f"private, max-age={shared.remaining}"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = "default-src 'none'"
        response.md5_etag()
        return response

    def archive(self, request: Request, key: str) -> Response:
        """``GET /api/archive``: a zip of originals or of one derivative of each, streamed entry by entry."""
        named = [key for text in request.GET.getall("keys") for key in text.split(",") if key]
        named += request.GET.getall("key")
        match = self.query(request, "match")
        if bool(named) == (match is not None):
            raise BadRequestError("name the images with keys= (or key=), or select them with match=")
        if match is None:
            members = self.library.archive_named(named)
        else:
            members = self.library.archive_matching(match, self.query(request, "prefix") or "")
        stream = self.library.archive(members, self.query(request, "spec"), self.query(request, "fmt"))
        response = Response(app_iter=stream, content_type="application/zip")
        response.content_disposition = 'attachment; filename="images.zip"'
        response.cache_control = NO_STORE
        return response

    def delete(self, request: Request, key: str) -> Response:
        """``DELETE /api/images/{key}``: the original, then its derivatives."""
        return json_response(200, asdict(self.library.delete(key)))

    # Request parsing.

    def read_upload(self, request: Request) -> bytes:
        """The uploaded file: the multipart field ``file``, or the whole body; at most ``max_source_bytes``.

        The body is read in chunks and refused as soon as it passes the cap (first by its Content-Length), so an
        oversized upload never sits in memory, whether or not it announced its length.

        Raises:
            PayloadTooLargeError: the body or the file is over the cap.
            BadRequestError: a malformed Content-Length, or a multipart body without a ``file`` part.
        """
        cap = self.settings.max_source_bytes
        multipart = request.content_type == "multipart/form-data"
        limit = cap + _MULTIPART_OVERHEAD if multipart else cap
        announced = request.environ.get("CONTENT_LENGTH") or None
        if announced is not None and not announced.isdigit():
            raise BadRequestError("Content-Length is not a number")
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
            raise BadRequestError(f"malformed multipart body: {error}") from None
        part = form.get("file")
        if not hasattr(part, "file"):
            raise BadRequestError("the multipart body has no file part named 'file'")
        data = bytes(part.value)
        if len(data) > cap:
            raise PayloadTooLargeError(f"the file has {len(data)} bytes; uploads are at most {cap} (MAX_SOURCE_BYTES)")
        return data

    @staticmethod
    def query(request: Request, name: str) -> str | None:
        """Raises: BadRequestError: the parameter is given more than once."""
        values = request.GET.getall(name)
        if len(values) > 1:
            raise BadRequestError(f"query parameter {name!r} is given more than once")
        return values[0] if values else None

    def int_query(self, request: Request, name: str, default: int, lowest: int, highest: int) -> int:
        """Raises: BadRequestError: not a whole number within the bounds."""
        text = self.query(request, name)
        if text is None:
            return default
        if not text.isascii() or not text.isdigit() or len(text) > 19 or not lowest <= int(text) <= highest:
            raise BadRequestError(f"{name} must be a whole number from {lowest} to {highest}")
        return int(text)

    def flag_query(self, request: Request, name: str) -> bool:
        """Raises: BadRequestError: neither 0 nor 1."""
        return bool(self.int_query(request, name, 0, 0, 1))


def _listed(item: StoredObject) -> dict[str, Any]:
    return {"key": item.key, "size": item.size, "last_modified": item.last_modified.isoformat()}
