"""An environment for Django's Jinja2 template backend with the ``media_url`` global and filter::

    TEMPLATES = [{"BACKEND": "django.template.backends.jinja2.Jinja2", "DIRS": [...],
                  "OPTIONS": {"environment": "resize_sidecar.middleware.django.jinja2.environment"}}]

Outside a request through the middleware, URLs are built from the project's settings (:mod:`.conf`).
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment

from resize_sidecar.middleware.django.conf import default_images
from resize_sidecar.middleware.jinja import install


def environment(**options: Any) -> Environment:
    env = Environment(**options)
    install(env, default_images())
    return env
