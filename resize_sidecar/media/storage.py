"""Where originals and derivatives live: the one small interface both backends keep, and what they share.

The :class:`Storage` protocol is the contract; :class:`~resize_sidecar.media.s3.S3Storage` and
:class:`~resize_sidecar.media.local.LocalStorage` implement it and :func:`~resize_sidecar.media.stores.open_storage`
picks one from the settings. Failures surface as :class:`~resize_sidecar.core.errors.StorageError` (and its timeout
subclass), :class:`~resize_sidecar.core.errors.SourceTooLargeError` and
:class:`~resize_sidecar.core.errors.MalformedPathError`, so no caller ever handles a library exception. Keys are the
contract's storage keys (``photos/cat.jpg``, ``_r/photos/cat.jpg/200x200-{sig}.webp``); both backends refuse keys
that could leave the storage. This module imports neither backend.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, Protocol

from resize_sidecar.core.errors import MalformedPathError, SourceTooLargeError, StorageError
from resize_sidecar.core.objects import WriteHeaders
from resize_sidecar.core.signing import PRIVATE_DERIVED_PREFIX, derivatives_prefix

#: Bytes asked for per read while a body is streamed into memory.
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StoredObject:
    """One object as a listing reports it."""

    key: str  #: storage key (without the S3 prefix)
    size: int
    last_modified: datetime  #: timezone-aware, UTC


#: An object's user metadata: names to values (S3 keeps the names lower-case).
Metadata = Mapping[str, str]


class StoredBytes(NamedTuple):
    """An object's bytes and the version they were read at (see :meth:`Storage.version`)."""

    data: bytes
    version: str


class Storage(Protocol):
    """The contract both backends keep; ``test_storage.py`` runs one suite against each."""

    def get(self, key: str, max_bytes: int | None = None) -> bytes | None:
        """The object's bytes, or ``None`` when there is no such object.

        Raises:
            SourceTooLargeError: the object has more than ``max_bytes`` bytes (checked from its announced size, then
                while reading, so at most ``max_bytes + 1`` bytes are ever read).
            StorageError: storage failed, or sent fewer bytes than it announced (a partial body is never returned).
            StorageTimeoutError: storage did not answer in time.
            MalformedPathError: the key could leave the storage.
        """
        ...

    def get_versioned(self, key: str, max_bytes: int | None = None) -> StoredBytes | None:
        """Like :meth:`get`, with the version of what was read, from the same request.

        Raises:
            SourceTooLargeError, StorageError, StorageTimeoutError, MalformedPathError: as for :meth:`get`.
        """
        ...

    def version(self, key: str) -> str | None:
        """A token naming the object now stored at the key (``None``: nothing is), which changes whenever the key
        is written with other bytes, deleted and written again included: S3's ETag; a file's inode, size and
        modification time. A reader compares it with the version it read to learn whether it read what is stored.

        Raises:
            StorageError, StorageTimeoutError, MalformedPathError: as for :meth:`get`.
        """
        ...

    def put(
        self, key: str, data: bytes, content_type: str, cache_control: str, metadata: Metadata | None = None
    ) -> None:
        """Write the object, replacing any existing one; readers see the old bytes or the new, never a part.

        ``metadata`` is kept with the object until it is written again (:meth:`head` reads it back): short ASCII
        names and values, S3's user metadata.

        Raises:
            StorageError, StorageTimeoutError, MalformedPathError: as for :meth:`get`.
            StorageConflictError: this storage cannot hold the key beside an object it holds (local storage: a file
                where the key needs a folder, or a folder at the key).
        """
        ...

    def put_if_absent(
        self, key: str, data: bytes, content_type: str, cache_control: str, metadata: Metadata | None = None
    ) -> bool:
        """Write the object only if the key is free: ``True`` if written, ``False`` if it existed (left unchanged).
        ``metadata`` as for :meth:`put`.

        Raises:
            StorageError, StorageTimeoutError, MalformedPathError, StorageConflictError: as for :meth:`put`.
        """
        ...

    def head(self, key: str) -> Metadata | None:
        """The metadata the object at the key was written with (empty: none), or ``None`` when there is no object.

        Raises:
            StorageError, StorageTimeoutError, MalformedPathError: as for :meth:`get`.
        """
        ...

    def exists(self, key: str) -> bool:
        """Whether an object is stored at the key.

        Raises:
            StorageError, StorageTimeoutError, MalformedPathError: as for :meth:`get`.
        """
        ...

    def delete(self, key: str) -> None:
        """Remove the object; a missing one is not an error.

        Raises:
            StorageError, StorageTimeoutError, MalformedPathError: as for :meth:`get`.
        """
        ...

    def delete_prefix(self, prefix: str, *, nested: bool = True) -> int:
        """Remove every object whose key starts with ``prefix``; returns how many were removed. With ``nested``
        False, only those with no ``/`` after the prefix: an original's derivatives are ``_r/{key}/{name}``, while
        ``_r/{key}/more/…`` belongs to the originals whose keys start with ``{key}/``.

        Raises:
            MalformedPathError: an empty prefix (that would empty the whole storage) or an unsafe one.
            StorageError, StorageTimeoutError: as for :meth:`get`.
        """
        ...

    def presigned_url(self, key: str, seconds: int) -> str | None:
        """A URL that reads the object without credentials for ``seconds``, or ``None`` if the store has none.

        Nothing is checked or fetched: the URL of a missing key answers 404 (or 403) when used.
        """
        ...

    def check(self) -> None:
        """Readiness: return if storage is reachable and usable.

        Raises:
            StorageError: unreachable, the bucket or folder is missing, or access is refused.
            StorageTimeoutError: storage did not answer in time.
        """
        ...

    def list(self, prefix: str = "", *, start_after: str = "", limit: int = 1000) -> list[StoredObject]:
        """At most ``limit`` objects whose keys start with ``prefix`` and sort after ``start_after``.

        Sorted by key in UTF-8 byte order, as S3 lists; pass the last key returned as ``start_after`` for the next
        page.

        Raises:
            MalformedPathError: an unsafe prefix.
            StorageError, StorageTimeoutError: as for :meth:`get`.
        """
        ...


class WriteProbe:
    """Whether storage takes writes, learned by writing a small object at ``key`` at most once per ``interval`` s.

    A store can answer every read and refuse every write (Ceph's RADOS Gateway under a public access block that
    blocks public ACLs refuses even the owner's PUTs): misses are then made again and again and never stored.
    Readiness is probed every few seconds, by every balancer and orchestrator, and each write is a request S3 bills:
    the answer, a failure as well as a success, is kept for ``interval`` seconds. The one object is replaced each
    time, so nothing piles up.
    """

    def __init__(
        self,
        storage: Storage,
        key: str,
        *,
        headers: WriteHeaders,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.storage = storage
        self.key = key
        self.headers = headers
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._written_at: float | None = None
        self._failure = ""

    def check(self) -> None:
        """Write unless the last write is under ``interval`` seconds old.

        Raises:
            StorageError: the last write failed; the message says how.
        """
        with self._lock:
            now = self._clock()
            if self._written_at is None or now - self._written_at >= self.interval:
                self._written_at = now
                try:
                    self.storage.put(self.key, b"ok\n", *self.headers)
                except StorageError as error:
                    self._failure = error.detail
                else:
                    self._failure = ""
            failure = self._failure
        if failure:
            raise StorageError(failure)


def delete_derivatives(storage: Storage, key: str, derived_prefix: str) -> int:
    """Delete the derivatives of the original ``key``, public and private, and of no other original; how many there
    were.

    Raises:
        StorageError, StorageTimeoutError, MalformedPathError: as :meth:`Storage.delete_prefix`.
    """
    return sum(
        storage.delete_prefix(derivatives_prefix(key, prefix), nested=False)
        for prefix in (PRIVATE_DERIVED_PREFIX, derived_prefix)
    )


def check_key(key: str) -> None:
    """Refuse keys that could name something outside the storage (upstream validates keys too)."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise MalformedPathError("storage key is empty, absolute, or contains a backslash or NUL")
    if any(segment in ("", ".", "..") for segment in key.split("/")):
        raise MalformedPathError("storage key has an empty, '.' or '..' segment")


def check_prefix(prefix: str) -> None:
    """A prefix is a key's folders, then any start of a name: its last segment may be empty or partial."""
    if prefix.startswith("/") or "\\" in prefix or "\x00" in prefix:
        raise MalformedPathError("storage prefix is absolute, or contains a backslash or NUL")
    folders = prefix.rpartition("/")[0]
    if folders:
        check_key(folders)


def read_capped(read: Callable[[int], bytes], max_bytes: int | None, what: str) -> bytes:
    """Everything ``read`` yields, refusing more than ``max_bytes`` after reading at most one byte beyond it."""
    # BytesIO.getvalue() hands over its buffer without copying it once more.
    buffer = io.BytesIO()
    limit = None if max_bytes is None else max_bytes + 1
    while True:
        size = _CHUNK if limit is None else min(_CHUNK, limit - buffer.tell())
        if size <= 0:
            break
        chunk = read(size)
        if not chunk:
            break
        buffer.write(chunk)
    if max_bytes is not None and buffer.tell() > max_bytes:
        raise SourceTooLargeError(f"{what} has more than {max_bytes} bytes")
    return buffer.getvalue()
