"""The media library's use cases, free of HTTP: store, activate, list, describe, share, archive and delete
originals, and the derivatives that go with them.

The media API (``resize_sidecar.web.api``) parses a request, calls one of these and shapes the answer; the
operator's commands call the same ones. They return values and raise :class:`~resize_sidecar.core.errors.SidecarError`.
Every decode of an original takes one of the machine's transform slots, from the one :class:`Deriver` of the process,
and every derivative is made by the Deriver's own make-and-store, as a miss makes it.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from resize_sidecar.core.errors import (
    BadRequestError,
    BadSignatureError,
    ConflictError,
    MalformedPathError,
    NotFoundError,
    PayloadTooLargeError,
    PolicyError,
    SidecarError,
    SourceTooLargeError,
    StorageConflictError,
    StorageError,
    UnsupportedImageError,
    UnsupportedMediaTypeError,
)
from resize_sidecar.core.formats import CONTENT_TYPES, DEFAULT_FORMAT, ORIGINAL_TYPES, FormatName, format_of_key
from resize_sidecar.core.objects import write_headers
from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import (
    MAX_KEY_BYTES,
    PRIVATE_PREFIX,
    DerivativePath,
    derivatives_prefix,
    format_path,
    resolve_spec,
    sign,
    validate_key,
)
from resize_sidecar.core.urls import MediaURLs
from resize_sidecar.media import imaging, originals
from resize_sidecar.media.archives import zip_stream
from resize_sidecar.media.derive import Deriver, Source
from resize_sidecar.media.faces import faces_key
from resize_sidecar.media.storage import Storage, StoredObject, delete_derivatives

#: Attempts at a free random key before giving up (a collision of 128 random bits is not expected, ever).
_KEY_ATTEMPTS = 3
_RANDOM_BYTES = 16
#: Listing: objects listed per storage request, and objects looked at per page (a filter that matches little ends
#: the page early with a cursor, rather than scanning a large bucket in one request).
LIST_MAX = 1000
_SCAN_BUDGET = 5000
_MATCH_MAX_CHARACTERS = 256
#: Sorts after every key that starts with a given prefix: listing from prefix + this skips the whole area.
_AFTER_EVERY_KEY = "\U0010ffff"


def store_original(settings: Settings, storage: Storage, key: str, data: bytes, content_type: str) -> None:
    """Store ``data`` as the original at ``key``, replacing what is there, then delete the derivatives of the picture
    it replaces.

    In this order: a miss that makes a derivative of the old picture meanwhile finds it replaced when it checks its
    source (:meth:`Deriver.confirm_source`), and deletes what it stored.

    Raises:
        StorageError, StorageTimeoutError, MalformedPathError: as :meth:`Storage.put`.
    """
    storage.put(key, data, *write_headers("original", settings, content_type))
    delete_derivatives(storage, key, settings.derived_prefix)


@dataclass(frozen=True)
class Upload:
    """An original stored under the incoming prefix, with its presets made."""

    key: str  #: where activation moves it
    incoming_key: str
    original: originals.Original
    urls: dict[str, str]  #: the presets' public URLs, by preset name


@dataclass(frozen=True)
class Activation:
    key: str
    activated: bool  #: False: it was activated before
    moved_derivatives: int
    urls: dict[str, str]


@dataclass(frozen=True)
class Page:
    """One page of a listing: originals in key order, and the cursor to the next page (``None``: the last)."""

    items: list[StoredObject]
    cursor: str | None


@dataclass(frozen=True)
class Meta:
    description: originals.Description
    size: int  #: bytes


@dataclass(frozen=True)
class TemporaryAccess:
    """Access to an original until ``expires`` (Unix seconds): storage's own presigned URL, or this app's signature."""

    expires: int
    presigned_url: str | None
    signature: str | None


@dataclass(frozen=True)
class SharedFile:
    """An original read through a temporary signature; ``content_type`` is None when it is no image we would store."""

    data: bytes
    content_type: str | None
    remaining: int  #: seconds until the signature expires


@dataclass(frozen=True)
class Deletion:
    key: str
    deleted_original: bool
    deleted_derivatives: int


class MediaLibrary:
    """The use cases over one storage, deciding with the process's one :class:`Deriver`."""

    def __init__(self, settings: Settings, storage: Storage, deriver: Deriver) -> None:
        self.settings = settings
        self.storage = storage
        self.deriver = deriver

    # Uploads

    def check_chosen_key(self, key: str) -> None:
        """Refuse a key an upload asks for before its body is read.

        Raises:
            PolicyError: choosing keys is not allowed.
            MalformedPathError: the key breaks the URL contract, or could not hold an upload.
        """
        if not self.settings.upload_custom_keys:
            raise PolicyError("choosing a key is not allowed (UPLOAD_CUSTOM_KEYS)")
        validate_key(key, self.settings.derived_prefix)
        if key.startswith(self.settings.incoming_prefix):
            raise MalformedPathError(f"a key may not start with {self.settings.incoming_prefix!r}")

    def upload(self, data: bytes, chosen_key: str | None) -> Upload:
        """Check, decode in full and store an uploaded original under the incoming prefix, with its presets.

        ``chosen_key`` is checked by :meth:`check_chosen_key` first; without it a random key is chosen. Nothing
        partial stays behind: when a preset cannot be made, the original goes with what was stored.

        Raises:
            UnsupportedMediaTypeError, PayloadTooLargeError, UndecodableImageError: the upload is no image we take.
            MalformedPathError: the chosen key's extension does not fit the image's format.
            ConflictError: the chosen key is taken.
            SidecarError: a preset could not be made.
        """
        # Decoding an upload in full costs what a transform does: it waits for one of the machine's transform slots.
        with self.deriver.transform_slot():
            original = self._prepare(data)
        del data  # the upload can be tens of megabytes: from now on only what is stored is kept
        if chosen_key is not None and format_of_key(chosen_key) != original.fmt:
            raise MalformedPathError(f"the key's extension does not fit the image's format ({original.fmt})")
        key = self._store_incoming(chosen_key, original)
        incoming_key = self.settings.incoming_prefix + key
        try:
            urls = self._make_presets(incoming_key, original)
        except SidecarError:
            self._remove_incoming(incoming_key)
            raise
        return Upload(key, incoming_key, original, urls)

    def activate(self, key: str) -> Activation:
        """Move an upload and its derivatives to the final key (``key`` with or without the incoming prefix).

        Idempotent: derivatives are copied first (signed anew for the final key), then the original, then the
        incoming objects are deleted, derivatives before the original, so that while the incoming original exists
        nothing is lost and a second call finishes what a first one did not.

        Raises:
            MalformedPathError: the final key breaks the URL contract.
            NotFoundError: neither an upload nor an image at the key.
            ConflictError: another image is stored at the final key.
            StorageConflictError: local storage cannot hold the final key beside what it holds (nothing is moved).
        """
        final_key = key.removeprefix(self.settings.incoming_prefix)
        validate_key(final_key, self.settings.derived_prefix)
        incoming_key = self.settings.incoming_prefix + final_key
        data = self.storage.get(incoming_key, max_bytes=self.settings.max_source_bytes)
        if data is None:
            if not self.storage.exists(final_key):
                raise NotFoundError(f"no upload at {incoming_key!r} and no image at {final_key!r}")
            return Activation(final_key, False, 0, self._preset_urls(final_key))
        existing = self.storage.get(final_key, max_bytes=self.settings.max_source_bytes)
        if existing is not None and existing != data:
            raise ConflictError(f"another image is stored at {final_key!r}")
        moved, written = self._move_derivatives(incoming_key, final_key)
        try:
            self.storage.put_if_absent(
                final_key, data, *write_headers("original", self.settings, self.content_type(data))
            )
        except StorageConflictError:
            # Local storage cannot hold the key (a file is where it needs a folder, or a folder is at it): the
            # derivatives copied for it would belong to no original.
            for copied in written:
                self.storage.delete(copied)
            raise
        self._remove_incoming(incoming_key)
        return Activation(final_key, True, moved, self._preset_urls(final_key))

    # Reading

    def list_originals(self, prefix: str, cursor: str | None, match: str | None, limit: int) -> Page:
        """One page of originals (never derivatives) under ``prefix`` in key order, after ``cursor``.

        Raises:
            BadRequestError: a prefix of derivatives or of the program's own objects, too long a prefix or glob, or
                a cursor this library did not write.
        """
        if len(prefix.encode()) > MAX_KEY_BYTES:
            raise BadRequestError(f"prefix is longer than {MAX_KEY_BYTES} bytes")
        if prefix.startswith(self.settings.derived_prefix):
            raise BadRequestError("derivatives are not listed; list their originals")
        if prefix.startswith(PRIVATE_PREFIX):
            raise BadRequestError(f"keys under {PRIVATE_PREFIX!r} are resize-sidecar's own and are not listed")
        pattern = _glob(match)
        items, after = self._scan(prefix, _decode_cursor(cursor), pattern, limit)
        return Page(items, None if after is None else _encode_cursor(after))

    def meta(self, key: str, *, gps: bool) -> Meta:
        """What the original at ``key`` is, with a BlurHash; its GPS location only when ``gps`` is set.

        Raises:
            NotFoundError: no original at the key.
            UnsupportedImageError, UndecodableImageError, SourceTooLargeError: it cannot be described.
        """
        # The BlurHash decodes the original: a transform slot bounds it, and the original held, as on a miss.
        with self.deriver.transform_slot():
            data = self.original(key)
            return Meta(originals.describe(data, self.settings.image_limits, gps=gps), len(data))

    def private_derivative_url(self, key: str, derivative: str, seconds: int) -> tuple[str, int]:
        """The URL of a private derivative of the original at ``key`` (``derivative`` is ``{spec}.{format}``, the spec
        written out or a preset's name) that works for ``seconds``, and when it expires (Unix seconds).

        Raises:
            BadRequestError: ``derivative`` names no derivative.
            PolicyError: a side over ``MAX_OUTPUT_DIMENSION``.
            NotFoundError: no original at the key.
        """
        validate_key(key, self.settings.derived_prefix)
        spec, dot, fmt = derivative.rpartition(".")
        expires = int(time.time()) + seconds
        try:
            if not (dot and spec):
                raise MalformedPathError("expected {spec}.{format}, e.g. 400x300-fill.webp")
            url = MediaURLs(self.settings).private_url(key, spec, fmt, expires)
        except MalformedPathError as error:
            raise BadRequestError(f"derivative: {error.detail}") from None
        if not self.storage.exists(key):
            raise NotFoundError(f"no original at {key!r}")
        return url, expires

    def temporary_access(self, key: str, seconds: int) -> TemporaryAccess:
        """Access to the original at ``key`` without the secret, for ``seconds``.

        Raises:
            NotFoundError: no original at the key.
        """
        if not self.storage.exists(key):
            raise NotFoundError(f"no original at {key!r}")
        expires = int(time.time()) + seconds
        presigned = self.storage.presigned_url(key, seconds)
        if presigned is not None:
            return TemporaryAccess(expires, presigned, None)
        return TemporaryAccess(expires, None, _file_signature(key, expires, self.settings.secrets[0]))

    def shared_file(self, key: str, expires: int, signature: str) -> SharedFile:
        """The original a temporary signature gives access to.

        Raises:
            BadSignatureError: a missing, wrong or expired signature.
            NotFoundError: no original at the key.
        """
        offered = signature.encode("ascii", "replace")
        valid = False
        for secret in self.settings.secrets:
            valid |= hmac.compare_digest(_file_signature(key, expires, secret).encode(), offered)
        remaining = expires - int(time.time())
        if not valid or remaining <= 0:
            raise BadSignatureError("the temporary URL is not valid or has expired")
        data = self.original(key)
        try:
            content_type: str | None = self.content_type(data)
        except SidecarError:
            content_type = None
        # Served as a page of this origin only as an image type a browser shows; a TIFF, say, is a download.
        return SharedFile(data, content_type if content_type in ORIGINAL_TYPES else None, remaining)

    def content_type(self, data: bytes) -> str:
        """The Content-Type of an original, from its bytes.

        Raises:
            UnsupportedImageError, UndecodableImageError, SourceTooLargeError: as :func:`imaging.probe`.
        """
        return imaging.original_type(data, imaging.probe(data, self.settings.image_limits))

    def original(self, key: str) -> bytes:
        """Raises: NotFoundError: no original at the key."""
        data = self.storage.get(key, max_bytes=self.settings.max_source_bytes)
        if data is None:
            raise NotFoundError(f"no original at {key!r}")
        return data

    # Archives

    def archive_matching(self, match: str, prefix: str) -> list[tuple[str, int]]:
        """The originals under ``prefix`` that the glob ``match`` selects, with their sizes, for an archive.

        Raises:
            BadRequestError: too long a glob.
            NotFoundError: none matches.
            PolicyError: more than ``archive_max_files`` match.
        """
        cap = self.settings.archive_max_files
        items, more = self._scan(prefix, "", _glob(match), cap + 1)
        if len(items) > cap or more is not None:
            raise PolicyError(f"more than {cap} images match; an archive holds at most {cap} (ARCHIVE_MAX_FILES)")
        if not items:
            raise NotFoundError("no image matches")
        return [(item.key, item.size) for item in items]

    def archive_named(self, named: list[str]) -> list[tuple[str, int]]:
        """The originals ``named`` (each once), with their sizes, for an archive.

        Raises:
            MalformedPathError: a key breaks the URL contract.
            NotFoundError: an original does not exist.
            PolicyError: more than ``archive_max_files``.
        """
        cap = self.settings.archive_max_files
        names = list(dict.fromkeys(named))
        if len(names) > cap:
            raise PolicyError(f"{len(names)} images asked for; an archive holds at most {cap} (ARCHIVE_MAX_FILES)")
        found = []
        for name in names:
            validate_key(name, self.settings.derived_prefix)
            listed = self.storage.list(name, limit=1)
            if not listed or listed[0].key != name:
                raise NotFoundError(f"no original at {name!r}")
            found.append((name, listed[0].size))
        return found

    def archive(self, members: list[tuple[str, int]], spec: str | None, fmt: str | None) -> Iterator[bytes]:
        """A zip of the originals, or of one derivative of each (``spec``, ``fmt``), made as it is read.

        Raises (before the first byte):
            PolicyError: the originals add up to more than ``archive_max_bytes``; a spec the settings refuse.
            MalformedPathError, BadSignatureError: a bad spec or format.
        """
        limit = self.settings.archive_max_bytes
        entries: list[tuple[str, Callable[[], bytes]]]
        if spec is None and fmt is None:
            # Originals' sizes are known: refuse now rather than send a zip cut short. Derivatives' sizes are
            # known once made, and the stream leaves out what does not fit.
            total = sum(size for _, size in members)
            if total > limit:
                raise PolicyError(
                    f"the originals add up to {total} bytes, over the limit of {limit} (ARCHIVE_MAX_BYTES)"
                )
            entries = [(name, self._loader_of_original(name)) for name, _ in members]
        else:
            # A format alone converts the whole picture; a spec alone makes JPEGs.
            spec, fmt = spec or "0x0", fmt or "jpg"
            paths = [(name, self._public_path(name, spec, fmt)) for name, _ in members]
            # Refuse a bad spec, format or size now, while an error can still be an HTTP status.
            self.deriver.authorize(paths[0][1])
            entries = [(f"{name}.{spec}.{fmt}", self._loader_of_derivative(path)) for name, path in paths]
        return zip_stream(entries, limit)

    # Deleting

    def delete(self, key: str) -> Deletion:
        """Delete an original, first, then its derivatives (see :meth:`Deriver.confirm_source` for a miss that runs
        meanwhile) and the faces found in it; a folder's name is no original, and deletes nothing.

        Raises:
            NotFoundError: neither an original nor a derivative of one at the key.
        """
        existed = self.storage.exists(key)
        self.storage.delete(key)
        derivatives = delete_derivatives(self.storage, key, self.settings.derived_prefix)
        self.storage.delete(faces_key(key))
        if not existed and not derivatives:
            raise NotFoundError(f"no original at {key!r}")
        return Deletion(key, existed, derivatives)

    # Steps

    def _prepare(self, data: bytes) -> originals.Original:
        """The original to store, with upload statuses: not an allowed image 415, over a limit 413."""
        try:
            settings = self.settings
            return originals.prepare_original(
                data,
                settings.image_limits,
                auto_orient=settings.auto_orient_original,
                strip_gps=settings.strip_original_gps,
            )
        except UnsupportedImageError as error:
            raise UnsupportedMediaTypeError(error.detail) from None
        except SourceTooLargeError as error:
            raise PayloadTooLargeError(error.detail) from None

    def _store_incoming(self, chosen_key: str | None, original: originals.Original) -> str:
        """Store the original under the incoming prefix at a free key, and return its final key.

        Raises:
            ConflictError: the chosen key is taken (by an upload or an active image).
        """
        for _ in range(_KEY_ATTEMPTS):
            key = chosen_key or self._random_key(original.fmt)
            free = not self.storage.exists(key) and self.storage.put_if_absent(
                self.settings.incoming_prefix + key,
                original.body,
                *write_headers("incoming", self.settings, original.content_type),
            )
            if free:
                return key
            if chosen_key is not None:
                raise ConflictError(f"an image is already stored at {chosen_key!r}")
        raise ConflictError("no free random key was found; try again")

    def _random_key(self, fmt: str) -> str:
        now = datetime.now(UTC)
        # A CSPRNG: keys are the only thing between an upload and a stranger guessing its URL.
        token = secrets.token_urlsafe(_RANDOM_BYTES)
        return f"{self.settings.upload_prefix}{now:%Y}/{now:%m}/{token}.{fmt}"

    def _make_presets(self, key: str, original: originals.Original) -> dict[str, str]:
        """Make and store each configured preset of the original just stored at ``key``, as a miss would; their
        public URLs by preset name.

        The original is in hand, so it is probed once and not read again; the Deriver makes and stores each preset
        with the flight lock and transform slot of a miss, and checks the original is still the one stored.

        Raises:
            NotFoundError: the original was deleted meanwhile.
            StorageError: a preset could not be stored.
            SidecarError: a preset could not be made.
        """
        version = self.storage.version(key)
        if version is None:
            raise NotFoundError(f"the upload {key!r} was deleted while its presets were made")
        source = Source(original.body, version, imaging.probe(original.body, self.settings.image_limits))
        urls = {}
        for name in self.settings.presets:
            # Settings refuse presets over the output cap, and presets are exempt from ALLOWED_WIDTHS.
            path = self._signed(key, name, original.fmt)
            derivative = self.deriver.derive_from(source, path, resolve_spec(name, self.settings.preset_specs))
            if not derivative.stored:
                raise StorageError(f"the preset {name!r} of {key!r} could not be stored")
            urls[name] = self._public_url(path)
        return urls

    def _move_derivatives(self, incoming_key: str, final_key: str) -> tuple[int, list[str]]:
        """Copy every derivative of the incoming original to the final key; how many, and the keys written (those
        not already there)."""
        derived_prefix = self.settings.derived_prefix
        moved, written = 0, []
        for item in self._all_objects(derivatives_prefix(incoming_key, derived_prefix)):
            try:
                found = self.deriver.stored_derivative(item.key, derived_prefix)
            except MalformedPathError:
                continue  # not a derivative's name: the incoming folder goes anyway
            data = self.storage.get(item.key) if found.key == incoming_key else None
            if data is None:
                continue  # another original's derivative, or deleted meanwhile
            # Where storage keys carry the signature, it covers the key: the final key's is a new one.
            moving = self._signed(final_key, found.spec, found.fmt)
            headers = write_headers("derivative", self.settings, CONTENT_TYPES[moving.fmt])
            # What made it goes with it, so regenerate finds it current where storage versions an original by its
            # bytes (S3's ETag); where it does not (a local file's inode), it is rendered once more.
            recorded = self.storage.head(item.key)
            storage_key = self.deriver.storage_key(moving)
            if self.storage.put_if_absent(storage_key, data, *headers, metadata=recorded):
                written.append(storage_key)
            moved += 1
        return moved, written

    def _preset_urls(self, key: str) -> dict[str, str]:
        # Uploads are stored in the format their key's extension names.
        fmt = format_of_key(key) or DEFAULT_FORMAT
        return {name: self._public_url(self._signed(key, name, fmt)) for name in self.settings.presets}

    def _remove_incoming(self, key: str) -> None:
        """Delete an incoming original's derivatives and the faces found in it, then the original: while it exists, a
        retried activation finishes the work. (A delete of an activated image goes the other way round: see
        :meth:`delete`.)"""
        delete_derivatives(self.storage, key, self.settings.derived_prefix)
        self.storage.delete(faces_key(key))
        self.storage.delete(key)

    def _all_objects(self, prefix: str) -> Iterator[StoredObject]:
        start_after = ""
        while page := self.storage.list(prefix, start_after=start_after, limit=LIST_MAX):
            yield from page
            start_after = page[-1].key

    def _scan(
        self, prefix: str, start_after: str, pattern: re.Pattern[str] | None, limit: int
    ) -> tuple[list[StoredObject], str | None]:
        """Up to ``limit`` originals after ``start_after`` that match, and the key to go on after (None: the end).

        Derivatives and the program's own objects (upload manifests, the write probe) are skipped, and so are
        uploads unless the prefix asks for them, each area with one jump.
        """
        found: list[StoredObject] = []
        budget = _SCAN_BUDGET
        while budget > 0:
            asked = min(budget, LIST_MAX)
            page = self.storage.list(prefix, start_after=start_after, limit=asked)
            budget -= len(page)
            for item in page:
                start_after = item.key
                area = self._hidden_area(item.key, prefix)
                if area is not None:
                    start_after = area + _AFTER_EVERY_KEY
                    break
                if pattern is None or pattern.match(item.key):
                    found.append(item)
                    if len(found) == limit:
                        return found, start_after
            else:
                if len(page) < asked:
                    return found, None
        return found, start_after

    def _hidden_area(self, key: str, prefix: str) -> str | None:
        for never_listed in (self.settings.derived_prefix, PRIVATE_PREFIX):
            if key.startswith(never_listed):
                return never_listed
        incoming = self.settings.incoming_prefix
        if key.startswith(incoming) and not prefix.startswith(incoming):
            return incoming
        return None

    def _loader_of_original(self, key: str) -> Callable[[], bytes]:
        return lambda: self.original(key)

    def _loader_of_derivative(self, path: str) -> Callable[[], bytes]:
        return lambda: self.deriver.derive(path).body

    def _public_path(self, key: str, spec: str, fmt: str) -> str:
        """The signed public path of a derivative (a preset name or a spec).

        Raises:
            MalformedPathError: a bad spec or format.
        """
        settings = self.settings
        return format_path(
            key, spec, fmt, settings.secrets[0], media_url=settings.media_url, derived_prefix=settings.derived_prefix
        )

    def _signed(self, key: str, spec_text: str, fmt: FormatName) -> DerivativePath:
        """A derivative of ``key`` signed here: a preset's name, or a spec already in its one spelling."""
        return DerivativePath(key, spec_text, fmt, sign(key, spec_text, fmt, self.settings.secrets[0]))

    def _public_url(self, path: DerivativePath) -> str:
        settings = self.settings
        return settings.public_base_url.rstrip("/") + path.public_path(settings.media_url, settings.derived_prefix)


def _file_signature(key: str, expires: int, secret: str) -> str:
    # NUL cannot occur in a key, and never occurs in a derivative's signed text: no temporary URL's signature can
    # be taken for a derivative's, or the other way round.
    message = f"file\0{key}\0{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _glob(match: str | None) -> re.Pattern[str] | None:
    """A glob (``*``, ``?``, ``[…]``; ``*`` crosses ``/``) as a compiled pattern; never a client's own regex.

    fnmatch writes each ``*`` as an atomic group, so matching takes linear time whatever the glob.

    Raises:
        BadRequestError: a glob longer than the limit.
    """
    if match is None:
        return None
    if len(match) > _MATCH_MAX_CHARACTERS:
        raise BadRequestError(f"match is longer than {_MATCH_MAX_CHARACTERS} characters")
    return re.compile(fnmatch.translate(match))


def _encode_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> str:
    """Raises: BadRequestError: not a cursor this library wrote."""
    if not cursor:
        return ""
    try:
        return base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadRequestError("cursor is not one this API returned") from None
