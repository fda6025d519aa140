"""Flask extension: the WSGI middleware and the Jinja2 helpers in one call, app-factory friendly.

::

    from resize_sidecar.middleware.flask import ResizeSidecar

    media = ResizeSidecar()

    def create_app():
        app = Flask(__name__)
        app.config.from_prefixed_env()        # or RESIZE_SIDECAR_SECRETS=… in app.config
        media.init_app(app)                   # in debug mode with local storage, also answers /media/
        return app

Settings are the ``RESIZE_SIDECAR_*`` keys of ``app.config`` over the environment's. Templates get the
``media_url`` global and filter (:mod:`resize_sidecar.middleware.jinja`); ``app.extensions["resize_sidecar"]`` is the
:class:`~resize_sidecar.middleware.core.MediaMiddleware`. Flask is not imported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from resize_sidecar.middleware.config import development_serving, settings_from
from resize_sidecar.middleware.core import MediaMiddleware
from resize_sidecar.middleware.jinja import install

if TYPE_CHECKING:
    from flask import Flask

    from resize_sidecar.core.settings import Settings


class ResizeSidecar:
    """Installs :class:`MediaMiddleware` around ``app.wsgi_app`` and ``media_url`` in ``app.jinja_env``.

    Keyword arguments are ``MediaMiddleware``'s (``serve_media``, ``rewrite_scope``…); those of :meth:`init_app`
    override them for one app. ``serve_media`` is by default on in debug mode with local storage.
    """

    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        self.options = options
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, settings: Settings | None = None, **options: Any) -> MediaMiddleware:
        """Wrap ``app`` once; returns its middleware.

        Raises:
            SettingsError: invalid settings or no secret.
            RuntimeError: ``app`` has this extension already.
        """
        if "resize_sidecar" in app.extensions:
            raise RuntimeError("ResizeSidecar.init_app was called twice for this app")
        settings = settings or settings_from(app.config)
        options = {"serve_media": development_serving(app.debug, settings), **self.options, **options}
        middleware = MediaMiddleware(app.wsgi_app, settings, **options)
        app.wsgi_app = middleware  # type: ignore[method-assign]
        install(app.jinja_env, middleware.urls)
        app.extensions["resize_sidecar"] = middleware
        return middleware
