"""The miss path, free of HTTP: verify the path, read the original, render, store, return the derivative."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from resize_sidecar import imaging
from resize_sidecar.errors import NotFoundError, PolicyError, StorageError
from resize_sidecar.settings import Settings
from resize_sidecar.signing import DerivativePath, DerivativeSpec, parse_path, resolve_spec, verify
from resize_sidecar.storage import Storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Derivative:
    """A derivative ready to be answered.

    ``created`` is False when it was already in storage (a concurrent miss won, or nginx could not read it);
    ``stored`` is False when it was made but could not be written (it is answered all the same).
    """

    body: bytes
    content_type: str
    storage_key: str
    created: bool
    stored: bool = True
    transform_seconds: float = 0.0


class Deriver:
    """Turns a raw derivative request path into a :class:`Derivative`, making and storing it when missing."""

    def __init__(self, settings: Settings, storage: Storage) -> None:
        self.settings = settings
        self.storage = storage

    def authorize(self, raw_path: str) -> tuple[DerivativePath, DerivativeSpec]:
        """Parse, verify and check a path against the settings, touching no storage.

        Raises:
            MalformedPathError, BadSignatureError, PolicyError: the request is refused.
        """
        settings = self.settings
        path = parse_path(raw_path, media_url=settings.media_url, derived_prefix=settings.derived_prefix)
        verify(path, settings.secrets)
        spec = resolve_spec(path.spec, settings.preset_specs)
        limit = settings.max_output_dimension
        if max(spec.width or 0, spec.height or 0) > limit:
            raise PolicyError(f"derivatives are at most {limit} pixels wide and high")
        return path, spec

    def derive(self, raw_path: str) -> Derivative:
        """The derivative a signed path names: from storage if it exists, else made now and stored.

        Raises:
            SidecarError: a subclass naming why it cannot be answered (400, 403, 404, 422, 502, 504).
        """
        path, spec = self.authorize(raw_path)
        storage_key = path.storage_key(self.settings.derived_prefix)
        content_type = imaging.CONTENT_TYPES[path.fmt]

        existing = self.storage.get(storage_key)
        if existing is not None:
            return Derivative(existing, content_type, storage_key, created=False)

        original = self.storage.get(path.key, max_bytes=self.settings.max_source_bytes)
        if original is None:
            raise NotFoundError(f"no original at {path.key!r}")
        started = time.perf_counter()
        info = imaging.probe(original, self.settings)
        rendered = imaging.render(original, spec, path.fmt, self.settings, info)
        seconds = time.perf_counter() - started
        del original  # the source can be tens of megabytes; do not hold it during the upload

        try:
            written = self.storage.put_if_absent(
                storage_key, rendered.body, rendered.content_type, self.settings.cache_control
            )
        except StorageError as error:
            # Serving what was made beats failing the request; the next miss will try to store it again.
            log.warning("could not store %s: %s", storage_key, error.detail)
            return Derivative(rendered.body, content_type, storage_key, True, False, seconds)
        if not written:
            # Another node stored it first: answer its bytes, so every client sees the same object.
            winner = self.storage.get(storage_key)
            if winner is not None:
                return Derivative(winner, content_type, storage_key, created=False, transform_seconds=seconds)
        return Derivative(rendered.body, content_type, storage_key, created=True, transform_seconds=seconds)
