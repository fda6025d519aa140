"""This machine's locks, shared by every worker process and thread: one flight per derivative, a set number of
transform slots.

Both are ``flock`` on files in ``LOCK_DIR``, which every worker process (and thread) of the machine sees; a ``flock``
dies with the process that holds it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import stat
import threading
import time
from collections.abc import Iterator

from resize_sidecar.core.errors import OverloadedError, SettingsError

#: How often a request waiting for a lock tries it again. flock() cannot wait with a time limit; 4 workers polling
#: 50 times a second cost nothing next to a transform.
_POLL_SECONDS = 0.02


class NodeLocks:
    """This machine's locks: files in one folder, locked with ``flock``.

    A ``flock`` belongs to an open file, so separately opened files exclude each other across processes and
    threads alike, and the kernel releases it when its process dies: a worker killed mid-transform (SIGKILL,
    gunicorn's timeout) leaves no stuck lock.

    Raises:
        SettingsError: ``folder`` cannot be made, or is not a folder of this user's that others cannot write to.
    """

    def __init__(self, folder: str, slots: int) -> None:
        self.folder = folder
        self.slots = slots
        # One thread of this process at a time looks for a free slot, the others queue behind it in about their
        # order of arrival. With every waiting thread polling the slot files, whoever polled first after a release
        # won, and an unlucky miss waited through many transforms (gthread workers; bench/results/experiments.md).
        self._seeking = threading.Lock()
        # Set when a thread of this process lets go of a slot, so that the thread seeking one tries at once.
        self._released = threading.Event()
        _private_folder(folder)

    @contextlib.contextmanager
    def flight(self, name: str, wait: float) -> Iterator[bool]:
        """Hold the lock called ``name``: one holder on this machine at a time, waiting at most ``wait`` seconds.
        Yields whether another holder had it first (this one waited, or raced one that was letting go).

        Each name has its own file, removed by its holder before it lets go, so files do not pile up.

        Raises:
            OverloadedError: another holder kept it for the whole wait.
        """
        path = os.path.join(self.folder, f"flight-{hashlib.sha256(name.encode()).hexdigest()}.lock")
        end = time.monotonic() + wait
        contended = False
        while True:
            fd = _open_lock_file(path)
            try:
                if not _lock_before(fd, 0.0):
                    contended = True
                    if not _lock_before(fd, end):
                        raise OverloadedError("a concurrent request for this derivative is still making it")
                # The previous holder removed the file after its work: a lock on that file excludes nobody now.
                if _names(path, fd):
                    break
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
            contended = True
        try:
            yield contended
        finally:
            # Removed while held: a waiter locked on this file then finds it gone and opens the path afresh.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            os.close(fd)

    @contextlib.contextmanager
    def transform_slot(self, wait: float) -> Iterator[None]:
        """Hold one of ``slots`` transform slots, waiting at most ``wait`` seconds for one to be free.

        Raises:
            OverloadedError: every slot stayed busy for the whole wait.
        """
        end = time.monotonic() + wait
        if not self._seeking.acquire(timeout=wait):
            raise self._overloaded()
        try:
            fd = self._free_slot(end)
        finally:
            self._seeking.release()
        try:
            yield
        finally:
            os.close(fd)
            self._released.set()

    def _free_slot(self, end: float) -> int:
        """A slot file, open and locked, found before ``end`` (a ``time.monotonic()``)."""
        while True:
            self._released.clear()
            for index in range(self.slots):
                fd = _open_lock_file(os.path.join(self.folder, f"slot-{index}.lock"))
                if _lock_before(fd, 0.0):
                    return fd
                os.close(fd)
            if time.monotonic() >= end:
                raise self._overloaded()
            # Slots other processes let go of are seen at the next poll.
            self._released.wait(_POLL_SECONDS)

    def _overloaded(self) -> OverloadedError:
        return OverloadedError(f"all {self.slots} transform slots of this machine are busy")


def _private_folder(folder: str) -> None:
    # Anyone who can write to the folder can remove or replace lock files, and so break the exclusion.
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        info = os.lstat(folder)
    except OSError as error:
        raise SettingsError(f"RESIZE_SIDECAR_LOCK_DIR (lock_dir): cannot make {folder!r}: {error.strerror}") from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise SettingsError(
            f"RESIZE_SIDECAR_LOCK_DIR (lock_dir): {folder!r} must be a folder owned by this user that only it can "
            "write to (it is made with mode 0700)"
        )


def _open_lock_file(path: str) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


def _lock_before(fd: int, end: float) -> bool:
    """Lock ``fd`` exclusively, trying until ``end`` (a ``time.monotonic()``); whether it was locked."""
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
        if time.monotonic() >= end:
            return False
        time.sleep(_POLL_SECONDS)


def _names(path: str, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        named = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)
