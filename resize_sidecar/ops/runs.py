"""The bounded thread pool that the bulk commands share, what it reports (one outcome per item), and the listing of
stored derivatives they work through.

Bulk work stops taking new items at the first storage failure: storage that failed once fails the rest too, each after
its timeout. Every write replaces one whole object, so an interrupted run leaves no partial object, and running it
again finishes it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, TypeVar

from resize_sidecar.core.errors import StorageError
from resize_sidecar.core.signing import PRIVATE_DERIVED_PREFIX
from resize_sidecar.media.storage import Storage, StoredObject

T = TypeVar("T")

FAILED = "failed"
#: Objects asked for per storage listing.
_PAGE = 1000


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


def run_bulk(
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


def stored_derivatives(storage: Storage, derived_prefix: str, prefix: str = "") -> Iterator[StoredObject]:
    """The objects under the public derivatives' folder, then under the private ones', of the originals whose keys
    start with ``prefix``; a page is listed as the last one is used up.

    Raises:
        StorageError: a listing fails (:func:`run_bulk` stops the run).
        MalformedPathError: an unsafe prefix.
    """
    for folder in (derived_prefix, PRIVATE_DERIVED_PREFIX):
        after = ""
        while page := storage.list(folder + prefix, start_after=after, limit=_PAGE):
            yield from page
            after = page[-1].key
