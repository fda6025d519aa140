"""The sidecar's WSGI application (webob): routing, the derivative route, health, readiness, and the request log.

gunicorn runs ``resize_sidecar.web.app:make_app()``. Domain code (``derive``, the media library) returns values and
raises :class:`SidecarError`; the web room speaks HTTP, and :mod:`resize_sidecar.web.answers` renders every error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlsplit

from webob import Request, Response

from resize_sidecar.core import auto, private
from resize_sidecar.core import settings as settings_module
from resize_sidecar.core.errors import (
    MethodNotAllowedError,
    NotFoundError,
    SidecarError,
    StorageError,
)
from resize_sidecar.core.objects import write_headers
from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import PRIVATE_PREFIX
from resize_sidecar.media.derive import Derivative, Deriver
from resize_sidecar.media.storage import Storage, WriteProbe
from resize_sidecar.media.stores import open_storage
from resize_sidecar.web import answers, metrics
from resize_sidecar.web.answers import NO_STORE, text_response
from resize_sidecar.web.api import ApiApp

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger(__name__)
#: One JSON line per request, at INFO (``resize-sidecar serve`` prints them on stderr; see gunicorn_conf).
request_log = logging.getLogger("resize_sidecar.requests")

#: Request ids taken from ``X-Request-ID`` (nginx sends its ``$request_id``, 32 hex digits): nothing that could
#: break a log line or a header.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+/=-]{1,128}")
#: Query parameter of the sidecar's redirects (redirect mode). Browsers keep a query string across redirects and
#: CDNs pass it to their origin, so a request that still carries it came back from the redirect target.
RETURNED = "resized"
#: Readiness writes a small object here (a key nginx never serves) at most this often, per worker.
WRITE_PROBE_KEY = PRIVATE_PREFIX + "write-probe"
WRITE_PROBE_SECONDS = 30.0


def make_app(settings: Settings | None = None, *, storage: Storage | None = None) -> SidecarApp:
    """The sidecar WSGI app; settings default to :func:`resize_sidecar.core.settings.load`.

    Raises:
        SettingsError: invalid settings, or no secret to verify signatures with.
    """
    settings = settings or settings_module.load()
    settings.require_secrets()
    return SidecarApp(settings, storage or open_storage(settings))


def raw_path(environ: dict[str, object]) -> str:
    """The request path as the client sent it, still percent-encoded.

    Canonical-form checks need the raw bytes: ``PATH_INFO`` is already decoded (and, under PEP 3333, as latin-1).
    """
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if isinstance(raw, str) and raw:
        if not raw.startswith("/"):  # absolute-form request target, e.g. "http://host/path"
            return urlsplit(raw).path
        return raw.split("?", 1)[0].split("#", 1)[0]
    decoded = f"{environ.get('SCRIPT_NAME', '')}{environ.get('PATH_INFO', '')}".encode("latin-1")
    return quote(decoded, safe="/")


def _origin(derivative: Derivative) -> str:
    """``X-Derivative`` and the request log's ``cache``: made and stored, made but not stored, or found stored."""
    if not derivative.created:
        return "existing"
    return "created" if derivative.stored else "unstored"


class _ImageResponse(Response):  # type: ignore[misc]  # webob has no type hints
    """An image answer: webob's conditional GETs and ranges, but its 416 (a range past the end) is an error and is
    never cached, where the image itself is cached for good."""

    def conditional_response_app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None) -> Any:
            if status.startswith("416"):
                headers = [(name, value) for name, value in headers if name.lower() != "cache-control"]
                headers.append(("Cache-Control", NO_STORE))
            return start_response(status, headers, exc_info)

        return super().conditional_response_app(environ, start)  # type: ignore[no-any-return]


class SidecarApp:
    """Routes requests: derivatives under ``{media_url}{derived_prefix}``, health, readiness and metrics."""

    def __init__(self, settings: Settings, storage: Storage) -> None:
        self.settings = settings
        self.storage = storage
        self.deriver = Deriver(settings, storage)
        self.api = ApiApp(settings, storage, self.deriver)
        self.derivative_prefix = settings.media_url + settings.derived_prefix
        self.write_probe = WriteProbe(
            storage,
            WRITE_PROBE_KEY,
            headers=write_headers("readiness_probe", settings),
            interval=WRITE_PROBE_SECONDS,
        )
        self.routes: dict[str, Callable[[Request], Response]] = {
            "/healthz": self.health,
            "/readyz": self.ready,
            "/metrics": self.show_metrics,
        }

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        request = Request(environ)
        given = environ.get("HTTP_X_REQUEST_ID", "")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        route, response, reason = self.dispatch(request)
        response.headers["X-Request-ID"] = request_id
        answered: list[tuple[str, list[tuple[str, str]]]] = []

        def record(status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None) -> Any:
            answered.append((status, headers))
            return start_response(status, headers, exc_info)

        # The response decides its final status when called: a conditional request may get 304 instead of 200.
        body: Iterable[bytes] = response(environ, record)
        status, headers = answered[-1]
        metrics.REQUESTS.labels(route, status.split(" ", 1)[0]).inc()
        self.log_request(request, request_id, route, status, headers, reason, time.perf_counter() - started)
        return body

    def dispatch(self, request: Request) -> tuple[str, Response, str | None]:
        """The route's name, its answer, and the reason it was refused or failed (``None`` when it was not)."""
        # Route on the raw path: decoding it (webob's path_info) fails on bytes that are not UTF-8.
        path = raw_path(request.environ)
        handler: Callable[[Request], Response]
        if path.startswith(self.derivative_prefix) or self.deriver.is_private(path):
            route, handler = "derivative", self.derivative
        elif path.startswith("/api/"):
            route, handler = "api", self.api.handle
        elif path in self.routes:
            route, handler = path.strip("/"), self.routes[path]
        else:
            route, handler = "other", self.not_found
        body: answers.ErrorBody = "json" if route == "api" else "text"
        try:
            # The API answers the methods of each of its routes; every other route only reads.
            if route != "api" and request.method not in ("GET", "HEAD"):
                raise MethodNotAllowedError(f"{request.method} is not allowed here")
            return route, handler(request), None
        except SidecarError as error:
            return route, answers.error_response(error, body), error.reason
        except Exception:
            log.exception("unexpected error answering %s %s", request.method, path)
            fault = SidecarError()
            return route, answers.error_response(fault, body), fault.reason

    def log_request(
        self,
        request: Request,
        request_id: str,
        route: str,
        status: str,
        headers: list[tuple[str, str]],
        reason: str | None,
        seconds: float,
    ) -> None:
        """Write the request's JSON line to :data:`request_log`."""
        if not request_log.isEnabledFor(logging.INFO):
            return
        path = raw_path(request.environ)
        named = {name.lower(): value for name, value in headers}
        key = spec = fmt = cache = None
        if route == "derivative":
            # Parsed again for the log only: the request may have been refused before or while it was parsed (a
            # malformed path, or a signature of the wrong shape).
            with contextlib.suppress(SidecarError):
                parsed, _ = self.deriver.parse(path, accept=request.headers.get("Accept", ""))
                key, spec, fmt = parsed.key, parsed.spec, parsed.fmt
            cache = "error" if reason else named.get("x-derivative")
        line = {
            "request_id": request_id,
            "method": request.method,
            "path": path,
            "route": route,
            "key": key,
            "spec": spec,
            "fmt": fmt,
            "status": int(status.split(" ", 1)[0]),
            "duration_ms": round(seconds * 1000, 1),
            "bytes": 0 if request.method == "HEAD" else int(named.get("content-length", 0)),
            "cache": cache,
            "reason": reason,
        }
        request_log.info(json.dumps(line, separators=(",", ":")))

    def derivative(self, request: Request) -> Response:
        path = raw_path(request.environ)
        is_private, is_auto = self.deriver.is_private(path), auto.is_auto(path)
        # A redirect would drop a private URL's token or an .auto URL's choice: those are answered with the image.
        if self.settings.on_miss == "redirect" and not (is_private or is_auto):
            return self.redirect(request)
        query, accept = request.query_string, request.headers.get("Accept", "")
        derivative = self.deriver.derive(path, query=query, accept=accept)
        metrics.count_derivative(derivative)
        response = self.image_response(derivative)
        if is_private:
            # Checked again only for its expiry (the derive above refused the URL if the check fails).
            now = time.time()
            response.cache_control = private.cache_control(private.check(path, query, self.settings.secrets, now), now)
        if is_auto:
            response.vary = (auto.VARY,)
        return response

    def image_response(self, derivative: Derivative) -> Response:
        response = _ImageResponse(
            body=derivative.body,
            content_type=derivative.content_type,
            cache_control=self.settings.cache_control,
            conditional_response=True,
        )
        # S3's ETag of a single-part PUT, so the first answer and every later hit through nginx agree (and nginx's
        # cache revalidates to a 304). nginx's own ETag of a local file is its mtime and size, which no ETag made
        # from the bytes can equal: see docs/design.md.
        response.etag = hashlib.md5(derivative.body, usedforsecurity=False).hexdigest()
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Derivative"] = _origin(derivative)
        return response

    def redirect(self, request: Request) -> Response:
        """Redirect mode: make and store the derivative unless it exists, then send the client to its public URL.

        The 302 is ``no-store``, so no cache keeps it, and carries ``?resized=1``. A request with that marker for a
        derivative that was already stored came back: the public URL does not serve it (a cached miss, a wrong
        ``PUBLIC_BASE_URL``), and another redirect would loop, so it is 404. A derivative made but not stored is
        answered with its bytes.
        """
        path = raw_path(request.environ)
        derivative = self.deriver.ensure(path)
        if derivative.created:
            metrics.count_derivative(derivative)
            if not derivative.stored:
                return self.image_response(derivative)
        elif RETURNED in parse_qs(request.query_string, keep_blank_values=True):  # webob's GET fails on bad UTF-8
            log.warning("%s is stored but %s did not serve it", derivative.storage_key, self.settings.public_base_url)
            raise NotFoundError("the redirect target does not serve this derivative")
        response = Response(status=302, location=f"{self.settings.public_base_url.rstrip('/')}{path}?{RETURNED}=1")
        response.cache_control = NO_STORE
        response.headers["X-Derivative"] = _origin(derivative)
        return response

    def health(self, request: Request) -> Response:
        return text_response(200, "ok")

    def ready(self, request: Request) -> Response:
        try:
            self.storage.check()
        except StorageError as error:
            log.warning("not ready: %s", error.detail)
            return text_response(503, "storage unreachable")
        try:
            self.write_probe.check()
        except StorageError as error:
            log.warning("not ready: storage refuses writes: %s", error.detail)
            return text_response(503, "storage refuses writes")
        return text_response(200, "ready")

    def show_metrics(self, request: Request) -> Response:
        response = text_response(200, "")
        response.body, response.content_type = metrics.exposition()
        return response

    def not_found(self, request: Request) -> Response:
        raise NotFoundError(f"nothing is served at {raw_path(request.environ)!r}")
