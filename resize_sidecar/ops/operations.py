"""What the operator's subcommands do: upload a folder, regenerate derivatives, check a setup, set up a bucket.

Functions take settings and a storage and return plain results (:class:`Report`, :class:`Finding`,
:class:`Change`); ``cli.py`` prints them. Bulk work runs on a bounded pool of threads and stops taking new work at
the first storage failure: storage that failed once fails the rest too, each after its timeout. Every write
replaces one whole object, so an interrupted run leaves no partial object, and running it again finishes it.

Bucket configuration (public access, policy, website, lifecycle, CORS) is not part of the storage contract:
:class:`~resize_sidecar.media.s3.BucketAdmin` makes those calls.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import struct
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from resize_sidecar.core.errors import (
    BadSignatureError,
    MalformedPathError,
    NotFoundError,
    PolicyError,
    SettingsError,
    SidecarError,
    SourceChangedError,
    SourceTooLargeError,
    StorageError,
    UnsupportedImageError,
)
from resize_sidecar.core.settings import Settings
from resize_sidecar.core.formats import FORMATS, ORIGINAL_TYPES
from resize_sidecar.core.signing import (
    PRIVATE_PREFIX,
    DerivativePath,
    DerivativeSpec,
    encode_key,
    is_preset_name,
    parse_path,
    parse_spec,
    validate_key,
)
from resize_sidecar.core.urls import MediaURLs
from resize_sidecar.media import imaging
from resize_sidecar.media.derive import Deriver
from resize_sidecar.media.s3 import BucketAdmin, UnsupportedByStoreError
from resize_sidecar.media.storage import Storage, StoredObject, delete_derivatives

# The sidecar's workers render with one libvips thread (gunicorn_conf.py), and AVIF output differs with the thread
# count: regenerate compares fresh renders with stored ones byte for byte.
imaging.set_render_threads(1)

T = TypeVar("T")

FAILED = "failed"
MANIFEST = "manifest.json"
#: Upload manifests live here, under the key prefix nginx never serves: they list every original and signed URL.
MANIFEST_PREFIX = PRIVATE_PREFIX + "upload/"
#: Objects asked for per storage listing while regenerating.
_PAGE = 1000
#: An upload saves its manifest this often, so an interrupted run resumes where it was.
_CHECKPOINT_SECONDS = 30.0
_HEIF_AVIF_BRANDS = (b"avif", b"avis")
# A 16x16 HEIC of one colour, written by libheif with x265 (pillow-heif): nothing here can write one.
_HEIC_SAMPLE = base64.b64decode(
    "AAAAHGZ0eXBoZWljAAAAAG1pZjFoZWljbWlhZgAAAXxtZXRhAAAAAAAAACFoZGxyAAAAAAAAAABwaWN0AAAAAAAAAAAAAAAAAAAAACJpbG9j"
    "AAAAAERAAAEAAQAAAAABoAABAAAAAAAAACYAAAAjaWluZgAAAAAAAQAAABVpbmZlAgAAAAABAABodmMxAAAAAA5waXRtAAAAAAABAAAA/Glw"
    "cnAAAADcaXBjbwAAAHVodmNDAQNwAAAAkAAAAAAAHvAA/P34+AAADwNgAAEAGEABDAH//wNwAAADAJAAAAMAAAMAHroCQGEAAQApQgEBA3AA"
    "AAMAkAAAAwAAAwAeoCCBBZbqrprm4CGgwIAAAAyAAAADAIRiAAEABkQBwXPBiQAAABNjb2xybmNseAABAA0ABoAAAAAUaXNwZQAAAAAAAABA"
    "AAAAQAAAAChjbGFwAAAAEAAAAAEAAAAQAAAAAf///9AAAAAC////0AAAAAIAAAAQcGl4aQAAAAADCAgIAAAAGGlwbWEAAAAAAAAAAQABBYEC"
    "AwWEAAAALm1kYXQAAAAiKAGvBBITTOD46cJoP9Kn+SZV668n7asr40mfd7EYkqn/oA=="
)
# Originals of formats browsers do not show: stored with their own type, and served from local storage as a download.
_DOWNLOADED_TYPES: dict[str, tuple[str, ...]] = {"image/tiff": ("tif", "tiff"), "image/bmp": ("bmp",)}


@dataclass(frozen=True)
class Outcome:
    """What happened to one file or object. ``status`` is a past-tense verb (``would …`` in a dry run)."""

    item: str  #: the file, relative to the uploaded folder, or the storage key
    status: str
    detail: str = ""
    url: str = ""


@dataclass
class Report:
    """The outcomes of one bulk run; ``stopped`` is the storage failure that ended it early, if any."""

    command: str
    outcomes: list[Outcome] = field(default_factory=list)
    stopped: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.stopped and all(outcome.status != FAILED for outcome in self.outcomes)

    def counts(self) -> dict[str, int]:
        """How many items ended in each status, failures last."""
        counts = Counter(outcome.status for outcome in self.outcomes)
        return dict(sorted(counts.items(), key=lambda pair: (pair[0] == FAILED, pair[0])))

    def summary(self) -> str:
        counts = ", ".join(f"{number} {status}" for status, number in self.counts().items()) or "nothing to do"
        stopped = f"; stopped: {self.stopped}; run it again to finish" if self.stopped else ""
        return f"{self.command}: {counts}{stopped}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "ok": self.ok,
            "counts": self.counts(),
            "stopped": self.stopped or None,
            "notes": self.notes,
            "items": [asdict(outcome) for outcome in self.outcomes],
        }


class Progress(Protocol):
    """Told how much work there is (``None``: unknown) and of each outcome, in the calling thread."""

    def start(self, total: int | None) -> None: ...

    def done(self, outcome: Outcome) -> None: ...


class Silent:
    """A :class:`Progress` that shows nothing."""

    def start(self, total: int | None) -> None:
        pass

    def done(self, outcome: Outcome) -> None:
        pass


def _run(
    report: Report,
    items: Iterable[T],
    work: Callable[[T], Outcome | None],
    jobs: int,
    progress: Progress,
    on_done: Callable[[], None] = lambda: None,
) -> None:
    """Run ``work`` over ``items`` on ``jobs`` threads, adding its outcomes (``None``: nothing to report) to ``report``.

    At most ``2 * jobs`` items are taken ahead of the work, so a listing is read as the work goes and only that
    many files are read into memory at once. The first :class:`StorageError`, from the work or from ``items``, stops the
    run: items already started finish, those not started are dropped, and ``report.stopped`` says why. On an
    interrupt, running items finish too (each write is whole).
    """
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="resize-sidecar")

    def collect(futures: Iterable[Future[Outcome | None]]) -> None:
        for future in futures:
            if future.cancelled():
                continue
            try:
                outcome = future.result()
            except StorageError as error:
                report.stopped = report.stopped or error.detail
                for waiting in pending:
                    waiting.cancel()  # only those not started: each would wait for its own timeout
                continue
            if outcome is not None:
                report.outcomes.append(outcome)
                progress.done(outcome)
        on_done()

    pending: set[Future[Outcome | None]] = set()
    try:
        iterator = iter(items)
        while not report.stopped:
            try:
                item = next(iterator)
            except StopIteration:
                break
            except StorageError as error:
                report.stopped = error.detail
                break
            pending.add(pool.submit(work, item))
            if len(pending) >= 2 * jobs:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                collect(finished)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            collect(finished)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# Upload


@dataclass(frozen=True)
class _Entry:
    """A manifest row as stored; its URLs are made from the settings whenever the manifest is written."""

    key: str
    size: int
    md5: str
    width: int
    height: int
    content_type: str


class _Uploader:
    """One upload run: the manifest read at the start, the entries of this run, and the manifest's last bytes."""

    def __init__(self, settings: Settings, storage: Storage, directory: Path, dest: str, *, dry_run: bool) -> None:
        self.settings = settings
        self.storage = storage
        self.directory = directory
        self.dest = dest
        self.dry_run = dry_run
        self.urls = MediaURLs(settings)
        self.deriver = Deriver(settings, storage)
        self.manifest_key = MANIFEST_PREFIX + dest + MANIFEST
        #: Where earlier versions kept the manifest, among the originals (and so public): moved on the first save.
        self.public_key = dest + MANIFEST
        self.move_public = False
        self.lock = threading.Lock()
        self.entries: dict[str, _Entry] = {}
        self.saved: bytes | None = None
        self.saved_at = time.monotonic()

    def read_manifest(self, notes: list[str]) -> None:
        self.saved = self.storage.get(self.manifest_key)
        if self.saved is not None:
            if not self.load(self.saved):
                notes.append(f"{self.manifest_key} is not a manifest this program wrote: every file is uploaded again")
            return
        public = self.storage.get(self.public_key)
        # Only a manifest of this prefix is moved: an object of another kind at that key is an original, left alone.
        if public is not None and self.load(public):
            self.move_public = True
            notes.append(f"{self.public_key} was public: it moves to {self.manifest_key}")

    def load(self, data: bytes) -> bool:
        """Take the entries of a manifest this program wrote for this prefix; whether ``data`` was one."""
        try:
            manifest = json.loads(data)
            rows = manifest["files"]
            entries = {row["key"]: _Entry(**{name: row[name] for name in _Entry.__annotations__}) for row in rows}
        except (ValueError, KeyError, TypeError):
            return False
        if manifest.get("prefix") != self.dest:
            return False
        self.entries = entries
        return True

    def upload(self, path: Path) -> Outcome:
        relative = path.relative_to(self.directory).as_posix()
        key = self.dest + relative
        try:
            validate_key(key, self.settings.derived_prefix)
            data = _read_file(path, self.settings.max_source_bytes)
            info = imaging.probe(data, self.settings)
            content_type = _content_type(info.loader, data)
            _check_extension(path.name, content_type)
        except OSError as error:
            return Outcome(relative, FAILED, f"cannot read it: {error.strerror or error}")
        except StorageError:
            raise
        except SidecarError as error:
            return Outcome(relative, FAILED, error.detail)
        width, height = (info.height, info.width) if info.orientation >= 5 else (info.width, info.height)
        entry = _Entry(
            key, len(data), hashlib.md5(data, usedforsecurity=False).hexdigest(), width, height, content_type
        )
        with self.lock:
            known = self.entries.get(key)
        url = self.urls.url(key)
        if known is not None and (known.md5, known.size) == (entry.md5, entry.size) and self.storage.exists(key):
            status = "unchanged"
        elif (failure := self.unrenderable(data, info)) is not None:
            return Outcome(relative, FAILED, failure)
        elif self.dry_run:
            status = "would upload"
        else:
            self.storage.put(key, data, entry.content_type, self.settings.originals_cache_control)
            # Derivatives of the picture this one replaces (after it, see Deriver.confirm_source).
            delete_derivatives(self.storage, key, self.settings.derived_prefix)
            status = "uploaded"
        with self.lock:
            self.entries[key] = entry
        return Outcome(relative, status, url=url)

    def unrenderable(self, data: bytes, info: imaging.SourceInfo) -> str | None:
        """Why the sidecar could not render a file, found by decoding every pixel of it as a miss or an API upload
        would, in one of the machine's transform slots; None when it decodes."""
        settings = self.settings
        try:
            # A batch shares the slots with the sidecar's misses, and may wait a whole transform for one.
            with self.deriver.transform_slot(settings.transform_timeout + settings.overload_wait):
                imaging.decode_all(data, info, settings)
        except SidecarError as error:
            return error.detail
        return None

    def manifest(self) -> bytes:
        presets = sorted(self.settings.presets)
        rows = [
            {
                **asdict(entry),
                "url": self.urls.url(entry.key),
                "derivatives": {name: self.urls.derivative(entry.key, preset=name) for name in presets},
            }
            for entry in sorted(self.entries.values(), key=lambda entry: entry.key)
        ]
        return (json.dumps({"prefix": self.dest, "files": rows}, ensure_ascii=False, indent=2) + "\n").encode()

    def save(self) -> bool:
        """Write the manifest if it changed (one whole object); whether it was written."""
        data = self.manifest()
        if self.dry_run or data == self.saved:
            return False
        # Apps and scripts read the manifest to find what was uploaded: it must never be served stale.
        self.storage.put(self.manifest_key, data, "application/json", "no-cache")
        self.saved, self.saved_at = data, time.monotonic()
        if self.move_public:
            self.storage.delete(self.public_key)
            self.move_public = False
        return True

    def checkpoint(self) -> None:
        if time.monotonic() - self.saved_at >= _CHECKPOINT_SECONDS:
            self.save()


def _check_extension(name: str, content_type: str) -> None:
    """An original is served with the type its extension names (local storage): it must be its sniffed type's.

    Raises:
        UnsupportedImageError: naming the extensions the file could have.
    """
    extensions = ORIGINAL_TYPES.get(content_type) or _DOWNLOADED_TYPES[content_type]
    if name.rpartition(".")[2].lower() not in extensions or "." not in name:
        expected = ", ".join(f".{extension}" for extension in extensions)
        raise UnsupportedImageError(f"it is {content_type}, and its name must end in {expected} to be served as one")


def upload(
    settings: Settings,
    storage: Storage,
    directory: Path,
    *,
    dest: str = "",
    jobs: int = 4,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> Report:
    """Upload the images under ``directory`` to keys ``{dest}{path under directory}``, and write their manifest.

    Images are recognised by their content (:func:`imaging.probe`), and only formats the sidecar accepts as
    originals (``ALLOWED_LOADERS``) are uploaded, with the type sniffed from their bytes, and only under a name whose
    extension is one of that type's (nginx serves local originals by extension). A file whose MD5 and size the
    manifest already has, and whose object exists, is unchanged and not uploaded again. Files that cannot be read, are
    not such images, are misnamed, or whose path is not a valid key are reported as failed; the others are uploaded
    all the same. Hidden files and folders (names starting with ``.``) are left out. The manifest, at
    ``.resize-sidecar/upload/{dest}manifest.json`` (never served), lists every uploaded file with its size, MD5,
    upright width and height, public URL and the signed URLs of the presets; it is saved at the end, every 30
    seconds, and when interrupted. A manifest that an earlier version left at ``{dest}manifest.json`` is read, and
    moved there on the first save.

    Raises:
        SettingsError: ``directory`` is not a folder, or ``dest`` is not a key prefix.
        MalformedPathError: no secret to sign the manifest's URLs with.
        StorageError: storage fails at the start, or when the manifest is read or written.
    """
    progress = progress or Silent()
    if not directory.is_dir():
        raise SettingsError(f"DIR: {str(directory)!r} is not a folder")
    if dest and not dest.endswith("/"):
        dest += "/"
    try:
        validate_key(dest + "x", settings.derived_prefix)  # a prefix is valid when the keys under it are
    except MalformedPathError as error:
        raise SettingsError(f"--dest: {dest!r} is not a key prefix: {error.detail}") from None
    report = Report("upload")
    storage.check()
    uploader = _Uploader(settings, storage, directory, dest, dry_run=dry_run)
    uploader.read_manifest(report.notes)
    files, unlisted = _files(directory)
    report.outcomes.extend(unlisted)
    progress.start(len(files))
    try:
        _run(report, files, uploader.upload, jobs, progress, on_done=uploader.checkpoint)
    except KeyboardInterrupt:
        uploader.save()
        raise
    if not report.stopped and uploader.save():
        report.notes.append(f"wrote {uploader.manifest_key}")
    return report


def _files(directory: Path) -> tuple[list[Path], list[Outcome]]:
    """The files under ``directory`` in path order, and an outcome for each folder that could not be listed."""
    found: list[Path] = []
    unlisted: list[Outcome] = []

    def unreadable(error: OSError) -> None:
        folder = Path(error.filename or directory).relative_to(directory).as_posix()
        unlisted.append(Outcome(folder, FAILED, f"cannot list it: {error.strerror}"))

    for folder, folders, names in os.walk(directory, onerror=unreadable):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        found.extend(Path(folder, name) for name in sorted(names) if not name.startswith("."))
    return found, unlisted


def _read_file(path: Path, max_bytes: int) -> bytes:
    # stat first: opening a named pipe would wait for a writer.
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise OSError(f"{path.name} is not a regular file")
    if info.st_size > max_bytes:
        raise SourceTooLargeError(f"{info.st_size} bytes is over MAX_SOURCE_BYTES ({max_bytes})")
    return path.read_bytes()


def _content_type(loader: str, data: bytes) -> str:
    if loader == "heifload":
        # One loader reads both HEIF kinds; the ISO-BMFF ftyp box names which (offset 8, the major brand).
        return "image/avif" if data[8:12] in _HEIF_AVIF_BRANDS else "image/heic"
    return {
        "pngload": "image/png",
        "webpload": "image/webp",
        "gifload": "image/gif",
        "tiffload": "image/tiff",
        "bmpload": "image/bmp",
    }.get(loader, "image/jpeg")


# Regenerate


@dataclass(frozen=True)
class Selection:
    """Which derivatives to regenerate: of one spec text (a preset name or a spec), of one format, or all."""

    spec: str | None = None
    fmt: str | None = None

    @classmethod
    def of(
        cls, spec_and_format: str | None = None, preset: str | None = None, *, presets: Collection[str] = ()
    ) -> Selection:
        """From ``--spec SPEC.FMT`` or ``--preset NAME``; neither selects every derivative.

        ``presets`` are the configured preset names: a name outside them selects nothing, so it is a mistake (the
        derivatives of a removed preset are found by ``--existing --delete-stale``).

        Raises:
            MalformedPathError: a spec that is not canonical, an unknown format, a name that cannot be a preset or
                is not a configured one.
        """
        if preset is not None:
            if not is_preset_name(preset):
                raise MalformedPathError(f"{preset!r} cannot be a preset name")
            return cls(spec=_known_preset(preset, presets))
        if spec_and_format is None:
            return cls()
        spec, dot, fmt = spec_and_format.rpartition(".")
        if not dot or fmt not in FORMATS:
            raise MalformedPathError(f"expected SPEC.FMT such as 400x300.webp, got {spec_and_format!r}")
        if is_preset_name(spec):
            _known_preset(spec, presets)
        else:
            parse_spec(spec)  # only the canonical spelling names stored derivatives
        return cls(spec=spec, fmt=fmt)

    def picks(self, path: DerivativePath) -> bool:
        return self.spec in (None, path.spec) and self.fmt in (None, path.fmt)


def _known_preset(name: str, presets: Collection[str]) -> str:
    if name not in presets:
        configured = ", ".join(sorted(presets)) or "none"
        raise MalformedPathError(
            f"unknown preset {name!r} (configured: {configured}); to delete the derivatives of a removed preset, "
            "run with --existing --delete-stale"
        )
    return name


class _Regenerator:
    def __init__(
        self, settings: Settings, storage: Storage, selection: Selection, *, delete: bool, dry_run: bool
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.deriver = Deriver(settings, storage)
        self.selection = selection
        self.delete = delete
        self.dry_run = dry_run

    def regenerate(self, stored: StoredObject) -> Outcome | None:
        settings = self.settings
        raw_path = settings.media_url + encode_key(stored.key)
        try:
            path = parse_path(raw_path, media_url=settings.media_url, derived_prefix=settings.derived_prefix)
        except (MalformedPathError, BadSignatureError):
            return Outcome(stored.key, "skipped", "not a derivative's key")
        if not self.selection.picks(path):
            return None
        if is_preset_name(path.spec) and path.spec not in settings.preset_specs:
            return self.stale(stored.key, f"preset {path.spec!r} no longer exists")
        try:
            _, spec = self.deriver.authorize(raw_path)
            # The machine's transform slots are shared with the sidecar's misses; a batch may wait a whole transform.
            with self.deriver.transform_slot(settings.transform_timeout + settings.overload_wait):
                made = self.deriver.render(path, spec)
        except BadSignatureError:
            return Outcome(stored.key, "skipped", "signed with none of the current secrets")
        except PolicyError as error:
            return self.stale(stored.key, error.detail)
        except NotFoundError:
            return self.stale(stored.key, "its original is gone")
        except StorageError:
            raise
        except SidecarError as error:
            return Outcome(stored.key, FAILED, error.detail)
        rendered = made.rendered
        if self.storage.get(stored.key) == rendered.body:
            return Outcome(stored.key, "current")
        if self.dry_run:
            return Outcome(stored.key, "would rebuild")
        # put, not delete and put: clients get the old bytes until the new ones are whole.
        self.storage.put(stored.key, rendered.body, rendered.content_type, settings.cache_control)
        try:
            self.deriver.confirm_source(path.key, made.source_version, stored.key)
        except (NotFoundError, SourceChangedError) as error:
            return Outcome(stored.key, "deleted", error.detail)
        return Outcome(stored.key, "rebuilt")

    def stale(self, key: str, why: str) -> Outcome:
        if not self.delete:
            return Outcome(key, "stale", why)
        if self.dry_run:
            return Outcome(key, "would delete", why)
        self.storage.delete(key)
        return Outcome(key, "deleted", why)


def regenerate(
    settings: Settings,
    storage: Storage,
    *,
    prefix: str = "",
    selection: Selection | None = None,
    jobs: int = 4,
    delete_stale: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> Report:
    """Re-render the stored derivatives of originals whose keys start with ``prefix`` and rewrite those that changed.

    A derivative is *current* when its bytes equal a fresh render with the current settings (presets, qualities,
    libvips): every selected derivative is rendered again, but only those that differ are written, so a second run,
    or a run after an interruption, writes nothing that is already current. Each rewrite replaces one object whole,
    and until then the old one is served: it is safe while the sidecar serves traffic. A derivative that can no
    longer be made (its preset was removed, its original is gone, its size is now over the limit) is *stale*:
    reported, and deleted with ``delete_stale``. One signed with none of the current secrets is skipped.

    Raises:
        StorageError: storage fails at the start.
        MalformedPathError: an unsafe prefix.
    """
    progress = progress or Silent()
    report = Report("regenerate")
    storage.check()
    worker = _Regenerator(settings, storage, selection or Selection(), delete=delete_stale, dry_run=dry_run)
    progress.start(None)
    _run(report, _listing(storage, settings.derived_prefix + prefix), worker.regenerate, jobs, progress)
    return report


def _listing(storage: Storage, prefix: str) -> Iterator[StoredObject]:
    after = ""
    while page := storage.list(prefix, start_after=after, limit=_PAGE):
        yield from page
        after = page[-1].key


# Check


@dataclass(frozen=True)
class Finding:
    """One line of the doctor's report; ``status`` is ``ok``, ``warn`` or ``fail``."""

    name: str
    status: str
    detail: str


def check(settings: Settings, storage: Storage) -> list[Finding]:
    """A doctor for a setup: secrets, storage (reached, written, read back), image formats, the nginx config.

    The settings are valid when this is called (loading them validates them). Image formats are checked by
    rendering a small image to every output format and reading each result back through the sidecar's own code.
    """
    findings = [Finding("settings", "ok", f"valid: storage {settings.storage}, on miss {settings.on_miss}")]
    findings.append(_check_secrets(settings.secrets))
    findings.append(_check_storage(settings, storage))
    findings.append(Finding("libvips", "ok", imaging.libvips_version()))
    findings.extend(_check_formats(settings))
    if "heifload" in settings.allowed_loaders:
        findings.append(_check_heic(settings))
    findings.append(_check_nginx(settings))
    return findings


def _check_secrets(secrets: tuple[str, ...]) -> Finding:
    if not secrets:
        return Finding("secrets", "fail", "none: the sidecar cannot verify URLs (set RESIZE_SIDECAR_SECRETS)")
    weak = [number for number, secret in enumerate(secrets, 1) if len(secret) < 16 or len(set(secret)) < 6]
    short = [number for number, secret in enumerate(secrets, 1) if len(secret) < 32]
    advice = "make one with: python -c 'import secrets; print(secrets.token_hex(32))'"
    if weak:
        return Finding(
            "secrets",
            "fail",
            f"secret number {weak[0]} is guessable (under 16 characters or 6 different ones); {advice}",
        )
    if short:
        return Finding("secrets", "warn", f"secret number {short[0]} is under 32 characters; {advice}")
    return Finding("secrets", "ok", f"{len(secrets)} configured, the shortest of {min(map(len, secrets))} characters")


def _check_storage(settings: Settings, storage: Storage) -> Finding:
    key = f"{settings.derived_prefix}resize-sidecar-check-{uuid.uuid4().hex}"
    data = uuid.uuid4().bytes
    try:
        storage.check()
    except SidecarError as error:
        return Finding("storage", "fail", error.detail)
    try:
        storage.put(key, data, "application/octet-stream", "no-store")
    except SidecarError as error:
        # Some S3-compatible stores (Ceph's RADOS Gateway) answer reads and refuse every write under this block.
        advice = f"a public access block? see setup-bucket {NO_PUBLIC_ACCESS_BLOCK}"
        return Finding("storage", "fail", f"reached, but it refuses writes: {error.detail} ({advice})")
    try:
        try:
            read = storage.get(key)
        finally:
            storage.delete(key)
    except SidecarError as error:
        return Finding("storage", "fail", error.detail)
    if read != data:
        return Finding("storage", "fail", f"{storage!r}: a test object read back different bytes")
    return Finding("storage", "ok", f"{storage!r}: reached; a test object was written, read back and deleted")


def _check_formats(settings: Settings) -> list[Finding]:
    original = _tiny_png()
    findings = []
    for fmt in FORMATS:
        try:
            made = imaging.render(original, DerivativeSpec(), fmt, settings)
        except SidecarError as error:
            findings.append(Finding(f"format {fmt}", "fail", f"cannot write it: {error.detail}"))
            continue
        try:
            loader = imaging.probe(made.body, settings).loader
            imaging.render(made.body, DerivativeSpec(8, 8), "png", settings)
        except SidecarError as error:
            findings.append(Finding(f"format {fmt}", "warn", f"written, but not read as an original: {error.detail}"))
            continue
        findings.append(Finding(f"format {fmt}", "ok", f"written and read back ({loader})"))
    return findings


def _check_heic(settings: Settings) -> Finding:
    try:
        info = imaging.probe(_HEIC_SAMPLE, settings)
        imaging.render(_HEIC_SAMPLE, DerivativeSpec(8, 8), "png", settings, info)
    except UnsupportedImageError as error:
        return Finding("heic", "warn", f"HEIC originals are refused: {error.detail}")
    except SidecarError as error:
        return Finding("heic", "fail", f"an HEIC original cannot be read: {error.detail}")
    return Finding("heic", "ok", f"an HEIC original read and rendered ({info.decoder}: {imaging.heic_decoder()})")


def _tiny_png(width: int = 16, height: int = 16) -> bytes:
    """A small RGB gradient as PNG, made with the standard library (the check must not depend on a file)."""
    rows = b"".join(
        b"\x00" + bytes(value for x in range(width) for value in (x * 15, y * 15, 128)) for y in range(height)
    )

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _check_nginx(settings: Settings) -> Finding:
    from resize_sidecar.ops.nginx import render_nginx

    try:
        text = render_nginx(settings, listen="8080", sidecar="http://127.0.0.1:8000")
    except SettingsError as error:
        return Finding("nginx", "fail", str(error))
    return Finding("nginx", "ok", f"the configuration renders ({len(text.splitlines())} lines)")


# Bucket setup


@dataclass(frozen=True)
class Change:
    """One part of a bucket's configuration: ``created``, ``set``, ``unchanged`` (or ``would …``), and what it is."""

    part: str
    status: str
    detail: str


@dataclass(frozen=True)
class BucketPlan:
    """What ``setup-bucket`` is asked to configure; nothing that is not asked for is touched."""

    public_read: bool = False
    #: With ``public_read``: also block public ACLs. Off for stores that then refuse every write (Ceph's RADOS Gateway).
    public_access_block: bool = True
    website: bool = False
    redirect_url: str = ""  #: scheme and host of the sidecar, where the website sends misses
    incoming_expiry_days: int | None = None
    cors_origins: tuple[str, ...] = ()


_POLICY_SID = "ResizeSidecarReadDerivatives"
_LIFECYCLE_ID = "resize-sidecar-incoming"
_CORS_ID = "resize-sidecar"
#: Public access block for --public-read: public ACLs stay blocked, a public bucket policy is allowed.
_PUBLIC_ACCESS = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": False,
    "RestrictPublicBuckets": False,
}
#: The option that leaves the public access block alone, named in the errors that call for it.
NO_PUBLIC_ACCESS_BLOCK = "--no-public-access-block"


def setup_bucket(settings: Settings, admin: BucketAdmin, plan: BucketPlan, *, dry_run: bool = False) -> list[Change]:
    """Create the bucket if needed and configure what ``plan`` asks for; a second run changes nothing.

    Each configuration keeps what others wrote into it (policy statements, routing, lifecycle and CORS rules) and
    replaces only its own part, found by its id (or, for routing rules, by the derivatives' key prefix). A part the
    store does not have (405, 501, NotImplemented) is reported ``unsupported`` and the others are still set. With
    ``public_read``, a test object is then written, read back and read without credentials (``verified``): a store
    may accept a configuration and then behave otherwise.

    Raises:
        StorageError: S3 refused a call or could not be reached, or the test object failed; a public access block
            set by this run is removed again when writes fail after it.
    """
    changes: list[Change] = []

    def record(part: str, changed: bool, detail: str, apply: Callable[[], object], verb: str = "set") -> None:
        if not changed:
            changes.append(Change(part, "unchanged", detail))
        elif dry_run:
            changes.append(Change(part, f"would {verb}", detail))
        else:
            apply()
            changes.append(Change(part, "created" if verb == "create" else verb, detail))

    exists = admin.exists()
    record("bucket", not exists, f"{admin.bucket} ({admin.region})", admin.create, verb="create")

    def read(operation: str) -> dict[str, Any] | None:
        # A bucket about to be created has no configuration to read.
        return admin.read(operation) if exists else None

    def configure(part: str, apply: Callable[[], None]) -> None:
        try:
            apply()
        except UnsupportedByStoreError as error:
            changes.append(Change(part, "unsupported", f"this store has none ({error.detail})"))

    derived = settings.s3_prefix + settings.derived_prefix
    #: Puts back the public access block found, if this run changed it.
    restore_access: list[Callable[[], object]] = []

    def public_access_block() -> None:
        current = (read("get_public_access_block") or {}).get("PublicAccessBlockConfiguration")
        changed = current != _PUBLIC_ACCESS
        record(
            "public access block",
            changed,
            "public ACLs blocked, public bucket policies allowed",
            lambda: admin.call("put_public_access_block", PublicAccessBlockConfiguration=_PUBLIC_ACCESS),
        )
        if changed and not dry_run:
            restore_access.append(
                (lambda: admin.call("delete_public_access_block"))
                if current is None
                else (lambda: admin.call("put_public_access_block", PublicAccessBlockConfiguration=current))
            )

    def bucket_policy() -> None:
        resource = f"arn:aws:s3:::{admin.bucket}/{derived}*"
        statement = {
            "Sid": _POLICY_SID,
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": resource,
        }
        answer = read("get_bucket_policy")
        policy: dict[str, Any] = json.loads(answer["Policy"]) if answer else {"Version": "2012-10-17", "Statement": []}
        statements = policy.get("Statement", [])
        policy["Statement"] = [item for item in statements if item.get("Sid") != _POLICY_SID] + [statement]
        record(
            "bucket policy",
            statement not in statements,
            f"anyone may read {resource} (originals stay private)",
            lambda: admin.call("put_bucket_policy", Policy=json.dumps(policy)),
        )

    def website() -> None:
        current = read("get_bucket_website") or {}
        wanted = {"IndexDocument": current.get("IndexDocument", {"Suffix": "index.html"})}
        wanted.update({name: current[name] for name in ("ErrorDocument", "RoutingRules") if name in current})
        detail = "hosting on"
        if plan.redirect_url:
            ours = _routing_rules(settings, plan.redirect_url)
            others = [rule for rule in current.get("RoutingRules", []) if not _is_ours(rule, derived)]
            wanted["RoutingRules"] = others + ours
            target = ours[0]["Redirect"]
            detail += (
                f"; 404 and 403 under {derived} redirect (302) to {target['Protocol']}://{target['HostName']}/"
                f"{target['ReplaceKeyPrefixWith']}…"
            )
        record(
            "website",
            wanted != current,
            detail,
            lambda: admin.call("put_bucket_website", WebsiteConfiguration=wanted),
        )

    def lifecycle(days: int) -> None:
        incoming = settings.s3_prefix + settings.incoming_prefix
        # Uploads and the presets made of them at upload time: both stay behind if never activated.
        incoming_derivatives = settings.s3_prefix + settings.derived_prefix + settings.incoming_prefix
        prefixes = {_LIFECYCLE_ID: incoming, f"{_LIFECYCLE_ID}-derivatives": incoming_derivatives}
        ours: list[dict[str, Any]] = [
            {
                "ID": rule_id,
                "Filter": {"Prefix": prefix},
                "Status": "Enabled",
                "Expiration": {"Days": days},
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
            }
            for rule_id, prefix in prefixes.items()
        ]
        rules = (read("get_bucket_lifecycle_configuration") or {}).get("Rules", [])
        wanted = {"Rules": [item for item in rules if item.get("ID") not in prefixes] + ours}
        record(
            "lifecycle",
            not all(_has_rule(rules, rule) for rule in ours),
            f"uploads under {incoming} and {incoming_derivatives} never activated expire after {days} days",
            lambda: admin.call("put_bucket_lifecycle_configuration", LifecycleConfiguration=wanted),
        )

    def cors(origins: tuple[str, ...]) -> None:
        rule = {
            "ID": _CORS_ID,
            "AllowedMethods": ["GET", "HEAD"],
            "AllowedOrigins": list(origins),
            "MaxAgeSeconds": 86400,
        }
        rules = (read("get_bucket_cors") or {}).get("CORSRules", [])
        wanted = {"CORSRules": [item for item in rules if item.get("ID") != _CORS_ID] + [rule]}
        record(
            "CORS",
            not _has_rule(rules, rule),
            f"GET and HEAD from {', '.join(origins)}",
            lambda: admin.call("put_bucket_cors", CORSConfiguration=wanted),
        )

    if plan.public_read:
        if plan.public_access_block:
            configure("public access block", public_access_block)
        else:
            changes.append(Change("public access block", "skipped", f"left as it is ({NO_PUBLIC_ACCESS_BLOCK})"))
        configure("bucket policy", bucket_policy)
    if plan.website:
        configure("website", website)
    if plan.incoming_expiry_days is not None:
        configure("lifecycle", partial(lifecycle, plan.incoming_expiry_days))
    if plan.cors_origins:
        configure("CORS", partial(cors, plan.cors_origins))
    if plan.public_read and not dry_run:
        changes.append(_verify_public_read(admin, derived, plan, restore_access))
    return changes


def _verify_public_read(
    admin: BucketAdmin, derived: str, plan: BucketPlan, restore_access: list[Callable[[], object]]
) -> Change:
    """A test object under the derivatives' prefix: written, read back, read without credentials, deleted.

    Raises:
        StorageError: a step failed; a public access block this run set is put back as it was when the write
            failed, and the message names the option that leaves it alone.
    """
    key = f"{derived}resize-sidecar-setup-check-{uuid.uuid4().hex}"
    try:
        admin.try_object(key, anonymous_read=True)
    except StorageError as error:
        advice = ""
        if plan.public_access_block:
            undone = ""
            if restore_access:
                restore_access[0]()
                undone = " It was put back as it was."
            advice = (
                f" If writes fail since the public access block was set (Ceph's RADOS Gateway refuses every write "
                f"under BlockPublicAcls), run setup-bucket again with {NO_PUBLIC_ACCESS_BLOCK}.{undone}"
            )
        raise StorageError(f"setup-bucket could not verify bucket {admin.bucket!r}: {error.detail}.{advice}") from error
    return Change("public read", "verified", f"a test object under {derived} was written, read back and read by anyone")


def _routing_rules(settings: Settings, redirect_url: str) -> list[dict[str, Any]]:
    """Misses under the derivatives' prefix go to the sidecar at ``{MEDIA_URL}{DERIVED_PREFIX}…``, the path it verifies.

    302, never 301: browsers and CDNs keep a 301, and would loop back to the sidecar once the derivative exists. S3
    answers 403 instead of 404 for a missing key to clients that may not list the bucket, hence a rule for each.
    """
    target = urlsplit(redirect_url)
    redirect = {
        "HostName": target.netloc,
        "Protocol": target.scheme,
        "HttpRedirectCode": "302",
        "ReplaceKeyPrefixWith": settings.media_url.lstrip("/") + settings.derived_prefix,
    }
    prefix = settings.s3_prefix + settings.derived_prefix
    return [
        {"Condition": {"KeyPrefixEquals": prefix, "HttpErrorCodeReturnedEquals": code}, "Redirect": dict(redirect)}
        for code in ("404", "403")
    ]


def _is_ours(rule: dict[str, Any], derived: str) -> bool:
    return bool(rule.get("Condition", {}).get("KeyPrefixEquals") == derived)


def _has_rule(rules: list[dict[str, Any]], rule: dict[str, Any]) -> bool:
    """Whether ``rules`` hold ``rule`` as written (S3 may add fields of its own to what it reads back)."""
    return any(all(item.get(name) == value for name, value in rule.items()) for item in rules)
