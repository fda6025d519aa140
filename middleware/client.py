"""A small client of the sidecar's media API, for applications that upload images and publish them.

The c2corg flow: ``upload()`` stores an image in the incoming area (with its preset derivatives, whose URLs come
back for a preview), ``activate()`` publishes it when the document that uses it is saved, ``delete()`` removes it
with every derivative. Uploads never activated expire by the bucket's lifecycle rule.

Standard library only (``urllib``), like the rest of the middleware.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, BinaryIO, TypedDict
from urllib.parse import urlencode, urljoin

from resize_sidecar.core.signing import encode_key


class MediaAPIError(Exception):
    """The API refused a request (``status`` is its HTTP status) or could not be reached (``status`` is None)."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(f"{status or 'unreachable'}: {message}")
        self.status = status
        self.message = message


class Uploaded(TypedDict):
    """The answer to an upload."""

    key: str  #: the key the image gets once activated
    incoming_key: str  #: where it is stored until then
    width: int
    height: int
    pages: int
    format: str
    content_type: str
    bytes: int
    urls: dict[str, str]  #: signed URLs of the preset derivatives of the incoming image, by preset name


class Activated(TypedDict):
    """The answer to an activation."""

    key: str
    activated: bool  #: False when the image was active already
    moved_derivatives: int
    urls: dict[str, str]  #: signed URLs of the preset derivatives of the active image


class MediaClient:
    """Calls the media API at ``api_url`` (e.g. ``http://127.0.0.1:8000/api/``) with one of its API secrets."""

    def __init__(self, api_url: str, secret: str, *, timeout: float = 30.0) -> None:
        self.api_url = api_url.rstrip("/") + "/"
        self.secret = secret
        self.timeout = timeout

    def upload(self, image: bytes | BinaryIO, *, key: str | None = None) -> Uploaded:
        """Upload an image (bytes, or a binary file streamed as it is read); ``key`` only where the API allows it.

        Raises:
            MediaAPIError: refused (413 too large, 415 not an image, 422 corrupt, 409 key taken…) or unreachable.
        """
        query = f"?{urlencode({'key': key})}" if key is not None else ""
        answer: Uploaded = self._call("POST", f"images{query}", image, "application/octet-stream")
        return answer

    def activate(self, key: str) -> Activated:
        """Publish an upload under its final key (``Uploaded["key"]``); calling it again changes nothing.

        Raises:
            MediaAPIError: 404 when there is no such upload or image, or as for :meth:`upload`.
        """
        answer: Activated = self._call("POST", f"images/{encode_key(key)}/activate")
        return answer

    def temporary_url(self, key: str, *, expires: int = 300) -> str:
        """An absolute URL to the stored original that works without the token for ``expires`` seconds.

        Raises:
            MediaAPIError: 404 when there is no such original, or as for :meth:`upload`.
        """
        answer = self._call("GET", f"images/{encode_key(key)}/url?{urlencode({'expires': expires})}")
        # S3 answers a presigned URL; local storage a path under the API's own host.
        return urljoin(self.api_url, str(answer["url"]))

    def read(self, key: str) -> bytes:
        """The stored original's bytes, through a temporary URL.

        Raises:
            MediaAPIError: as :meth:`temporary_url`.
        """
        return self._fetch(urllib.request.Request(self.temporary_url(key, expires=60)))

    def delete(self, key: str) -> dict[str, Any]:
        """Delete an original and all its derivatives.

        Raises:
            MediaAPIError: 404 when there is nothing at the key, or as for :meth:`upload`.
        """
        answer: dict[str, Any] = self._call("DELETE", f"images/{encode_key(key)}")
        return answer

    def _call(self, method: str, path: str, body: bytes | BinaryIO | None = None, content_type: str = "") -> Any:
        request = urllib.request.Request(self.api_url + path, data=body, method=method)
        request.add_header("Authorization", f"Bearer {self.secret}")
        request.add_header("Accept", "application/json")
        if content_type:
            request.add_header("Content-Type", content_type)
        return json.loads(self._fetch(request))

    def _fetch(self, request: urllib.request.Request) -> bytes:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body: bytes = response.read()
                return body
        except urllib.error.HTTPError as error:
            raise MediaAPIError(error.code, _error_text(error.read())) from None
        except (urllib.error.URLError, OSError) as error:
            raise MediaAPIError(None, str(getattr(error, "reason", error))) from None


def _error_text(body: bytes) -> str:
    """The API's ``detail`` (or ``error``) from its JSON error body, or the body as text."""
    try:
        answer = json.loads(body)
        return str(answer.get("detail") or answer.get("error"))
    except (ValueError, AttributeError):
        return body.decode("utf-8", "replace").strip()
