"""Jinja2 glue: ``media_url`` as a global and a filter in any Jinja2 environment (Flask's ``app.jinja_env``).

In templates::

    <img src="{{ media_url('photos/cat.jpg', width=400, height=300, fit='fill') }}">
    <a href="{{ 'docs/scan.png'|media_url }}">original</a>
    {{ media_url.picture('photos/cat.jpg', width=400, height=300, alt='A cat') }}
    <img srcset="{{ media_url.srcset('photos/cat.jpg', [400, 800, 1600]) }}" sizes="100vw" ...>

``media_url`` is the :class:`~middleware.urls.MediaURLs` itself, so its methods are there too; markup it returns
(``img``, ``picture``) is already escaped and not escaped again. Jinja2 is not imported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jinja2 import Environment

    from middleware.urls import MediaURLs


def install(environment: Environment, urls: MediaURLs) -> None:
    """Make ``media_url`` a global and a filter of ``environment``."""
    environment.globals["media_url"] = urls
    environment.filters["media_url"] = urls
