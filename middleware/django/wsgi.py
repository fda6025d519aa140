"""``wsgi.py`` of a Django project: ``application = wrap(get_wsgi_application())``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings as django_settings

from resize_sidecar.middleware.config import development_serving
from resize_sidecar.middleware.core import MediaMiddleware
from resize_sidecar.middleware.django.conf import sidecar_settings

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


def wrap(application: WSGIApplication, *, serve_media: bool | None = None, **options: Any) -> MediaMiddleware:
    """``application`` in :class:`MediaMiddleware` with the project's settings (:mod:`.conf`).

    ``serve_media`` (development serving of ``MEDIA_URL``, for ``runserver`` without nginx) is by default on while
    ``DEBUG`` is, with local storage only: against S3 it would read and write the real bucket (pass
    ``serve_media=True, allow_s3=True`` for that). ``options`` are the middleware's (``rewrite_scope="marked"``…).

    Raises:
        SettingsError: invalid settings, or no secret.
    """
    settings = sidecar_settings()
    if serve_media is None:
        serve_media = development_serving(bool(django_settings.DEBUG), settings)
    return MediaMiddleware(application, settings, serve_media=serve_media, **options)
