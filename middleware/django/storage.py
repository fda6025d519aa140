"""A Django storage that stores uploads through the sidecar's media API, for ``ImageField``s of user photos.

The API turns an upload upright by its EXIF orientation and removes its GPS location before storing it
(``AUTO_ORIENT_ORIGINAL``, ``STRIP_ORIGINAL_GPS``), checks that it is an image it can read, and picks its key
(``UPLOAD_PREFIX``/yyyy/mm/random); the field's ``width_field``/``height_field`` then hold the upright size, which is
what the sidecar renders. Files are read back through a temporary URL (an upload once, when it is saved, for
``ImageField`` to measure), never when a page renders.

::

    STORAGES = {"default": {"BACKEND": "resize_sidecar.middleware.django.storage.MediaAPIStorage",
                            "OPTIONS": {"api_url": "http://127.0.0.1:8000/api/"}}, ...}

The API token is ``RESIZE_SIDECAR_API_SECRET`` (the first one), from the environment or the settings module, or the
``secret`` option.
"""

from __future__ import annotations

import io
from typing import Any

from django.core.files.base import ContentFile, File
from django.core.files.storage import Storage
from django.utils.deconstruct import deconstructible

from resize_sidecar.middleware.client import MediaAPIError, MediaClient
from resize_sidecar.middleware.django.conf import default_images, sidecar_settings


@deconstructible(path="resize_sidecar.middleware.django.storage.MediaAPIStorage")
class MediaAPIStorage(Storage):  # type: ignore[misc]  # Django has no type hints
    """Uploads through ``POST /api/images`` and publishes at once (``activate``); deletes with every derivative.

    Raises (from ``save``): ``MediaAPIError`` with the API's status: 413 too large, 415 not an image, 422 corrupt.
    """

    #: Names are the sidecar's keys (the template helpers take them as they are).
    names_are_keys = True

    def __init__(self, api_url: str, secret: str | None = None, timeout: float = 30.0) -> None:
        self.api_url, self.secret, self.timeout = api_url, secret, timeout

    @property
    def client(self) -> MediaClient:
        secret = self.secret or next(iter(sidecar_settings().api_secret), "")
        if not secret:
            raise MediaAPIError(None, "no API token: set RESIZE_SIDECAR_API_SECRET or the storage's secret option")
        return MediaClient(self.api_url, secret, timeout=self.timeout)

    def _save(self, name: str, content: File) -> str:
        content.seek(0)
        client = self.client
        key: str = client.activate(client.upload(content)["key"])["key"]
        # Django measures an ImageField from the content it just saved: make that the stored original (upright,
        # without its location), so that width_field and height_field hold the size the sidecar renders.
        data = client.read(key)
        content.file, content.size, content.name = io.BytesIO(data), len(data), key
        return key

    def _open(self, name: str, mode: str = "rb") -> File:
        if "w" in mode or "a" in mode or "+" in mode:
            raise ValueError("files of the media API are written by saving a new one")
        return ContentFile(self.client.read(name), name=name)

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        # The API picks a new random key for every upload: the name asked for is never the one stored.
        return name

    def exists(self, name: str) -> bool:
        try:
            self.client.temporary_url(name, expires=1)
        except MediaAPIError as error:
            if error.status == 404:
                return False
            raise
        return True

    def delete(self, name: str) -> None:
        try:
            self.client.delete(name)
        except MediaAPIError as error:
            if error.status != 404:  # Django's delete() is quiet about a file already gone
                raise

    def url(self, name: str) -> str:
        return default_images().url(name)

    def size(self, name: str) -> int:
        return len(self.client.read(name))

    def listdir(self, path: str) -> Any:
        raise NotImplementedError("the media API lists originals with GET /api/images")

    def path(self, name: str) -> Any:
        raise NotImplementedError("files of the media API have no local path; the sidecar reads them by key")
