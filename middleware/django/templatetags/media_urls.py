"""Django template tags: ``{% load media_urls %}`` after adding ``"middleware"`` to ``INSTALLED_APPS``.

In templates::

    <img src="{% media_url "photos/cat.jpg" width=400 height=300 fit="fill" %}">
    <a href="{% media_url photo.key %}">original</a>
    {% media_img "photos/cat.jpg" width=400 height=300 alt="A cat" loading="lazy" %}
    {% media_picture "photos/cat.jpg" width=400 height=300 alt="A cat" %}
    <img srcset="{% media_srcset "photos/cat.jpg" "400,800,1600" %}" sizes="100vw" ...>

The URL builder is the one ``MediaMiddleware`` put in the request (``request.META``, which is the WSGI environ);
outside a request (an e-mail, a management command) one is made from :func:`resize_sidecar.settings.load`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from django import template

from middleware.core import ENVIRON_KEY
from middleware.urls import HTML, MediaURLs
from resize_sidecar.settings import load

register = template.Library()
# Django has no type hints; this names what register.simple_tag(takes_context=True) returns.
_tag: Callable[[Callable[..., Any]], Callable[..., Any]] = register.simple_tag(takes_context=True)
# Template keywords that are arguments of the builder; the others become HTML attributes.
_ARGUMENTS = frozenset(
    {"fit", "gravity", "format", "quality", "upscale", "background", "blur", "sharpen", "preset"}
    | {"width", "height", "alt", "sizes", "formats", "fallback"}
)


@cache
def _default_urls() -> MediaURLs:
    return MediaURLs(load())


def _urls(context: template.Context) -> MediaURLs:
    request = context.get("request")
    urls = getattr(request, "META", {}).get(ENVIRON_KEY)
    return urls if isinstance(urls, MediaURLs) else _default_urls()


def _numbers(value: str | Any) -> list[int]:
    """Widths or densities given as "400,800" in a template, or as a list from the view."""
    return [int(item) for item in value.split(",")] if isinstance(value, str) else [int(item) for item in value]


def _split(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Template keywords split into builder arguments and extra HTML attributes (``loading``, ``class``...)."""
    arguments = {k: v for k, v in options.items() if k in _ARGUMENTS}
    if "formats" in arguments:
        arguments["formats"] = [fmt.strip() for fmt in arguments["formats"].split(",")]
    return arguments, {k: v for k, v in options.items() if k not in arguments}


@_tag
def media_url(context: template.Context, key: str, **options: Any) -> str:
    """The original's URL, or with options (``width=400 fit="fill"``…) the signed derivative's."""
    return _urls(context)(key, **options)


@_tag
def media_srcset(context: template.Context, key: str, widths: str | list[int], **options: Any) -> str:
    """A ``srcset`` value with one candidate per width ("400,800")."""
    return _urls(context).srcset(key, _numbers(widths), **options)


@_tag
def media_img(context: template.Context, key: str, densities: str = "1,2", **options: Any) -> HTML:
    """An ``<img>`` with a density srcset; unknown keywords become attributes (``loading="lazy"``)."""
    arguments, attrs = _split(options)
    return _urls(context).img(key, densities=_numbers(densities), attrs=attrs, **arguments)


@_tag
def media_picture(context: template.Context, key: str, densities: str = "1,2", **options: Any) -> HTML:
    """A ``<picture>`` with AVIF and WebP sources (``formats="avif,webp"``) and a fallback ``<img>``."""
    arguments, attrs = _split(options)
    return _urls(context).picture(key, densities=_numbers(densities), attrs=attrs, **arguments)
