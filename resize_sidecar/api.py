"""The media API under ``/api/``, protected by the API secret."""

from __future__ import annotations

from webob import Request, Response

from resize_sidecar.settings import Settings
from resize_sidecar.storage import Storage


class ApiApp:
    """Answers ``/api/…`` requests."""

    def __init__(self, settings: Settings, storage: Storage) -> None:
        self.settings = settings
        self.storage = storage

    def handle(self, request: Request) -> Response:
        return Response(status=404, text="no such API route\n", content_type="text/plain", cache_control="no-store")
