"""``resize-sidecar regenerate``: render again the stored derivatives whose recipe changed, and rewrite those whose
bytes changed."""

from __future__ import annotations

import functools
from collections.abc import Collection
from dataclasses import dataclass

from resize_sidecar.core.errors import (
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
from resize_sidecar.core.signing import (
    PRIVATE_DERIVED_PREFIX,
    StoredDerivative,
    is_preset_name,
    parse_signed_storage_key,
    parse_spec,
    parse_storage_key,
)
from resize_sidecar.media import recipe
from resize_sidecar.media.derive import Deriver, Made
from resize_sidecar.media.storage import Storage, StoredObject
from resize_sidecar.ops.runs import FAILED, Outcome, Progress, Report, Silent, run_bulk, stored_derivatives
from resize_sidecar.ops.shards import Shard

#: Originals whose version a run remembers: a listing brings an original's derivatives one after another.
_REMEMBERED_ORIGINALS = 1024


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

    def picks(self, path: StoredDerivative) -> bool:
        return self.spec in (None, path.spec) and self.fmt in (None, path.fmt)


def _known_preset(name: str, presets: Collection[str]) -> str:
    if name not in presets:
        configured = ", ".join(sorted(presets)) or "none"
        raise MalformedPathError(
            f"unknown preset {name!r} (configured: {configured}); to delete the derivatives of a removed preset, "
            "run with --existing --delete-stale"
        )
    return name


@dataclass(frozen=True)
class _Options:
    selection: Selection
    shard: Shard
    delete: bool
    dry_run: bool
    force: bool


class _Regenerator:
    def __init__(self, settings: Settings, storage: Storage, options: _Options) -> None:
        self.settings = settings
        self.storage = storage
        self.deriver = Deriver(settings, storage)
        self.options = options
        self.original_version = functools.lru_cache(maxsize=_REMEMBERED_ORIGINALS)(storage.version)

    def regenerate(self, stored: StoredObject) -> Outcome | None:
        settings, options = self.settings, self.options
        private_derivative = stored.key.startswith(PRIVATE_DERIVED_PREFIX)
        prefix = PRIVATE_DERIVED_PREFIX if private_derivative else settings.derived_prefix
        path = self.derivative(stored.key, prefix)
        if isinstance(path, Outcome) or path is None:
            return path
        if not options.selection.picks(path) or not options.shard.owns(path.key):
            return None
        if is_preset_name(path.spec) and path.spec not in settings.preset_specs:
            return self.stale(stored.key, f"preset {path.spec!r} no longer exists")
        try:
            spec = self.deriver.check_spec(path.spec)
            source_version = self.original_version(path.key)
            if source_version is None:
                raise NotFoundError(f"no original at {path.key!r}")
            recorded = self.storage.head(stored.key)
            if not options.force and recipe.is_current(recorded, spec, path.fmt, self.deriver.limits, source_version):
                return Outcome(stored.key, "current")
            # The machine's transform slots are shared with the sidecar's misses; a batch may wait a whole transform.
            with self.deriver.transform_slot(settings.transform_timeout + settings.overload_wait):
                made = self.deriver.render(path, spec)
        except PolicyError as error:
            return self.stale(stored.key, error.detail)
        except NotFoundError:
            return self.stale(stored.key, "its original is gone")
        except StorageError:
            raise
        except SidecarError as error:
            return Outcome(stored.key, FAILED, error.detail)
        if self.storage.get(stored.key) == made.rendered.body:
            if recorded == made.recipe or options.dry_run:
                return Outcome(stored.key, "current")
            # The same bytes, written again with what made them, so that the next run need not render them.
            return self.write(stored.key, path.key, made, Outcome(stored.key, "current", "its recipe is recorded now"))
        if options.dry_run:
            return Outcome(stored.key, "would rebuild")
        return self.write(stored.key, path.key, made, Outcome(stored.key, "rebuilt"))

    def derivative(self, key: str, prefix: str) -> StoredDerivative | Outcome | None:
        """The derivative stored at a key under ``prefix`` in the layout of these settings, or why it is skipped
        (``None``: another shard's)."""
        signed_layout = self.settings.signed_storage_keys
        try:
            return self.deriver.stored_derivative(key, prefix)
        except MalformedPathError:
            pass
        try:
            original_key = (parse_storage_key if signed_layout else parse_signed_storage_key)(key, prefix).key
        except MalformedPathError:
            return Outcome(key, "skipped", "not a derivative's key") if self.options.shard.owns(key) else None
        if not self.options.shard.owns(original_key):
            return None
        if signed_layout:
            return Outcome(key, "skipped", "stored without its signature, which redirect mode's keys carry")
        return Outcome(key, "skipped", "stored in the layout before: `resize-sidecar migrate` moves it")

    def write(self, key: str, original_key: str, made: Made, done: Outcome) -> Outcome:
        """Store ``made`` at ``key`` with its recipe; ``done``, or deleted if the original changed meanwhile."""
        rendered = made.rendered
        # put, not delete and put: clients get the old bytes until the new ones are whole.
        headers = write_headers("derivative", self.settings, rendered.content_type)
        self.storage.put(key, rendered.body, *headers, metadata=made.recipe)
        try:
            self.deriver.confirm_source(original_key, made.source_version, key)
        except (NotFoundError, SourceChangedError) as error:
            return Outcome(key, "deleted", error.detail)
        return done

    def stale(self, key: str, why: str) -> Outcome:
        if not self.options.delete:
            return Outcome(key, "stale", why)
        if self.options.dry_run:
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
    shard: Shard | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> Report:
    """Re-render the stored derivatives of originals whose keys start with ``prefix`` and rewrite those that changed.

    A derivative is *current* when it was stored with the recipe it would be made with now (its spec as the presets
    resolve it, quality and encoder settings, libvips: :mod:`resize_sidecar.media.recipe`) from the original as it
    is now: that is learned from a HEAD of it and of its original, without rendering. The others (and every one,
    with ``force``) are rendered again, and written with their recipe: when the bytes changed, *rebuilt*; when not,
    current, and written only if their recipe was not recorded yet. So a second run, or a run after an
    interruption, renders and writes nothing that is already current. Each rewrite replaces one object whole, and
    until then the old one is served: it is safe while the sidecar serves traffic. A derivative that can no longer
    be made (its preset was removed, its original is gone, its size is now over the limit) is *stale*: reported,
    and deleted with ``delete_stale``. One stored in the layout before (its key signed) is skipped. With ``shard``, only
    the derivatives of the originals of that shard are looked at (see :mod:`resize_sidecar.ops.shards`).

    Raises:
        StorageError: storage fails at the start.
        MalformedPathError: an unsafe prefix.
    """
    progress = progress or Silent()
    report = Report("regenerate")
    storage.check()
    options = _Options(selection or Selection(), shard or Shard(), delete_stale, dry_run, force)
    worker = _Regenerator(settings, storage, options)
    progress.start(None)
    run_bulk(report, stored_derivatives(storage, settings.derived_prefix, prefix), worker.regenerate, jobs, progress)
    return report
