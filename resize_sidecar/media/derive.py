"""The miss path, free of HTTP: verify the path, read the original, render, store, return the derivative.

Within one machine, concurrent misses for one derivative share one read of the original, one transform and one
write, and at most a set number of transforms run at once: both with ``flock`` on files in ``LOCK_DIR``, which
every worker process (and thread) of the machine sees; a ``flock`` dies with the process that holds it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import prometheus_client

from resize_sidecar.core.errors import (
    NotFoundError,
    OverloadedError,
    PolicyError,
    SettingsError,
    SourceChangedError,
    SourceTooLargeError,
    StorageError,
)
from resize_sidecar.core.formats import CONTENT_TYPES
from resize_sidecar.core.objects import write_headers
from resize_sidecar.core.settings import ImageLimits, Settings
from resize_sidecar.core.signing import DerivativePath, DerivativeSpec, is_preset_name, parse_path, resolve_spec, verify
from resize_sidecar.media import imaging
from resize_sidecar.media.storage import Storage

log = logging.getLogger(__name__)

ORIGINAL_READS = prometheus_client.Counter(
    "resize_sidecar_original_reads", "Originals read from storage to make a derivative."
)
#: How often a request waiting for a lock tries it again. flock() cannot wait with a time limit; 4 workers polling
#: 50 times a second cost nothing next to a transform.
_POLL_SECONDS = 0.02


@dataclass(frozen=True)
class Derivative:
    """A derivative ready to be answered.

    ``created`` is False when it was already in storage (a concurrent miss won, or nginx could not read it);
    ``concurrent`` tells the first case: a request for the same derivative, here or on another machine, stored it
    while this one waited or worked. ``stored`` is False when it was made but could not be written (it is answered
    all the same).
    """

    body: bytes
    content_type: str
    storage_key: str
    created: bool
    stored: bool = True
    transform_seconds: float = 0.0
    concurrent: bool = False


@dataclass(frozen=True)
class Made:
    """A derivative rendered from one version of its original (see :meth:`Storage.version`)."""

    rendered: imaging.Rendered
    seconds: float  #: spent decoding, transforming and encoding
    source_version: str


@dataclass(frozen=True)
class Source:
    """An original in hand (an upload just stored), probed once, to make several derivatives of without reading it
    again; ``version`` is what :meth:`Storage.version` said of it once stored."""

    data: bytes
    version: str
    info: imaging.SourceInfo

    def render(self, spec: DerivativeSpec, fmt: str, limits: ImageLimits) -> Made:
        """Raises: TransformTimeoutError, UndecodableImageError: as :func:`imaging.render`."""
        started = time.perf_counter()
        rendered = imaging.render(self.data, spec, fmt, limits, self.info)
        return Made(rendered, time.perf_counter() - started, self.version)


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


class Deriver:
    """Turns a raw derivative request path into a :class:`Derivative`, making and storing it when missing."""

    def __init__(self, settings: Settings, storage: Storage) -> None:
        """Use ``storage`` under ``settings``; the machine's lock folder is made here, once per process.

        Raises:
            SettingsError: the lock folder is unusable (see :class:`NodeLocks`).
        """
        self.settings = settings
        self.limits = settings.image_limits
        self.storage = storage
        self.locks = NodeLocks(settings.lock_path, settings.transform_slots)

    def transform_slot(self, wait: float | None = None) -> contextlib.AbstractContextManager[None]:
        """One of this machine's transform slots, for any work that decodes an original's pixels (a miss, an upload,
        its metadata, an operation), waiting at most ``wait`` seconds (``overload_wait`` by default).

        Raises:
            OverloadedError: every slot stayed busy for the whole wait.
        """
        return self.locks.transform_slot(self.settings.overload_wait if wait is None else wait)

    def authorize(self, raw_path: str) -> tuple[DerivativePath, DerivativeSpec]:
        """Parse, verify and check a path against the settings, touching no storage.

        Raises:
            MalformedPathError, BadSignatureError, PolicyError: the request is refused.
        """
        settings = self.settings
        path = parse_path(raw_path, media_url=settings.media_url, derived_prefix=settings.derived_prefix)
        return path, self.authorize_path(path)

    def authorize_path(self, path: DerivativePath) -> DerivativeSpec:
        """Verify a parsed path and check its spec against the settings; the spec it stands for.

        Raises:
            BadSignatureError, MalformedPathError, PolicyError: the path is refused.
        """
        settings = self.settings
        verify(path, settings.secrets)
        spec = resolve_spec(path.spec, settings.preset_specs)
        limit = settings.max_output_dimension
        if max(spec.width or 0, spec.height or 0) > limit:
            raise PolicyError(f"derivatives are at most {limit} pixels wide and high (MAX_OUTPUT_DIMENSION)")

        def check_listed(name: str, value: int | None, allowed: frozenset[int], setting: str) -> None:
            if allowed and value is not None and value not in allowed:
                listed = ", ".join(str(item) for item in sorted(allowed))
                raise PolicyError(f"{name} {value} is not one of the {setting} ({listed})")

        # Presets are the operator's own and few; every other spec is bounded by the configured lists, so a leaked
        # secret (or a page that signs what it is shown) cannot make unboundedly many distinct derivatives.
        if not is_preset_name(path.spec):
            if settings.widths:
                if spec.full_size:
                    raise PolicyError("full-size derivatives need a preset when allowed widths are set")
                side, name = (spec.width, "width") if spec.width is not None else (spec.height, "height")
                check_listed(name, side, settings.widths, "allowed widths")
            check_listed("quality", spec.quality, settings.qualities, "allowed qualities")
            check_listed("blur", spec.blur, settings.blurs, "allowed blurs")
        return spec

    def derive(self, raw_path: str) -> Derivative:
        """The derivative a signed path names: from storage if it exists, else made now and stored.

        Raises:
            SidecarError: a subclass naming why it cannot be answered (400, 403, 404, 422, 502, 504).
        """
        path, spec = self.authorize(raw_path)
        return self._stored_or_made(path, spec, self.storage.get)

    def ensure(self, raw_path: str) -> Derivative:
        """Like :meth:`derive`, for answers that do not carry the image (redirects): an existing derivative is only
        checked, not read, and its ``body`` is empty.

        Raises:
            SidecarError: as :meth:`derive`.
        """
        path, spec = self.authorize(raw_path)
        return self._stored_or_made(path, spec, lambda key: b"" if self.storage.exists(key) else None)

    def derive_from(self, source: Source, path: DerivativePath, spec: DerivativeSpec) -> Derivative:
        """Like :meth:`derive`, for a path the caller built and signed itself from ``source``, its original in hand:
        nothing is parsed or verified, and the original is not read again. The same flight lock, transform slot,
        store and check of the source as a miss.

        Raises:
            SidecarError: as :meth:`derive`.
        """
        return self._stored_or_made(path, spec, self.storage.get, source)

    def render(self, path: DerivativePath, spec: DerivativeSpec) -> Made:
        """Read the original of an authorized path and render ``spec`` of it.

        Raises:
            NotFoundError: no original at the path's key.
            SourceTooLargeError, UnsupportedImageError, UndecodableImageError: the original cannot be rendered.
            TransformTimeoutError: the transform ran out of time.
            StorageError: the original could not be read.
        """
        ORIGINAL_READS.inc()
        try:
            original = self.storage.get_versioned(path.key, max_bytes=self.limits.max_source_bytes)
        except SourceTooLargeError as error:
            raise SourceTooLargeError(f"{error.detail} (MAX_SOURCE_BYTES)") from None
        if original is None:
            raise NotFoundError(f"no original at {path.key!r}")
        started = time.perf_counter()
        info = imaging.probe(original.data, self.limits)
        rendered = imaging.render(original.data, spec, path.fmt, self.limits, info)
        return Made(rendered, time.perf_counter() - started, original.version)

    def confirm_source(self, original_key: str, source_version: str, storage_key: str) -> None:
        """Keep the derivative just stored at ``storage_key`` only if its original is still the version it was made
        from; otherwise delete it again.

        A delete removes the original first and its derivatives second, and a replacement writes the new original
        first and then removes the derivatives. A derivative stored before that removal is removed by it; one stored
        after it finds the original gone or changed here. Either way no derivative of a deleted or replaced original
        stays servable, whichever machine made it (S3 reads what was last written).

        Raises:
            NotFoundError: the original was deleted meanwhile.
            SourceChangedError: the original was replaced meanwhile.
            StorageError: the original could not be looked at (the derivative is deleted too, if storage lets it).
        """
        try:
            version = self.storage.version(original_key)
        except StorageError:
            with contextlib.suppress(StorageError):
                self.storage.delete(storage_key)
            raise
        if version == source_version:
            return
        self.storage.delete(storage_key)
        if version is None:
            raise NotFoundError(f"the original {original_key!r} was deleted while this derivative was made")
        raise SourceChangedError(f"the original {original_key!r} was replaced while this derivative was made")

    def _stored_or_made(
        self,
        path: DerivativePath,
        spec: DerivativeSpec,
        find: Callable[[str], bytes | None],
        source: Source | None = None,
    ) -> Derivative:
        """The derivative as ``find`` gets it from storage (``None``: not stored), else made, stored and answered.

        Raises:
            OverloadedError: a concurrent miss for it, or other transforms, kept this one waiting too long.
            SidecarError: as :meth:`derive`.
        """
        storage_key = path.storage_key(self.settings.derived_prefix)
        content_type = CONTENT_TYPES[path.fmt]
        # A concurrent holder may take a whole transform and a slot wait: waiting that long is still cheaper than
        # making the derivative once more.
        wait = self.settings.transform_timeout + self.settings.overload_wait
        with self.locks.flight(storage_key, wait) as contended:
            # nginx (or S3's website redirect) looked a moment before sending the request here, so storage is
            # looked at only once, under the lock: that one look also finds what a concurrent holder stored. Each
            # look is a round trip on S3 (bench/results/experiments.md, decision 3).
            found = find(storage_key)
            if found is not None:
                return Derivative(found, content_type, storage_key, created=False, concurrent=contended)
            return self._make(path, spec, storage_key, source)

    def _make(
        self, path: DerivativePath, spec: DerivativeSpec, storage_key: str, source: Source | None
    ) -> Derivative:
        # The slot bounds the memory and CPU of originals held and decoded at once, so it covers the read too; the
        # original (tens of megabytes, perhaps) is released when render() returns, before the upload.
        with self.locks.transform_slot(self.settings.overload_wait):
            made = self.render(path, spec) if source is None else source.render(spec, path.fmt, self.limits)
        rendered, seconds = made.rendered, made.seconds
        content_type = rendered.content_type
        try:
            written = self.storage.put_if_absent(
                storage_key, rendered.body, *write_headers("derivative", self.settings, rendered.content_type)
            )
        except StorageError as error:
            # Serving what was made beats failing the request; the next miss will try to store it again.
            log.warning("could not store %s: %s", storage_key, error.detail)
            return Derivative(rendered.body, content_type, storage_key, True, False, seconds)
        if not written:
            # Another node stored it first (and checks its own source): answer its bytes, so every client sees the
            # same object.
            winner = self.storage.get(storage_key)
            if winner is not None:
                return Derivative(winner, content_type, storage_key, False, True, seconds, concurrent=True)
        self.confirm_source(path.key, made.source_version, storage_key)
        return Derivative(rendered.body, content_type, storage_key, created=True, transform_seconds=seconds)
