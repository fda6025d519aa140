"""``wsgi.py`` of a Django project: ``application = wrap(get_wsgi_application())``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from resize_sidecar.middleware.core import MediaMiddleware
from resize_sidecar.middleware.django.conf import sidecar_settings

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


def wrap(application: WSGIApplication, **options: Any) -> MediaMiddleware:
    """``application`` in :class:`MediaMiddleware` with the project's settings (:mod:`.conf`); ``options`` are the
    middleware's (``serve_media=settings.DEBUG``, ``rewrite_scope="marked"``…).

    Raises:
        SettingsError: invalid settings, or no secret.
    """
    return MediaMiddleware(application, sidecar_settings(), **options)
