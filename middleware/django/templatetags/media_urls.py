"""Django template tags: ``{% load media_urls %}`` with ``"resize_sidecar.middleware.django"`` in ``INSTALLED_APPS``.

Each takes a file field (``photo.image``), a media URL (``photo.image.url``) or a storage key::

    <img src="{% media_url photo.image width=400 height=300 fit="fill" %}" width="400" height="300" alt="">
    <img src="{% media_url user.avatar width=128 height=128 fit="fill" crop="0.1,0.05,0.6,0.6" rotate=90 %}" ...>
    <a href="{% media_url photo.image %}">original</a>
    {% media_img photo.image width=400 alt="A cat" loading="lazy" %}
    {% media_picture photo.image width=400 height=300 fit="fill" alt="A cat" %}
    {% media_responsive photo.image sizes="(min-width: 60em) 50vw, 100vw" alt="A cat" %}
    <img srcset="{% media_srcset "photos/cat.jpg" "400,800,1600" %}" sizes="100vw" ...>
    <img src="{{ photo.image.url }}" width="240" height="160" alt="" {% media_marker %}>

``media_img``, ``media_picture`` and ``media_responsive`` write ``width`` and ``height`` (the field's stored size, or
the box), so the page does not shift while images load; ``placeholder=True`` shows a tiny blurred derivative until
the image arrives; other keywords become attributes (``loading="lazy"``).

The URL builder is the one ``MediaMiddleware`` put in the request (``request.META``, the WSGI environ); outside a
request (an e-mail, a management command) one is made from the project's settings (:mod:`..conf`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from django import template

from resize_sidecar.core.urls import HTML, MediaURLs
from resize_sidecar.middleware.core import ENVIRON_KEY
from resize_sidecar.middleware.django.conf import default_images
from resize_sidecar.middleware.images import MediaImages

register = template.Library()
# Django has no type hints; this names what register.simple_tag(takes_context=True) returns.
_tag: Callable[[Callable[..., Any]], Callable[..., Any]] = register.simple_tag(takes_context=True)
# Template keywords that are arguments of the builder; the others become HTML attributes.
_ARGUMENTS = frozenset(
    {"fit", "gravity", "format", "quality", "upscale", "background", "blur", "sharpen", "preset"}
    | {"focal", "crop", "rotate", "flip"}
    | {"private", "expires_in"}
    | {"width", "height", "alt", "sizes", "formats", "fallback", "aspect_ratio", "placeholder"}
)


@lru_cache(maxsize=8)
def _images_of(urls: MediaURLs) -> MediaImages:
    return MediaImages(urls)


def _images(context: template.Context) -> MediaImages:
    request = context.get("request")
    urls = getattr(request, "META", {}).get(ENVIRON_KEY)
    return _images_of(urls) if isinstance(urls, MediaURLs) else default_images()


def _numbers(value: str | Any) -> list[int]:
    """Widths or densities given as "400,800" in a template, or as a list from the view."""
    return [int(item) for item in value.split(",")] if isinstance(value, str) else [int(item) for item in value]


def _geometry(options: dict[str, Any]) -> dict[str, Any]:
    """``focal`` and ``crop`` written in a template as fractions ("0.4,0.3"), ``rotate`` as text ("90"), as the
    builder takes them; values a view passed (tuples, numbers) as they are."""
    for name in ("focal", "crop"):
        if isinstance(options.get(name), str):
            options[name] = tuple(float(value) for value in options[name].split(","))
    if isinstance(options.get("rotate"), str):
        options["rotate"] = int(options["rotate"])
    return options


def _split(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Template keywords split into builder arguments and extra HTML attributes (``loading``, ``class``...)."""
    arguments = _geometry({k: v for k, v in options.items() if k in _ARGUMENTS})
    if "formats" in arguments:
        arguments["formats"] = [fmt.strip() for fmt in arguments["formats"].split(",")]
    if "aspect_ratio" in arguments:
        arguments["aspect_ratio"] = float(arguments["aspect_ratio"])
    return arguments, {k: v for k, v in options.items() if k not in arguments}


@_tag
def media_url(context: template.Context, image: object, **options: Any) -> str:
    """The original's URL, or with options (``width=400 fit="fill"``…) the signed derivative's."""
    return _images(context)(image, **_geometry(options))


@_tag
def media_srcset(context: template.Context, image: object, widths: str | list[int], **options: Any) -> str:
    """A ``srcset`` value with one candidate per width ("400,800")."""
    return _images(context).srcset(image, _numbers(widths), **_geometry(options))


@_tag
def media_img(context: template.Context, image: object, densities: str = "1,2", **options: Any) -> HTML:
    """An ``<img>`` with a density srcset and its width and height; other keywords become attributes."""
    arguments, attrs = _split(options)
    return _images(context).img(image, densities=_numbers(densities), attrs=attrs, **arguments)


@_tag
def media_picture(context: template.Context, image: object, densities: str = "1,2", **options: Any) -> HTML:
    """A ``<picture>`` with AVIF and WebP sources (``formats="avif,webp"``) and a sized fallback ``<img>``."""
    arguments, attrs = _split(options)
    return _images(context).picture(image, densities=_numbers(densities), attrs=attrs, **arguments)


@_tag
def media_responsive(context: template.Context, image: object, **options: Any) -> HTML:
    """A ``<picture>`` offering the width ladder up to the original's width, for ``sizes`` (default ``100vw``);
    ``aspect_ratio=1.5`` crops every candidate to that shape, ``widths="320,640"`` replaces the ladder."""
    arguments, attrs = _split(options)
    if "widths" in attrs:
        arguments["widths"] = _numbers(attrs.pop("widths"))
    return _images(context).responsive(image, attrs=attrs, **arguments)


@_tag
def media_marker(context: template.Context) -> HTML:
    """`` data-resize``: marks the app's own elements for the middleware's ``rewrite_scope="marked"``."""
    return _images(context).marker
