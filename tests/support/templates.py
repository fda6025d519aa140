"""Django's and Jinja2's template engines with the media helpers, for tests that render them without a project."""

from __future__ import annotations

from typing import Any

import pytest

from resize_sidecar.core.urls import MediaURLs


def media_template_engine() -> Any:
    """A Django ``Engine`` that loads ``media_urls``; Django is configured (once per process) on the first call, and
    the test skips where Django is not installed."""
    pytest.importorskip("django")
    import django
    from django.conf import settings
    from django.template import Engine

    if not settings.configured:
        settings.configure()
        django.setup()
    return Engine(libraries={"media_urls": "resize_sidecar.middleware.django.templatetags.media_urls"})


def jinja_environment(urls: MediaURLs) -> Any:
    """A Jinja2 ``Environment`` (autoescaping) with ``media_url`` installed for ``urls``; skips without Jinja2."""
    jinja2 = pytest.importorskip("jinja2")
    from resize_sidecar.middleware.jinja import install

    environment = jinja2.Environment(autoescape=True)
    install(environment, urls)
    return environment
