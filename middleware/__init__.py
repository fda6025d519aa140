"""WSGI middleware for any Python web app: signed derivative URLs, HTML rewriting, development serving.

``MediaMiddleware(app)`` wraps an application; ``MediaURLs`` builds the URLs templates print; ``MediaClient`` calls the
sidecar's media API (upload, activate, delete). Importing this package
pulls in neither pyvips nor boto3: only ``serve_media=True`` loads the sidecar, and only when first needed.
"""

from __future__ import annotations

from resize_sidecar.core.urls import HTML, MediaURLs
from resize_sidecar.middleware.client import MediaAPIError, MediaClient
from resize_sidecar.middleware.core import MediaMiddleware

__all__ = ["HTML", "MediaAPIError", "MediaClient", "MediaMiddleware", "MediaURLs"]
