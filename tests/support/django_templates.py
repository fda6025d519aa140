"""Django's template engine with the media tags, for tests that render them without a Django project."""

from __future__ import annotations

from typing import Any

import pytest


def media_template_engine() -> Any:
    """An ``Engine`` that loads ``media_urls``; Django is configured (once per process) on the first call, and the
    test skips where Django is not installed."""
    pytest.importorskip("django")
    import django
    from django.conf import settings
    from django.template import Engine

    if not settings.configured:
        settings.configure()
        django.setup()
    return Engine(libraries={"media_urls": "resize_sidecar.middleware.django.templatetags.media_urls"})
