"""The sidecar's plain answers: text and JSON bodies, and every error answer, rendered in this one place.

An error answer is what its :class:`~resize_sidecar.core.errors.SidecarError` says: its status, its message, its
headers. Rendering also counts it by its reason and, for a fault of ours, logs it with its traceback, so every route
(derivatives and the API alike) is counted and logged the same way.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from webob import Response

from resize_sidecar.core.errors import SidecarError, StorageError
from resize_sidecar.web import metrics

log = logging.getLogger(__name__)

NO_STORE = "no-store"
#: How a route words its errors: the API in JSON (``{"error", "detail"}``), the other routes in plain text.
ErrorBody = Literal["json", "text"]


def text_response(status: int, text: str) -> Response:
    """A one-line plain-text answer that no cache keeps."""
    return Response(
        status=status,
        text=text + "\n",
        content_type="text/plain",
        charset="utf-8",
        cache_control=NO_STORE,
    )


def json_response(status: int, body: dict[str, Any]) -> Response:
    """A JSON answer that no cache keeps."""
    return Response(status=status, json_body=body, cache_control=NO_STORE)


def error_response(error: SidecarError, body: ErrorBody) -> Response:
    """The answer to a request refused or failed with ``error``, counted under its reason.

    A fault of ours (``report``) is logged with its traceback, and its answer says no more than its status does.
    """
    metrics.REJECTIONS.labels(error.reason).inc()
    if isinstance(error, StorageError):
        metrics.STORAGE_ERRORS.inc()
    if error.report:
        log.error("%s %s: %s", error.status, error.public_message, error.detail, exc_info=error)
    shown = {"error": error.public_message} if error.report else {"error": error.public_message, "detail": error.detail}
    if body == "json":
        response = json_response(error.status, shown)
    else:
        response = text_response(error.status, ": ".join(shown.values()))
    response.headers.update(error.headers())
    return response
