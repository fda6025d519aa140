"""The site's WSGI application, wrapped: ``runserver`` uses it too (``WSGI_APPLICATION``), so media are served."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

from resize_sidecar.middleware.django.wsgi import wrap

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_site.settings")

# Development serving answers /media/ without nginx; behind nginx in production, leave it off.
application = wrap(get_wsgi_application(), serve_media=os.environ.get("DJANGO_DEBUG", "true") == "true")
