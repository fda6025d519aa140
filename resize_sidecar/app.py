"""The sidecar's WSGI application (webob): routing, HTTP answers and request metrics.

gunicorn runs ``resize_sidecar.app:make_app()``. Domain code (``derive``) returns values and raises
:class:`SidecarError`; only this module speaks HTTP.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from urllib.parse import quote, urlsplit

import prometheus_client
from prometheus_client import multiprocess
from webob import Request, Response
from webob.dec import wsgify

from resize_sidecar import settings as settings_module
from resize_sidecar.api import ApiApp
from resize_sidecar.derive import Derivative, Deriver
from resize_sidecar.errors import MethodNotAllowedError, NotFoundError, SidecarError, StorageError
from resize_sidecar.settings import Settings
from resize_sidecar.storage import Storage, open_storage

log = logging.getLogger(__name__)

REQUESTS = prometheus_client.Counter(
    "resize_sidecar_requests", "Requests answered, by route and status.", ["route", "status"]
)
REJECTIONS = prometheus_client.Counter(
    "resize_sidecar_rejections", "Requests refused or failed, by reason.", ["reason"]
)
TRANSFORMS = prometheus_client.Counter("resize_sidecar_transforms", "Derivatives made, by format.", ["format"])
TRANSFORM_SECONDS = prometheus_client.Histogram(
    "resize_sidecar_transform_seconds",
    "Seconds spent decoding, transforming and encoding one derivative.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EXISTING = prometheus_client.Counter(
    "resize_sidecar_existing_derivatives",
    "Derivatives answered from storage: nginx could not serve them, or a concurrent miss stored them first.",
)
STORE_FAILED = prometheus_client.Counter(
    "resize_sidecar_derivative_store_failed", "Derivatives answered but not stored because storage failed."
)
STORAGE_ERRORS = prometheus_client.Counter("resize_sidecar_storage_errors", "Requests failed by storage errors.")

NO_STORE = "no-store"


def make_app(settings: Settings | None = None, *, storage: Storage | None = None) -> SidecarApp:
    """The sidecar WSGI app; settings default to :func:`resize_sidecar.settings.load`.

    Raises:
        SettingsError: invalid settings, or no secret to verify signatures with.
    """
    settings = settings or settings_module.load()
    if not settings.secrets:
        raise settings_module.SettingsError(
            "RESIZE_SIDECAR_SECRETS (secrets): at least one secret is required to verify derivative URLs"
        )
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


class SidecarApp:
    """Routes requests: derivatives under ``{media_url}{derived_prefix}``, health, readiness and metrics."""

    def __init__(self, settings: Settings, storage: Storage) -> None:
        self.settings = settings
        self.storage = storage
        self.deriver = Deriver(settings, storage)
        self.api = ApiApp(settings, storage)
        self.derivative_prefix = settings.media_url + settings.derived_prefix
        self.routes: dict[str, Callable[[Request], Response]] = {
            "/healthz": self.health,
            "/readyz": self.ready,
            "/metrics": self.metrics,
        }

    @wsgify
    def __call__(self, request: Request) -> Response:
        route, response = self.dispatch(request)
        REQUESTS.labels(route, str(response.status_code)).inc()
        return response

    def dispatch(self, request: Request) -> tuple[str, Response]:
        # Route on the raw path: decoding it (webob's path_info) fails on bytes that are not UTF-8.
        path = raw_path(request.environ)
        if path.startswith(self.derivative_prefix):
            route, handler = "derivative", self.derivative
        elif path.startswith("/api/"):
            return "api", self.api.handle(request)
        elif path in self.routes:
            route, handler = path.strip("/"), self.routes[path]
        else:
            route, handler = "other", self.not_found
        try:
            if request.method not in ("GET", "HEAD"):
                raise MethodNotAllowedError(f"{request.method} is not allowed here")
            return route, handler(request)
        except SidecarError as error:
            return route, self.error_response(error)
        except Exception:
            log.exception("unexpected error answering %s", path)
            return route, self.error_response(SidecarError())

    def derivative(self, request: Request) -> Response:
        derivative = self.deriver.derive(raw_path(request.environ))
        self.count(derivative)
        response = Response(
            body=derivative.body,
            content_type=derivative.content_type,
            cache_control=self.settings.cache_control,
            conditional_response=True,
        )
        response.md5_etag()
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Derivative"] = "created" if derivative.created else "existing"
        return response

    @staticmethod
    def count(derivative: Derivative) -> None:
        if derivative.created:
            TRANSFORMS.labels(derivative.storage_key.rsplit(".", 1)[-1]).inc()
            TRANSFORM_SECONDS.observe(derivative.transform_seconds)
        else:
            EXISTING.inc()
            log.warning(
                "answered %s from storage: if this repeats, nginx cannot read derivatives", derivative.storage_key
            )
        if not derivative.stored:
            STORE_FAILED.inc()

    def health(self, request: Request) -> Response:
        return self.text_response(200, "ok")

    def ready(self, request: Request) -> Response:
        try:
            self.storage.check()
        except StorageError as error:
            log.warning("not ready: %s", error.detail)
            return self.text_response(503, "storage unreachable")
        return self.text_response(200, "ready")

    def metrics(self, request: Request) -> Response:
        registry: prometheus_client.CollectorRegistry = prometheus_client.REGISTRY
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # Under gunicorn each worker writes its own files; add them up for one answer.
            registry = prometheus_client.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        response = self.text_response(200, "")
        response.body = prometheus_client.generate_latest(registry)
        response.content_type = prometheus_client.CONTENT_TYPE_LATEST.split(";")[0]
        return response

    def not_found(self, request: Request) -> Response:
        raise NotFoundError(f"nothing is served at {raw_path(request.environ)!r}")

    def error_response(self, error: SidecarError) -> Response:
        REJECTIONS.labels(error.reason).inc()
        if isinstance(error, StorageError):
            STORAGE_ERRORS.inc()
        if error.report:
            log.error("%s %s: %s", error.status, error.public_message, error.detail, exc_info=error)
            message = error.public_message  # a fault of ours: say no more than the status does
        else:
            message = f"{error.public_message}: {error.detail}"
        response = self.text_response(error.status, message)
        if isinstance(error, MethodNotAllowedError):
            response.allow = ("GET", "HEAD")
        return response

    @staticmethod
    def text_response(status: int, text: str) -> Response:
        return Response(
            status=status,
            text=text + "\n",
            content_type="text/plain",
            charset="utf-8",
            cache_control=NO_STORE,
        )
