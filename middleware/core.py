"""``MediaMiddleware``: wraps any WSGI application (Flask, Django, Pyramid, bare WSGI).

For every request it puts a :class:`~.urls.MediaURLs` in ``environ["resize_sidecar.urls"]``. It rewrites
media URLs in the app's HTML pages (:mod:`.rewrite`) and, in development, answers ``MEDIA_URL`` requests
itself so that ``flask run`` or ``manage.py runserver`` work without nginx. Everything else passes through as the
app sent it: the middleware never reads the ``Host`` header, and it builds every URL from the settings.

Do not use ``serve_media`` in production: there, nginx serves stored media and sends misses to the sidecar.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resize_sidecar.core.errors import SettingsError, SidecarError
from resize_sidecar.core.formats import ORIGINAL_TYPES
from resize_sidecar.core.settings import Settings, load
from resize_sidecar.core.signing import PRIVATE_DERIVED_PREFIX, encode_key, parse_path, validate_key, verify
from resize_sidecar.core.urls import MediaURLs
from resize_sidecar.middleware.rewrite import CODINGS, Headers, HTMLRewriter, rewrite_body

if TYPE_CHECKING:
    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger(__name__)

#: The environ key under which every request finds the URL builder.
ENVIRON_KEY = "resize_sidecar.urls"
# Response headers a 304 repeats from the 200 it stands for (RFC 9110, section 15.4.5).
_NOT_MODIFIED_HEADERS = frozenset({"cache-control", "content-location", "date", "etag", "expires", "vary"})


class MediaMiddleware:
    """Signed derivative URLs for templates, HTML rewriting and optional development serving around ``app``.

    Arguments (keyword-only after ``settings``):

    - ``settings``: default :func:`resize_sidecar.core.settings.load` (file and ``RESIZE_SIDECAR_*`` environment).
    - ``rewrite_html``: rewrite media URLs in ``200 text/html`` responses; ``automatic`` also sizes plain
      ``<img src="/media/…" width height>``, with a srcset of ``densities``; ``picture_formats`` (e.g.
      ``("avif", "webp")``) wraps those images in a ``<picture>``. Whatever a page says, only variants of the
      configured set are signed (:mod:`~resize_sidecar.middleware.variants`).
    - ``rewrite_scope``: ``"all"`` rewrites every element; ``"marked"`` only the app's own, which carry the
      ``data-resize`` attribute (``MediaURLs.marker`` prints it): the choice for pages with user HTML whose keys
      are not all public (see also ``REWRITE_KEY_PREFIXES``).
    - ``max_rewrite_bytes``: larger pages (before or after decompression) pass through untouched.
    - ``max_rewrite_elements``: a page with more elements to rewrite passes through untouched (and is logged).
    - ``serve_media``: answer ``MEDIA_URL`` requests: stored files from ``LOCAL_ROOT`` (originals only with
      ``SERVE_ORIGINALS``), missing derivatives through the sidecar app, loaded on first use.
    - ``allow_s3``: let ``serve_media`` run against S3 storage, where it would read and write the real bucket.

    Raises:
        SettingsError: invalid settings, no secret, or ``serve_media`` with S3 storage and not ``allow_s3``.
        ValueError: an unknown picture format or rewrite scope.
    """

    def __init__(
        self,
        app: WSGIApplication,
        settings: Settings | None = None,
        *,
        rewrite_html: bool = True,
        automatic: bool = True,
        densities: Iterable[int] = (1, 2),
        picture_formats: Iterable[str] = (),
        rewrite_scope: str = "all",
        max_rewrite_bytes: int = 5_000_000,
        max_rewrite_elements: int = 1000,
        serve_media: bool = False,
        allow_s3: bool = False,
    ) -> None:
        self.app = app
        self.settings = settings if settings is not None else load()
        self.urls = MediaURLs(self.settings)
        self.rewriter = (
            HTMLRewriter(
                self.urls,
                automatic=automatic,
                densities=densities,
                picture_formats=picture_formats,
                scope=rewrite_scope,
                max_elements=max_rewrite_elements,
            )
            if rewrite_html
            else None
        )
        self.max_rewrite_bytes = max_rewrite_bytes
        self.media = DevelopmentMedia(self.settings, allow_s3=allow_s3) if serve_media else None
        self._media_url = self.settings.media_url

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ[ENVIRON_KEY] = self.urls
        if self.media is not None and environ.get("PATH_INFO", "").startswith(self._media_url):
            return self.media(environ, start_response)
        if self.rewriter is None:
            return self.app(environ, start_response)
        return self._rewrite(self.rewriter, environ, start_response)

    def _rewrite(
        self, rewriter: HTMLRewriter, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        """Call the app; hold back an HTML page to rewrite it, forward anything else as soon as it starts."""
        head = environ.get("REQUEST_METHOD") == "HEAD"
        held: list[tuple[str, Headers]] = []
        written: list[bytes] = []
        started = False

        def capture(status: str, headers: Headers, exc_info: OptExcInfo | None = None) -> Any:
            nonlocal started
            started = True
            held.clear()  # an error page replaces a page held back before it
            if exc_info is None and self._rewritable(status, headers):
                if head:
                    # No body to rewrite, but the GET body will differ: its length and ETag are unknown here.
                    return start_response(status, _without(headers, ("content-length", "etag", "content-md5")))
                held.append((status, headers))
                return written.append
            return start_response(status, headers, exc_info)

        app_iter = self.app(environ, capture)
        body: Iterable[bytes] = app_iter
        if not started:
            # The app starts its response when first iterated (a generator): take its first chunk now.
            iterator = iter(app_iter)
            body = chain([next(iterator, b"")], iterator)
        if not held:
            return body if body is app_iter else _Closing(body, app_iter)
        status, headers = held[0]
        if _content_length(headers) is None and not isinstance(app_iter, list | tuple):
            # A body of unknown length is a stream (an export, server-sent events): send it as it comes.
            start_response(status, headers)
            return _Closing(chain(written, body), app_iter)
        chunks, size, iterator = written, sum(map(len, written)), iter(body)
        try:
            for chunk in iterator:
                chunks.append(chunk)
                size += len(chunk)
                if size > self.max_rewrite_bytes:
                    start_response(status, headers)
                    return _Closing(chain(chunks, iterator), app_iter)
        except BaseException:
            _close(app_iter)
            raise
        _close(app_iter)
        page = b"".join(chunks)
        try:
            rewritten = rewrite_body(page, headers, rewriter, self.max_rewrite_bytes)
        except Exception:
            # A bug in the rewriter must cost the page its rewriting, not the page.
            logger.exception("could not rewrite %s; sent as the app made it", environ.get("PATH_INFO"))
            rewritten = None
        if rewritten is None:
            start_response(status, headers)
            return [page]
        page, headers = rewritten
        etag = next((value for name, value in headers if name.lower() == "etag"), None)
        if etag is not None and _matches(environ.get("HTTP_IF_NONE_MATCH", ""), etag):
            start_response("304 Not Modified", [(n, v) for n, v in headers if n.lower() in _NOT_MODIFIED_HEADERS])
            return []
        start_response(status, headers)
        return [page]

    def _rewritable(self, status: str, headers: Headers) -> bool:
        if not status.startswith("200"):
            return False
        html = False
        for name, value in headers:
            lowered = name.lower()
            if lowered == "content-type":
                html = value.partition(";")[0].strip().lower() == "text/html"
            elif lowered == "content-encoding":
                if value.strip().lower() not in CODINGS:
                    return False
            elif lowered == "content-length":
                if not value.strip().isdigit() or int(value) > self.max_rewrite_bytes:
                    return False
            elif lowered == "cache-control" and "no-transform" in value.lower():
                # RFC 9111, section 5.2.2.6: the sender asked that the content stay as it is.
                return False
        return html


_ORIGINAL_TYPES = {f".{extension}": kind for kind, extensions in ORIGINAL_TYPES.items() for extension in extensions}
_DOWNLOAD = "application/octet-stream"


class DevelopmentMedia:
    """Answers ``MEDIA_URL`` requests the way nginx would in production, for development servers.

    A stored file is answered from ``LOCAL_ROOT`` (like nginx's ``try_files``): derivatives always, originals only
    with ``SERVE_ORIGINALS``. A derivative that is not stored yet goes to the sidecar's WSGI app, imported on first
    use (it needs pyvips), which verifies its signature, makes it and stores it.

    Raises:
        SettingsError: S3 storage without ``allow_s3``.
    """

    def __init__(self, settings: Settings, *, allow_s3: bool) -> None:
        if settings.storage == "s3" and not allow_s3:
            raise SettingsError(
                "RESIZE_SIDECAR_STORAGE (storage): serve_media=True would read and write the S3 bucket "
                f"{settings.s3_bucket!r} from a development server; pass allow_s3=True if that is what you want"
            )
        self.settings = settings
        self.root = Path(settings.local_root).resolve() if settings.storage == "local" else None
        self._derivatives = settings.media_url + settings.derived_prefix
        self._private_derivatives = settings.media_url + PRIVATE_DERIVED_PREFIX
        self._sidecar: WSGIApplication | None = None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        from webob import exc
        from webob.static import FileApp

        settings = self.settings
        response: WSGIApplication = exc.HTTPNotFound()
        try:
            # Servers hand PATH_INFO over as latin-1 (PEP 3333); keys are UTF-8.
            path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8")
        except UnicodeError:
            return response(environ, start_response)
        if path.startswith(self._private_derivatives):
            # Stored or not, a private derivative is answered by the sidecar, which checks its token and expiry as
            # nginx does.
            return self.sidecar(environ, start_response)
        is_derivative = path.startswith(self._derivatives)
        key = path[len(settings.media_url) :]
        try:
            if is_derivative:
                # Stored without its signature, so served only when the signature is valid, as nginx does.
                raw_path = settings.media_url + encode_key(key)
                signed = parse_path(raw_path, media_url=settings.media_url, derived_prefix=settings.derived_prefix)
                verify(signed, settings.secrets)
                key = signed.storage_key(settings.derived_prefix)
            else:
                validate_key(key, settings.derived_prefix)
            file = self._stored_file(key)
        except SidecarError:
            file = None
        if file is not None and (is_derivative or settings.serve_originals):
            # Typed as nginx types them: an original only as an image type (never a page a browser would run), a
            # derivative by its format.
            response = _nosniff(FileApp(str(file), content_type=_ORIGINAL_TYPES.get(file.suffix.lower(), _DOWNLOAD)))
        elif is_derivative:
            # Not stored yet, or refused: the sidecar makes it or answers why not (400, 403), as behind nginx.
            response = self.sidecar
        return response(environ, start_response)

    def _stored_file(self, key: str) -> Path | None:
        if self.root is None:
            return None
        path = (self.root / key).resolve()
        # validate_key refuses "..", but a symbolic link inside the root could still point out of it.
        return path if path.is_relative_to(self.root) and path.is_file() else None

    def sidecar(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self._sidecar is None:
            from resize_sidecar.web.app import make_app

            self._sidecar = make_app(self.settings)
        return self._sidecar(environ, start_response)


def _nosniff(app: WSGIApplication) -> WSGIApplication:
    """``app`` with ``X-Content-Type-Options: nosniff`` on its answers, as nginx sends media."""

    def answer(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None) -> Any:
            return start_response(status, [*headers, ("X-Content-Type-Options", "nosniff")], exc_info)

        return app(environ, start)

    return answer


class _Closing:
    """An iterable over ``body`` whose ``close()`` closes the app's own iterable, as PEP 3333 asks."""

    __slots__ = ("body", "source")

    def __init__(self, body: Iterable[bytes], source: Iterable[bytes]) -> None:
        self.body, self.source = body, source

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def close(self) -> None:
        _close(self.source)


def _close(app_iter: Iterable[bytes]) -> None:
    close = getattr(app_iter, "close", None)
    if close is not None:
        close()


def _without(headers: Headers, names: tuple[str, ...]) -> Headers:
    return [(name, value) for name, value in headers if name.lower() not in names]


def _content_length(headers: Headers) -> int | None:
    for name, value in headers:
        if name.lower() == "content-length":
            return int(value)
    return None


def _matches(if_none_match: str, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (weak comparison, RFC 9110 section 13.1.2)."""
    if if_none_match.strip() == "*":
        return True
    weak = etag.removeprefix("W/")
    return any(candidate.strip().removeprefix("W/") == weak for candidate in if_none_match.split(","))
