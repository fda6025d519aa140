"""Local storage: objects as files under a root folder, for one machine (see :class:`LocalStorage`)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from resize_sidecar.core.errors import MalformedPathError, SourceTooLargeError, StorageConflictError, StorageError
from resize_sidecar.core.signing import STORAGE_NAME_PREFIX
from resize_sidecar.media.storage import Metadata, StoredBytes, StoredObject, check_key, check_prefix, read_capped

#: Name prefix of LocalStorage's temporary files: hidden from nginx listings and from list(); keys may not use it.
_TEMP_PREFIX = STORAGE_NAME_PREFIX + "tmp-"
#: Name prefix of the file beside an object that holds its metadata (see LocalStorage); hidden as temporary files are.
_META_PREFIX = STORAGE_NAME_PREFIX + "meta-"
_HIDDEN_PREFIXES = (_TEMP_PREFIX, _META_PREFIX)
#: More than any metadata the program writes: a larger metadata file is not one of its own.
_META_MAX_BYTES = 4096
# ELOOP: a symbolic link where a folder or an object should be. Links are never followed (see LocalStorage).
_ABSENT_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG, errno.EISDIR, errno.ELOOP})
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Non-blocking: opening a FIFO planted at the name would otherwise wait for a writer.
_META_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class LocalStorage:
    """Objects as files under a root folder, for one machine; nginx serves them with ``try_files``.

    Writes go to a hidden temporary file in the target folder, which is then renamed (``put``) or hard-linked
    (``put_if_absent``: ``link`` fails if the name exists, atomically), so nginx never serves half a file. Files get
    ``file_mode`` and created folders ``dir_mode`` whatever the umask: nginx's workers run as another user and must
    read them. Content-Type and Cache-Control cannot be stored in a file; nginx sets them.

    Metadata goes to a hidden file beside the object (``.resize-sidecar-meta-{name}``, JSON, written after it, as
    every file is) naming the version of the object it describes (:meth:`version`, which a rename or a link keeps):
    :meth:`head` ignores one that describes another version, so an object written without metadata, or one whose
    metadata write was cut off, reads as having none. Extended attributes would need a filesystem that keeps them.

    Every path is walked from the root one folder at a time, each opened relative to the one before and never
    through a symbolic link: a link planted under the root (by anything else that writes there) can lead neither a
    read nor a write outside it. A link where an object should be reads as absent; one where a write must go fails
    the write. The root itself may be a link: the operator chose it.
    """

    def __init__(self, root: str | Path, *, file_mode: int = 0o644, dir_mode: int = 0o755) -> None:
        self.root = os.path.abspath(root)
        self.file_mode = file_mode
        self.dir_mode = dir_mode

    def __repr__(self) -> str:
        return f"LocalStorage(root={self.root!r})"

    def get(self, key: str, max_bytes: int | None = None) -> bytes | None:
        """See :meth:`Storage.get`."""
        found = self.get_versioned(key, max_bytes)
        return None if found is None else found.data

    def get_versioned(self, key: str, max_bytes: int | None = None) -> StoredBytes | None:
        """See :meth:`Storage.get_versioned`."""
        folder, name = self._split(key)
        try:
            with self._folder(folder) as folder_fd:
                # Non-blocking: opening a FIFO planted at the key would otherwise wait for a writer.
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder_fd)
            with open(fd, "rb", buffering=0) as file:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode):
                    return None
                size = info.st_size
                if max_bytes is not None and size > max_bytes:
                    raise SourceTooLargeError(f"{key!r} has {size} bytes, more than {max_bytes}")
                # One read into one buffer of the known size, where chunks into a BytesIO would copy every byte
                # once more; the byte asked for beyond it tells a file that grew since fstat().
                data = file.read(size + 1)
                if len(data) > size:
                    # Growing while read: from the start again, in capped chunks, as a stream of unknown length.
                    file.seek(0)
                    data = read_capped(file.read, max_bytes, repr(key))
                return StoredBytes(data, _file_version(info))
        except OSError as error:
            if error.errno in _ABSENT_ERRNOS:
                return None
            raise self._error("get", key, error) from error

    def version(self, key: str) -> str | None:
        """See :meth:`Storage.version`."""
        info = self._stat(key, "version")
        return None if info is None else _file_version(info)

    def put(
        self, key: str, data: bytes, content_type: str, cache_control: str, metadata: Metadata | None = None
    ) -> None:
        """See :meth:`Storage.put`; ``content_type`` and ``cache_control`` are ignored."""
        self._write(key, data, replace=True, metadata=metadata)

    def put_if_absent(
        self, key: str, data: bytes, content_type: str, cache_control: str, metadata: Metadata | None = None
    ) -> bool:
        """See :meth:`Storage.put_if_absent`; ``content_type`` and ``cache_control`` are ignored."""
        return self._write(key, data, replace=False, metadata=metadata)

    def head(self, key: str) -> Metadata | None:
        """See :meth:`Storage.head`: from the metadata file beside the object, if it describes this version."""
        folder, name = self._split(key)
        try:
            with self._folder(folder) as folder_fd:
                info = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
                if not stat.S_ISREG(info.st_mode):
                    return None
                try:
                    fd = os.open(_META_PREFIX + name, _META_READ_FLAGS, dir_fd=folder_fd)
                except OSError as error:
                    if error.errno in _ABSENT_ERRNOS:
                        return {}
                    raise
            with open(fd, "rb", buffering=0) as file:
                raw = file.read(_META_MAX_BYTES + 1) if stat.S_ISREG(os.fstat(fd).st_mode) else b""
        except OSError as error:
            if error.errno in _ABSENT_ERRNOS:
                return None
            raise self._error("head", key, error) from error
        return _metadata_of(raw, _file_version(info))

    def exists(self, key: str) -> bool:
        """See :meth:`Storage.exists`."""
        return self._stat(key, "exists") is not None

    def delete(self, key: str) -> None:
        """See :meth:`Storage.delete`. Emptied folders stay (a concurrent write may be about to use them)."""
        folder, name = self._split(key)
        try:
            with self._folder(folder) as folder_fd:
                try:
                    os.unlink(name, dir_fd=folder_fd)
                except PermissionError:
                    # unlink() of a folder is EISDIR on Linux but EPERM on macOS: no object is stored there.
                    if not stat.S_ISDIR(_mode(name, folder_fd)):
                        raise
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(_META_PREFIX + name, dir_fd=folder_fd)
        except OSError as error:
            if error.errno not in _ABSENT_ERRNOS:
                raise self._error("delete", key, error) from error

    def delete_prefix(self, prefix: str, *, nested: bool = True) -> int:
        """See :meth:`Storage.delete_prefix`; folders left empty under the prefix are removed as well."""
        check_prefix(prefix)
        if not prefix:
            raise MalformedPathError("refusing to delete with an empty prefix (that is every object)")
        folders, _, _ = prefix.rpartition("/")
        parent, _, last = folders.rpartition("/")
        deleted = 0
        try:
            with self._folder(folders) as start:
                # Bottom-up, so that each folder is seen empty after its own files are gone; links not followed.
                walk = os.fwalk(".", dir_fd=start, topdown=False) if nested else [(".", [], _file_names(start), start)]
                for dirpath, dirnames, filenames, dir_fd in walk:
                    relative = os.path.normpath(os.path.join(folders, dirpath))
                    folder_key = "" if relative == "." else relative.replace(os.sep, "/") + "/"
                    for name in filenames:
                        # An object's metadata file goes with it, and is not counted.
                        described = name.removeprefix(_META_PREFIX)
                        if name.startswith(_TEMP_PREFIX) or not (folder_key + described).startswith(prefix):
                            continue
                        try:
                            os.unlink(name, dir_fd=dir_fd)
                        except FileNotFoundError:
                            continue  # deleted meanwhile by someone else
                        deleted += described == name
                    for name in dirnames:
                        if (folder_key + name + "/").startswith(prefix):
                            # Not empty: a temporary file of a write in progress, or a new object. Leave it.
                            with contextlib.suppress(OSError):
                                os.rmdir(name, dir_fd=dir_fd)
            if folders and folders + "/" == prefix:
                # The prefix's own folder; not empty (not nested: other originals' derivatives below it) stays.
                with self._folder(parent) as parent_fd, contextlib.suppress(OSError):
                    os.rmdir(last, dir_fd=parent_fd)
        except OSError as error:
            if error.errno in _ABSENT_ERRNOS:
                return deleted
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
        found: list[StoredObject] = []
        if limit <= 0:
            return found
        try:
            with self._folder(folders) as start:
                for item in self._walk(start, folders + "/" if folders else "", prefix, start_after):
                    found.append(item)
                    if len(found) >= limit:
                        break
        except OSError as error:
            if error.errno in _ABSENT_ERRNOS:
                return found
            raise self._error("list", prefix, error) from error
        return found

    def _walk(self, folder_fd: int, folder_key: str, prefix: str, start_after: str) -> Iterator[StoredObject]:
        """Objects in the open folder ``folder_fd`` and below, in key order, skipping folders whose keys cannot
        match."""
        with os.scandir(folder_fd) as scan:
            entries = [
                (entry.name + "/" if entry.is_dir(follow_symlinks=False) else entry.name, entry)
                for entry in scan
                if not entry.name.startswith(_HIDDEN_PREFIXES)
            ]
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
                    try:
                        child = os.open(entry.name, _FOLDER_FLAGS, dir_fd=folder_fd)
                    except OSError as error:
                        if error.errno in _ABSENT_ERRNOS:
                            continue  # removed since the folder was read
                        raise
                    try:
                        yield from self._walk(child, key, prefix, start_after)
                    finally:
                        os.close(child)
            elif key.startswith(prefix) and key > start_after and entry.is_file(follow_symlinks=False):
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # deleted since the folder was read
                yield StoredObject(key, info.st_size, datetime.fromtimestamp(info.st_mtime, UTC))

    def _split(self, key: str) -> tuple[str, str]:
        """A checked key's folder part and file name."""
        check_key(key)
        if any(segment.startswith(_HIDDEN_PREFIXES) for segment in key.split("/")):
            raise MalformedPathError(f"storage key segments may not start with {_TEMP_PREFIX!r} or {_META_PREFIX!r}")
        folder, _, name = key.rpartition("/")
        return folder, name

    @contextlib.contextmanager
    def _folder(self, folder: str, *, create: bool = False) -> Iterator[int]:
        """The folder ``folder`` (a key's folders; "" is the root) open, reached without following a link; with
        ``create``, missing folders are made.

        Raises:
            OSError: a folder is missing (ENOENT), or a link or a file is in the way (ELOOP, ENOTDIR).
            StorageConflictError: with ``create``, a file is where a folder is needed.
        """
        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            if not create:
                raise
            os.makedirs(self.root, self.dir_mode, exist_ok=True)
            os.chmod(self.root, self.dir_mode)  # masked by the umask, as every mkdir
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            segments = folder.split("/") if folder else []
            for depth, segment in enumerate(segments, 1):
                try:
                    child = os.open(segment, _FOLDER_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    child = self._make_folder(segment, fd)
                except NotADirectoryError:
                    if create and stat.S_ISREG(_mode(segment, fd)):
                        path = "/".join(segments[:depth])
                        raise StorageConflictError(f"local storage holds a file at {path!r}, not a folder") from None
                    raise
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)

    def _make_folder(self, name: str, parent_fd: int) -> int:
        """Make the folder ``name`` in ``parent_fd`` (or find it made by a concurrent write) and open it."""
        try:
            os.mkdir(name, self.dir_mode, dir_fd=parent_fd)
        except FileExistsError:
            return os.open(name, _FOLDER_FLAGS, dir_fd=parent_fd)
        fd = os.open(name, _FOLDER_FLAGS, dir_fd=parent_fd)
        os.fchmod(fd, self.dir_mode)  # mkdir's mode is masked by the umask
        return fd

    def _stat(self, key: str, operation: str) -> os.stat_result | None:
        """The regular file at ``key``, or ``None`` when nothing (or no regular file) is stored there."""
        folder, name = self._split(key)
        try:
            with self._folder(folder) as folder_fd:
                info = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
        except OSError as error:
            if error.errno in _ABSENT_ERRNOS:
                return None
            raise self._error(operation, key, error) from error
        return info if stat.S_ISREG(info.st_mode) else None

    def _write(self, key: str, data: bytes, *, replace: bool, metadata: Metadata | None) -> bool:
        folder, name = self._split(key)
        try:
            with self._folder(folder, create=True) as folder_fd:
                written = self._write_file(folder_fd, name, data, replace=replace, key=key)
                if written is not None and metadata:
                    record = json.dumps({"object": _file_version(written), "metadata": dict(metadata)}).encode()
                    # Not synced: one cut off by a crash reads as no metadata (a render more, never a wrong skip),
                    # and a second fsync would add its wait to every miss.
                    self._write_file(folder_fd, _META_PREFIX + name, record, replace=True, key=key, durable=False)
                return written is not None
        except OSError as error:
            if error.errno == errno.ENAMETOOLONG:
                # The key's own doing, like a conflict: no folder here can hold it, and nothing was written.
                limit = os.pathconf(self.root, "PC_NAME_MAX")
                name = max(key.split("/"), key=lambda segment: len(segment.encode()))
                shown = name if len(name) <= 24 else name[:20] + "…"
                raise MalformedPathError(
                    f"local storage takes names of at most {limit} bytes in a key, not {len(name.encode())} ({shown})"
                ) from None
            raise self._error("put" if replace else "put_if_absent", key, error) from error

    def _write_file(
        self, folder_fd: int, name: str, data: bytes, *, replace: bool, key: str, durable: bool = True
    ) -> os.stat_result | None:
        """Write the file ``name`` in an open folder, through a temporary file (on disk before it is named, when
        ``durable``); what was written (``None``: nothing, the name was taken and not ``replace``)."""
        temp = _TEMP_PREFIX + secrets.token_hex(8)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temp, flags, 0o600, dir_fd=folder_fd)
        try:
            with open(fd, "wb") as file:
                file.write(data)
                file.flush()
                # Made 0600: nginx's workers (another user) could not read it.
                os.fchmod(fd, self.file_mode)
                if durable:
                    # On disk before it gets its name, so a crash cannot leave an empty file that nginx serves.
                    os.fsync(fd)
                written = os.fstat(fd)
            if replace:
                try:
                    os.replace(temp, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
                except IsADirectoryError:
                    raise StorageConflictError(f"local put {key!r}: a folder has that name") from None
                return written
            try:
                os.link(temp, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd, follow_symlinks=False)
            except FileExistsError:
                if stat.S_ISDIR(_mode(name, folder_fd)):
                    # Nothing is stored at the key, yet nothing can be: "already there" would be a lie.
                    raise StorageConflictError(f"local put_if_absent {key!r}: a folder has that name") from None
                return None
            return written
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp, dir_fd=folder_fd)

    def _error(self, operation: str, key: str, error: OSError) -> StorageError:
        return StorageError(f"local {operation} {key!r}: {error.strerror or error}")


def _file_version(info: os.stat_result) -> str:
    return f"{info.st_ino}-{info.st_size}-{info.st_mtime_ns}"


def _metadata_of(raw: bytes, version: str) -> Metadata:
    """The metadata a metadata file holds for the object at ``version``; none when it describes another one, or is
    not a metadata file this program wrote."""
    try:
        record = json.loads(raw) if len(raw) <= _META_MAX_BYTES else None
    except ValueError:
        return {}
    if not isinstance(record, dict) or record.get("object") != version:
        return {}
    metadata = record.get("metadata")
    if not isinstance(metadata, dict) or not all(isinstance(value, str) for value in metadata.values()):
        return {}
    return metadata


def _file_names(folder_fd: int) -> list[str]:
    """The names of the regular files in an open folder."""
    with os.scandir(folder_fd) as scan:
        return [entry.name for entry in scan if entry.is_file(follow_symlinks=False)]


def _mode(name: str, folder_fd: int) -> int:
    """The mode of ``name`` in an open folder, a link not followed; 0 when nothing can be found there."""
    try:
        return os.stat(name, dir_fd=folder_fd, follow_symlinks=False).st_mode
    except OSError:
        return 0


def _valid_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
