"""Where originals and derivatives live: an S3 bucket or a local folder, behind one small interface.

:class:`Storage` is the contract; :class:`~resize_sidecar.s3.S3Storage` and :class:`LocalStorage` implement it
and :func:`open_storage` picks one from the settings. Failures surface as
:class:`~resize_sidecar.errors.StorageError` (and its timeout subclass),
:class:`~resize_sidecar.errors.SourceTooLargeError` and :class:`~resize_sidecar.errors.MalformedPathError`, so no
caller ever handles a library exception. Keys are the contract's storage keys (``photos/cat.jpg``,
``_r/photos/cat.jpg/200x200-{sig}.webp``); both backends refuse keys that could leave the storage.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from resize_sidecar.errors import MalformedPathError, SourceTooLargeError, StorageError

if TYPE_CHECKING:
    from resize_sidecar.settings import Settings

logger = logging.getLogger(__name__)

#: Bytes asked for per read while a body is streamed into memory.
_CHUNK = 1024 * 1024
#: Name prefix of LocalStorage's temporary files: hidden from nginx listings and from list(); keys may not use it.
_TEMP_PREFIX = ".resize-sidecar-tmp-"


@dataclass(frozen=True)
class StoredObject:
    """One object as a listing reports it."""

    key: str  #: storage key (without the S3 prefix)
    size: int
    last_modified: datetime  #: timezone-aware, UTC


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

    def put(self, key: str, data: bytes, content_type: str, cache_control: str) -> None:
        """Write the object, replacing any existing one; readers see the old bytes or the new, never a part.

        Raises:
            StorageError, StorageTimeoutError, MalformedPathError: as for :meth:`get`.
        """
        ...

    def put_if_absent(self, key: str, data: bytes, content_type: str, cache_control: str) -> bool:
        """Write the object only if the key is free: ``True`` if written, ``False`` if it existed (left unchanged).

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

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object whose key starts with ``prefix``; returns how many were removed.

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


def open_storage(settings: Settings) -> Storage:
    """The storage the settings describe."""
    if settings.storage == "s3":
        from resize_sidecar.s3 import S3Storage  # boto3 takes a while to import; local storage never needs it

        return S3Storage(
            settings.s3_bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            connect_timeout=settings.s3_connect_timeout,
            read_timeout=settings.s3_read_timeout,
            max_attempts=settings.s3_max_attempts,
        )
    return LocalStorage(settings.local_root, file_mode=settings.file_mode, dir_mode=settings.dir_mode)


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


_ABSENT_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG, errno.EISDIR})


class LocalStorage:
    """Objects as files under a root folder, for one machine; nginx serves them with ``try_files``.

    Writes go to a hidden temporary file in the target folder, which is then renamed (``put``) or hard-linked
    (``put_if_absent``: ``link`` fails if the name exists, atomically), so nginx never serves half a file. Files get
    ``file_mode`` and created folders ``dir_mode`` whatever the umask: nginx's workers run as another user and must
    read them. Content-Type and Cache-Control cannot be stored in a file; nginx sets them.
    """

    def __init__(self, root: str | Path, *, file_mode: int = 0o644, dir_mode: int = 0o755) -> None:
        self.root = os.path.abspath(root)
        self.file_mode = file_mode
        self.dir_mode = dir_mode

    def __repr__(self) -> str:
        return f"LocalStorage(root={self.root!r})"

    def get(self, key: str, max_bytes: int | None = None) -> bytes | None:
        """See :meth:`Storage.get`."""
        path = self._path(key)
        try:
            with open(path, "rb", buffering=0) as file:
                size = os.fstat(file.fileno()).st_size
                if max_bytes is not None and size > max_bytes:
                    raise SourceTooLargeError(f"{key!r} has {size} bytes, more than {max_bytes}")
                # One read into one buffer of the known size, where chunks into a BytesIO would copy every byte
                # once more; the byte asked for beyond it tells a file that grew since fstat().
                data = file.read(size + 1)
                if len(data) <= size:
                    return data
                # Growing while read: from the start again, in capped chunks, as a stream of unknown length.
                file.seek(0)
                return read_capped(file.read, max_bytes, repr(key))
        except OSError as error:
            if error.errno in _ABSENT_ERRNOS:
                return None
            raise self._error("get", key, error) from error

    def put(self, key: str, data: bytes, content_type: str, cache_control: str) -> None:
        """See :meth:`Storage.put`; ``content_type`` and ``cache_control`` are ignored."""
        self._write(key, data, replace=True)

    def put_if_absent(self, key: str, data: bytes, content_type: str, cache_control: str) -> bool:
        """See :meth:`Storage.put_if_absent`; ``content_type`` and ``cache_control`` are ignored."""
        return self._write(key, data, replace=False)

    def exists(self, key: str) -> bool:
        """See :meth:`Storage.exists`."""
        path = self._path(key)
        try:
            return stat.S_ISREG(os.stat(path).st_mode)
        except OSError as error:
            if error.errno in _ABSENT_ERRNOS:
                return False
            raise self._error("exists", key, error) from error

    def delete(self, key: str) -> None:
        """See :meth:`Storage.delete`. Emptied folders stay (a concurrent write may be about to use them)."""
        path = self._path(key)
        try:
            os.unlink(path)
        except OSError as error:
            if error.errno in _ABSENT_ERRNOS:
                return
            # unlink() of a folder is EISDIR on Linux but EPERM on macOS: no object is stored there either way.
            if error.errno == errno.EPERM and os.path.isdir(path):
                return
            raise self._error("delete", key, error) from error

    def delete_prefix(self, prefix: str) -> int:
        """See :meth:`Storage.delete_prefix`; folders left empty under the prefix are removed as well."""
        check_prefix(prefix)
        if not prefix:
            raise MalformedPathError("refusing to delete with an empty prefix (that is every object)")
        folders, _, _ = prefix.rpartition("/")
        start = os.path.join(self.root, folders) if folders else self.root
        deleted = 0
        try:
            for dirpath, _dirnames, filenames in os.walk(start, topdown=False, onerror=_raise_unless_absent):
                relative = os.path.relpath(dirpath, self.root)
                folder_key = "" if relative == "." else relative.replace(os.sep, "/") + "/"
                for name in filenames:
                    if name.startswith(_TEMP_PREFIX) or not (folder_key + name).startswith(prefix):
                        continue
                    try:
                        os.unlink(os.path.join(dirpath, name))
                    except FileNotFoundError:
                        continue  # deleted meanwhile by someone else
                    deleted += 1
                if folder_key.startswith(prefix):
                    # Not empty: a temporary file of a write in progress, or a new object. Leave it.
                    with contextlib.suppress(OSError):
                        os.rmdir(dirpath)
        except OSError as error:
            raise self._error("delete_prefix", prefix, error) from error
        return deleted

    def presigned_url(self, key: str, seconds: int) -> str | None:
        """See :meth:`Storage.presigned_url`: a folder has none (the media API signs its own URLs instead)."""
        return None

    def check(self) -> None:
        """See :meth:`Storage.check`: the root is a folder this process can read and write."""
        if not os.path.isdir(self.root):
            raise StorageError(f"local storage root {self.root!r} is not a folder")
        if not os.access(self.root, os.R_OK | os.W_OK | os.X_OK):
            raise StorageError(f"local storage root {self.root!r} is not readable and writable by this process")

    def list(self, prefix: str = "", *, start_after: str = "", limit: int = 1000) -> list[StoredObject]:
        """See :meth:`Storage.list`. Walks only the folders that can hold keys of the page, in key order."""
        check_prefix(prefix)
        folders, _, _ = prefix.rpartition("/")
        start = os.path.join(self.root, folders) if folders else self.root
        found: list[StoredObject] = []
        if limit <= 0:
            return found
        try:
            for item in self._walk(start, folders + "/" if folders else "", prefix, start_after):
                found.append(item)
                if len(found) >= limit:
                    break
        except OSError as error:
            raise self._error("list", prefix, error) from error
        return found

    def _walk(self, folder: str, folder_key: str, prefix: str, start_after: str) -> Iterator[StoredObject]:
        """Objects under ``folder`` in key order, skipping folders whose keys cannot match."""
        try:
            with os.scandir(folder) as scan:
                entries = [
                    (entry.name + "/" if entry.is_dir(follow_symlinks=False) else entry.name, entry)
                    for entry in scan
                    if not entry.name.startswith(_TEMP_PREFIX)
                ]
        except OSError as error:
            if error.errno in _ABSENT_ERRNOS:
                return
            raise
        # Python compares strings by code point, which is UTF-8 byte order; a folder sorts as "name/", exactly
        # where the keys inside it sort among their neighbours.
        entries.sort(key=lambda pair: pair[0])
        for name, entry in entries:
            key = folder_key + name
            if not _valid_utf8(key):
                continue  # a name written by something else; it cannot be a key
            if name.endswith("/"):
                could_match = key.startswith(prefix) or prefix.startswith(key)
                has_later_keys = key > start_after or start_after.startswith(key)
                if could_match and has_later_keys:
                    yield from self._walk(entry.path, key, prefix, start_after)
            elif key.startswith(prefix) and key > start_after and entry.is_file():
                try:
                    info = entry.stat()
                except FileNotFoundError:
                    continue  # deleted since the folder was read
                yield StoredObject(key, info.st_size, datetime.fromtimestamp(info.st_mtime, UTC))

    def _path(self, key: str) -> str:
        check_key(key)
        if any(segment.startswith(_TEMP_PREFIX) for segment in key.split("/")):
            raise MalformedPathError(f"storage key segments may not start with {_TEMP_PREFIX!r}")
        return os.path.join(self.root, key)

    def _write(self, key: str, data: bytes, *, replace: bool) -> bool:
        path = self._path(key)
        temp: str | None = None
        try:
            fd, temp = self._create_temp(os.path.dirname(path))
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                # mkstemp creates 0600 files: nginx's workers (another user) could not read them.
                os.fchmod(fd, self.file_mode)
                # On disk before it gets its name, so a crash cannot leave an empty file that nginx serves.
                os.fsync(fd)
            if replace:
                os.replace(temp, path)
                temp = None
                return True
            try:
                os.link(temp, path)
            except FileExistsError:
                if os.path.isdir(path):
                    # Nothing is stored at the key, yet nothing can be: "already there" would be a lie.
                    raise StorageError(f"local put_if_absent {key!r}: a folder has that name") from None
                return False
            return True
        except OSError as error:
            raise self._error("put" if replace else "put_if_absent", key, error) from error
        finally:
            if temp is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)

    def _create_temp(self, folder: str) -> tuple[int, str]:
        try:
            return tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=folder)
        except FileNotFoundError:
            # The first write into this folder, or delete_prefix() just removed it as empty.
            self._make_folders(folder)
            return tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=folder)

    def _make_folders(self, folder: str) -> None:
        missing = []
        while not os.path.isdir(folder):
            missing.append(folder)
            folder = os.path.dirname(folder)
        for path in reversed(missing):
            try:
                os.mkdir(path, self.dir_mode)
            except FileExistsError:
                continue  # made by a concurrent write; or a file, and the write fails with ENOTDIR
            # mkdir's mode is masked by the umask.
            os.chmod(path, self.dir_mode)

    def _error(self, operation: str, key: str, error: OSError) -> StorageError:
        return StorageError(f"local {operation} {key!r}: {error.strerror or error}")


def _raise_unless_absent(error: OSError) -> None:
    """os.walk() ignores errors unless told: a folder that vanished is fine, an unreadable one is not."""
    if error.errno not in _ABSENT_ERRNOS:
        raise error


def _valid_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
