"""The miss path, free of HTTP: verify the path, read the original, render, store, return the derivative.

Within one machine, concurrent misses for one derivative share one read of the original, one transform and one
write, and at most a set number of transforms run at once (:class:`~resize_sidecar.media.locks.NodeLocks`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import prometheus_client

from resize_sidecar.core import auto, private
from resize_sidecar.core.errors import (
    NotFoundError,
    PolicyError,
    SourceChangedError,
    SourceTooLargeError,
    StorageError,
)
from resize_sidecar.core.formats import CONTENT_TYPES
from resize_sidecar.core.objects import write_headers
from resize_sidecar.core.settings import ImageLimits, Settings
from resize_sidecar.core.signing import (
    PRIVATE_DERIVED_PREFIX,
    DerivativePath,
    DerivativeSpec,
    StoredDerivative,
    is_preset_name,
    parse_path,
    parse_signed_storage_key,
    parse_storage_key,
    resolve_spec,
    verify,
)
from resize_sidecar.media import imaging, recipe
from resize_sidecar.media.faces import Faces, faces_key
from resize_sidecar.media.locks import NodeLocks
from resize_sidecar.media.storage import Storage

log = logging.getLogger(__name__)

ORIGINAL_READS = prometheus_client.Counter(
    "resize_sidecar_original_reads", "Originals read from storage to make a derivative."
)


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
    recipe: dict[str, str]  #: what made it, stored with it (:func:`~resize_sidecar.media.recipe.record`)


@dataclass(frozen=True)
class Source:
    """An original in hand (an upload just stored), probed once, to make several derivatives of without reading it
    again; ``version`` is what :meth:`Storage.version` said of it once stored."""

    data: bytes
    version: str
    info: imaging.SourceInfo

    def render(
        self, spec: DerivativeSpec, fmt: str, limits: ImageLimits, faces: tuple[imaging.FaceBox, ...] = ()
    ) -> Made:
        """Raises: TransformTimeoutError, UndecodableImageError: as :func:`imaging.render`."""
        started = time.perf_counter()
        rendered = imaging.render(self.data, spec, fmt, limits, self.info, faces)
        made_with = recipe.record(spec, fmt, limits, self.info.decoder, self.version)
        return Made(rendered, time.perf_counter() - started, self.version, made_with)


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
        self.faces = Faces(storage, write_headers("faces", settings), self.limits)

    def transform_slot(self, wait: float | None = None) -> contextlib.AbstractContextManager[None]:
        """One of this machine's transform slots, for any work that decodes an original's pixels (a miss, an upload,
        its metadata, an operation), waiting at most ``wait`` seconds (``overload_wait`` by default).

        Raises:
            OverloadedError: every slot stayed busy for the whole wait.
        """
        return self.locks.transform_slot(self.settings.overload_wait if wait is None else wait)

    def authorize(self, raw_path: str, *, query: str = "", accept: str = "") -> tuple[DerivativePath, DerivativeSpec]:
        """Parse, verify and check a path against the settings, touching no storage.

        A private derivative's path (:mod:`~resize_sidecar.core.private`) is checked with its ``query`` (token and
        expiry) first; an ``.auto`` path (:mod:`~resize_sidecar.core.auto`) stands for the path of the format that
        ``accept`` chooses, signed as ``auto``.

        Raises:
            MalformedPathError, BadSignatureError, PolicyError: the request is refused.
        """
        secrets = self.settings.secrets
        if self.is_private(raw_path):
            private.check(raw_path, query, secrets, time.time())
            path, _ = self.parse(raw_path)
            return path, self.authorize_path(path, private.signing_keys(secrets))
        path, signed_format = self.parse(raw_path, accept=accept)
        return path, self.authorize_path(path, signed_format=signed_format)

    def parse(self, raw_path: str, *, accept: str = "") -> tuple[DerivativePath, str | None]:
        """The derivative a request path names (for an ``.auto`` path, the one of the format ``accept`` chooses) and
        the format its signature covers when it is not the path's own; neither verified nor checked.

        Raises:
            MalformedPathError, BadSignatureError: as :func:`parse_path`.
        """
        settings = self.settings
        if self.is_private(raw_path):
            return parse_path(raw_path, media_url=settings.media_url, derived_prefix=PRIVATE_DERIVED_PREFIX), None
        signed_format = None
        if auto.is_auto(raw_path):
            raw_path, signed_format = auto.concrete_path(raw_path, auto.choose_format(accept)), auto.AUTO
        return parse_path(raw_path, media_url=settings.media_url, derived_prefix=settings.derived_prefix), signed_format

    def is_private(self, raw_path: str) -> bool:
        """Whether a request path names a private derivative."""
        return raw_path.startswith(self.settings.media_url + PRIVATE_DERIVED_PREFIX)

    def authorize_path(
        self, path: DerivativePath, secrets: Sequence[str] | None = None, *, signed_format: str | None = None
    ) -> DerivativeSpec:
        """Verify a parsed path (with ``secrets``, ``SECRETS`` by default) and check its spec against the settings;
        the spec it stands for.

        Raises:
            BadSignatureError, MalformedPathError, PolicyError: the path is refused.
        """
        verify(path, self.settings.secrets if secrets is None else secrets, signed_format=signed_format)
        return self.check_spec(path.spec)

    def check_spec(self, spec_text: str) -> DerivativeSpec:
        """The spec a spec text stands for (a preset's or its own), if the settings allow it now: the check of a
        verified path, and of a derivative found in storage (which a validly signed request made).

        Raises:
            MalformedPathError, PolicyError: the spec is refused.
        """
        settings = self.settings
        spec = resolve_spec(spec_text, settings.preset_specs)
        limit = settings.max_output_dimension
        if max(spec.width or 0, spec.height or 0) > limit:
            raise PolicyError(f"derivatives are at most {limit} pixels wide and high (MAX_OUTPUT_DIMENSION)")

        def check_listed(name: str, value: int | None, allowed: frozenset[int], setting: str) -> None:
            if allowed and value is not None and value not in allowed:
                listed = ", ".join(str(item) for item in sorted(allowed))
                raise PolicyError(f"{name} {value} is not one of the {setting} ({listed})")

        # Presets are the operator's own and few; every other spec is bounded by the configured lists, so a leaked
        # secret (or a page that signs what it is shown) cannot make unboundedly many distinct derivatives.
        if not is_preset_name(spec_text):
            if settings.widths:
                if spec.full_size:
                    raise PolicyError("full-size derivatives need a preset when allowed widths are set")
                side, name = (spec.width, "width") if spec.width is not None else (spec.height, "height")
                check_listed(name, side, settings.widths, "allowed widths")
            check_listed("quality", spec.quality, settings.qualities, "allowed qualities")
            check_listed("blur", spec.blur, settings.blurs, "allowed blurs")
        return spec

    def derive(self, raw_path: str, *, query: str = "", accept: str = "") -> Derivative:
        """The derivative a signed path names: from storage if it exists, else made now and stored. ``query`` and
        ``accept`` are the request's, for private and ``.auto`` paths (see :meth:`authorize`).

        Raises:
            SidecarError: a subclass naming why it cannot be answered (400, 403, 404, 422, 502, 504).
        """
        path, spec = self.authorize(raw_path, query=query, accept=accept)
        return self._stored_or_made(path, spec, self.storage.get, private=self.is_private(raw_path))

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

    def render(self, derivative: DerivativePath | StoredDerivative, spec: DerivativeSpec) -> Made:
        """Read the original of an authorized derivative and render ``spec`` of it.

        Raises:
            NotFoundError: no original at the path's key.
            SourceTooLargeError, UnsupportedImageError, UndecodableImageError: the original cannot be rendered.
            TransformTimeoutError: the transform ran out of time.
            StorageError: the original could not be read.
        """
        ORIGINAL_READS.inc()
        try:
            original = self.storage.get_versioned(derivative.key, max_bytes=self.limits.max_source_bytes)
        except SourceTooLargeError as error:
            raise SourceTooLargeError(f"{error.detail} (MAX_SOURCE_BYTES)") from None
        if original is None:
            raise NotFoundError(f"no original at {derivative.key!r}")
        started = time.perf_counter()
        info = imaging.probe(original.data, self.limits)
        faces = self._faces(spec, derivative.key, original.data, original.version, info)
        rendered = imaging.render(original.data, spec, derivative.fmt, self.limits, info, faces)
        made_with = recipe.record(spec, derivative.fmt, self.limits, info.decoder, original.version)
        return Made(rendered, time.perf_counter() - started, original.version, made_with)

    def _faces(
        self, spec: DerivativeSpec, key: str, data: bytes, version: str, info: imaging.SourceInfo
    ) -> tuple[imaging.FaceBox, ...]:
        """The faces a fill with the gravity "face" is placed around, found once per version of the original; none
        for any other spec, which never looks for them.

        Raises:
            OverloadedError: a concurrent miss kept finding them for longer than a transform may take.
        """
        if spec.gravity != "face":
            return ()
        # Concurrent first misses of crops of one original wait for one detection and read what it stored.
        with self.locks.flight(faces_key(key), self.settings.transform_timeout):
            return self.faces.of(key, data, version, info)

    def storage_key(self, path: DerivativePath, *, private: bool = False) -> str:
        """Where the derivative a path names is stored (a ``private`` one under the private derivatives' prefix):
        without the signature, or with it where storage keys carry it (``Settings.signed_storage_keys``)."""
        prefix = PRIVATE_DERIVED_PREFIX if private else self.settings.derived_prefix
        return path.signed_storage_key(prefix) if self.settings.signed_storage_keys else path.storage_key(prefix)

    def stored_derivative(self, storage_key: str, prefix: str) -> StoredDerivative:
        """The derivative stored at ``storage_key`` under ``prefix``, read in the layout :meth:`storage_key` writes.

        Raises:
            MalformedPathError: not a derivative's storage key in that layout.
        """
        if self.settings.signed_storage_keys:
            return parse_signed_storage_key(storage_key, prefix).stored
        return parse_storage_key(storage_key, prefix)

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
        *,
        private: bool = False,
    ) -> Derivative:
        """The derivative as ``find`` gets it from storage (``None``: not stored), else made, stored and answered;
        a ``private`` one under the private derivatives' prefix.

        Raises:
            OverloadedError: a concurrent miss for it, or other transforms, kept this one waiting too long.
            SidecarError: as :meth:`derive`.
        """
        storage_key = self.storage_key(path, private=private)
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

    def _make(self, path: DerivativePath, spec: DerivativeSpec, storage_key: str, source: Source | None) -> Derivative:
        # The slot bounds the memory and CPU of originals held and decoded at once, so it covers the read too; the
        # original (tens of megabytes, perhaps) is released when render() returns, before the upload.
        with self.locks.transform_slot(self.settings.overload_wait):
            if source is None:
                made = self.render(path, spec)
            else:
                faces = self._faces(spec, path.key, source.data, source.version, source.info)
                made = source.render(spec, path.fmt, self.limits, faces)
        rendered, seconds = made.rendered, made.seconds
        content_type = rendered.content_type
        try:
            written = self.storage.put_if_absent(
                storage_key,
                rendered.body,
                *write_headers("derivative", self.settings, rendered.content_type),
                metadata=made.recipe,
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
