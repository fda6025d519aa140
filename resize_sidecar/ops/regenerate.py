"""``resize-sidecar regenerate``: render stored derivatives again and rewrite those whose bytes changed."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass

from resize_sidecar.core.errors import (
    BadSignatureError,
    MalformedPathError,
    NotFoundError,
    PolicyError,
    SidecarError,
    SourceChangedError,
    StorageError,
)
from resize_sidecar.core.formats import FORMATS
from resize_sidecar.core.objects import write_headers
from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import DerivativePath, is_preset_name, parse_spec, parse_storage_key
from resize_sidecar.media.derive import Deriver
from resize_sidecar.media.storage import Storage, StoredObject
from resize_sidecar.ops.runs import FAILED, Outcome, Progress, Report, Silent, run_bulk

#: Objects asked for per storage listing while regenerating.
_PAGE = 1000


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
        try:
            path = parse_storage_key(stored.key, settings.derived_prefix)
        except MalformedPathError:
            return Outcome(stored.key, "skipped", "not a derivative's key")
        if not self.selection.picks(path):
            return None
        if is_preset_name(path.spec) and path.spec not in settings.preset_specs:
            return self.stale(stored.key, f"preset {path.spec!r} no longer exists")
        try:
            spec = self.deriver.authorize_path(path)
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
        self.storage.put(stored.key, rendered.body, *write_headers("derivative", settings, rendered.content_type))
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
    run_bulk(report, _listing(storage, settings.derived_prefix + prefix), worker.regenerate, jobs, progress)
    return report


def _listing(storage: Storage, prefix: str) -> Iterator[StoredObject]:
    after = ""
    while page := storage.list(prefix, start_after=after, limit=_PAGE):
        yield from page
        after = page[-1].key

