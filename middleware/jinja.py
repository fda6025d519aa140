"""Jinja2 glue: ``media_url`` as a global and a filter in any Jinja2 environment (Flask's ``app.jinja_env``,
Django's Jinja2 backend, a bare ``jinja2.Environment``).

In templates::

    <img src="{{ media_url('photos/cat.jpg', width=400, height=300, fit='fill') }}">
    <img src="{{ media_url(user.avatar, width=128, height=128, fit='fill', crop=(0.1, 0.05, 0.6, 0.6)) }}">
    <a href="{{ photo.image|media_url }}">original</a>
    {{ media_url.img(photo.image, width=400, height=300, fit='fill', alt='A cat', attrs={'loading': 'lazy'}) }}
    {{ media_url.picture('photos/cat.jpg', width=400, alt='A cat') }}
    {{ media_url.responsive(photo.image, sizes='(min-width: 60em) 50vw, 100vw', alt='A cat') }}
    <img srcset="{{ media_url.srcset('photos/cat.jpg', [400, 800, 1600]) }}" sizes="100vw" ...>
    <img src="…" {{ media_url.marker }}>

``media_url`` is a :class:`~resize_sidecar.middleware.images.MediaImages`: it takes a storage key, a media URL or
a Django file field, and the markup it returns (``img``, ``picture``, ``responsive``) carries the image's width and
height, is already escaped and is not escaped again. Jinja2 is not imported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from resize_sidecar.core.urls import MediaURLs
from resize_sidecar.middleware.images import MediaImages

if TYPE_CHECKING:
    from jinja2 import Environment


def install(environment: Environment, urls: MediaURLs | MediaImages) -> MediaImages:
    """Make ``media_url`` a global and a filter of ``environment``; returns what they call."""
    images = urls if isinstance(urls, MediaImages) else MediaImages(urls)
    environment.globals["media_url"] = images
    environment.filters["media_url"] = images
    return images
