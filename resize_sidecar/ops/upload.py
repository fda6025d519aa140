"""``resize-sidecar upload``: store the images of a folder as originals, and the manifest of what was stored."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from resize_sidecar.core.errors import (
    MalformedPathError,
    SettingsError,
    SidecarError,
    SourceTooLargeError,
    StorageConflictError,
    StorageError,
    UnsupportedImageError,
)
from resize_sidecar.core.formats import DOWNLOADED_TYPES, ORIGINAL_TYPES
from resize_sidecar.core.objects import write_headers
from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import PRIVATE_PREFIX, validate_key
from resize_sidecar.core.urls import MediaURLs
from resize_sidecar.media import imaging
from resize_sidecar.media.derive import Deriver
from resize_sidecar.media.library import store_original
from resize_sidecar.media.storage import Storage
from resize_sidecar.ops.runs import FAILED, Outcome, Progress, Report, Silent, run_bulk
from resize_sidecar.ops.shards import Shard

MANIFEST = "manifest.json"
#: Upload manifests live here, under the key prefix nginx never serves: they list every original and signed URL.
MANIFEST_PREFIX = PRIVATE_PREFIX + "upload/"
#: An upload saves its manifest this often, so an interrupted run resumes where it was.
_CHECKPOINT_SECONDS = 30.0


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

    def __init__(
        self, settings: Settings, storage: Storage, directory: Path, dest: str, *, dry_run: bool, shard: Shard
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.directory = directory
        self.dest = dest
        self.dry_run = dry_run
        self.shard = shard
        self.urls = MediaURLs(settings)
        self.deriver = Deriver(settings, storage)
        self.whole_manifest_key = MANIFEST_PREFIX + dest + MANIFEST
        # Each shard keeps its own manifest: two machines never write the same object.
        self.manifest_key = self.whole_manifest_key if shard.count == 1 else _shard_manifest_key(dest, shard)
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
        if self.shard.count > 1:
            # A shard's first run: what an upload of the whole folder recorded, of this shard's files.
            whole = self.storage.get(self.whole_manifest_key)
            if whole is not None:
                self.load(whole)
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
            entries = {
                row["key"]: _Entry(**{name: row[name] for name in _Entry.__annotations__})
                for row in rows
                if self.shard.owns(row["key"])
            }
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
            info = imaging.probe(data, self.settings.image_limits)
            content_type = imaging.original_type(data, info)
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
            # Stored as the file is (the API converts its uploads): the same headers, and the derivatives of the
            # picture it replaces deleted after it.
            try:
                store_original(self.settings, self.storage, key, data, entry.content_type)
            except (StorageConflictError, MalformedPathError) as error:
                return Outcome(relative, FAILED, error.detail)  # this key's, not storage's: the others go on
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
                imaging.decode_all(data, info, settings.image_limits)
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
        self.storage.put(self.manifest_key, data, *write_headers("manifest", self.settings))
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
    extensions = ORIGINAL_TYPES.get(content_type) or DOWNLOADED_TYPES[content_type]
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
    shard: Shard | None = None,
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

    With ``shard`` K/N, only the files whose keys are that shard's (see :mod:`resize_sidecar.ops.shards`) are looked
    at, and their manifest is the shard's own, ``.resize-sidecar/upload/{dest}manifest.K-of-N.json``: the N of them
    list the whole folder. A shard's first run takes what it knows of its files from the whole folder's manifest.

    Raises:
        SettingsError: ``directory`` is not a folder, ``dest`` is not a key prefix, or no secret is set to sign the
            manifest's URLs with.
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
    shard = shard or Shard()
    uploader = _Uploader(settings, storage, directory, dest, dry_run=dry_run, shard=shard)
    uploader.read_manifest(report.notes)
    files, unlisted = _files(directory)
    files = [path for path in files if shard.owns(dest + path.relative_to(directory).as_posix())]
    report.outcomes.extend(outcome for outcome in unlisted if shard.owns(dest + outcome.item))
    progress.start(len(files))
    try:
        run_bulk(report, files, uploader.upload, jobs, progress, on_done=uploader.checkpoint)
    except KeyboardInterrupt:
        uploader.save()
        raise
    if not report.stopped and uploader.save():
        report.notes.append(f"wrote {uploader.manifest_key}")
    return report


def _shard_manifest_key(dest: str, shard: Shard) -> str:
    return f"{MANIFEST_PREFIX}{dest}{MANIFEST.removesuffix('.json')}.{shard.index}-of-{shard.count}.json"


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



