"""The former import name of :mod:`resize_sidecar.middleware`, kept for one release: it warns and re-exports.

``import middleware`` collides with any project's own ``middleware.py`` or ``middleware/`` package; import
``resize_sidecar.middleware`` instead, and put ``"resize_sidecar.middleware.django"`` in ``INSTALLED_APPS``.
"""

from __future__ import annotations

import sys
import warnings
from importlib import import_module

from resize_sidecar.middleware import HTML, MediaAPIError, MediaClient, MediaMiddleware, MediaURLs

__all__ = ["HTML", "MediaAPIError", "MediaClient", "MediaMiddleware", "MediaURLs"]

warnings.warn(
    "the import name 'middleware' is deprecated and goes away in the next release: import resize_sidecar.middleware "
    "(and use 'resize_sidecar.middleware.django' in INSTALLED_APPS)",
    DeprecationWarning,
    stacklevel=2,
)

# The former submodules (``from middleware.urls import MediaURLs``) are the new ones under their old names; the
# template tags, which Django finds by walking the app's folder, are in templatetags/ here. The URL builder now lives
# in the core, beside the signing it builds on.
_FORMER_SUBMODULES = {
    "client": "resize_sidecar.middleware.client",
    "core": "resize_sidecar.middleware.core",
    "jinja": "resize_sidecar.middleware.jinja",
    "rewrite": "resize_sidecar.middleware.rewrite",
    "urls": "resize_sidecar.core.urls",
    "variants": "resize_sidecar.middleware.variants",
}
for _name, _module in _FORMER_SUBMODULES.items():
    sys.modules[f"{__name__}.{_name}"] = import_module(_module)
