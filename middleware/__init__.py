"""WSGI middleware for any Python web app: signed derivative URLs, HTML rewriting, development serving.

``MediaMiddleware(app)`` wraps an application; ``MediaURLs`` builds the URLs templates print. Importing this package
pulls in neither pyvips nor boto3: only ``serve_media=True`` loads the sidecar, and only when first needed.
"""

from __future__ import annotations

from middleware.core import MediaMiddleware
from middleware.urls import HTML, MediaURLs

__all__ = ["HTML", "MediaMiddleware", "MediaURLs"]
