"""What the benchmark scripts share: their command line, a median with its min–max, peak memory, the results files.

The scripts run as ``python bench/NAME.py``, which puts bench/ on the path: they import this module as ``common``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"


def arguments(
    doc: str | None, *, out: Path | None = None, rounds: int | None = None, seconds: float | None = None
) -> argparse.ArgumentParser:
    """A script's command line, described by its docstring's first line; ``--out``, ``--rounds`` and ``--seconds``
    where the script gives their default."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    if out is not None:
        parser.add_argument("--out", type=Path, default=out, help="where the results go (default: %(default)s)")
    if rounds is not None:
        parser.add_argument("--rounds", type=int, default=rounds, help="interleaved rounds (default: %(default)s)")
    if seconds is not None:
        parser.add_argument(
            "--seconds", type=type(seconds), default=seconds, help="length of each load run (default: %(default)s)"
        )
    return parser


def command_line(script: str, argv: Sequence[str] | None = None) -> str:
    """The command line that ran, as a results file quotes it: ``python bench/soak.py --requests 100``."""
    given = sys.argv[1:] if argv is None else argv
    return " ".join(["python", f"bench/{script}", *given])


@dataclass(frozen=True)
class Spread:
    """Repeated measurements of one thing: the median, and the lowest and highest."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))

    def as_dict(self) -> dict[str, float]:
        return {"median": self.median, "min": self.low, "max": self.high}


def spread(values: Sequence[float], digits: int = 1, unit: str = "") -> str:
    """``median [min–max]``; the median alone for one value, a dash for none."""
    if not values:
        return "–"
    measured = Spread.of(values)
    if len(values) == 1:
        return f"{measured.median:.{digits}f}{unit}"
    return f"{measured.median:.{digits}f}{unit} [{measured.low:.{digits}f}–{measured.high:.{digits}f}]"


def log(message: str) -> None:
    """A progress line, with the time."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def stop_on_signal(signum: int, frame: FrameType | None) -> None:
    """SIGTERM as Ctrl-C: the ExitStack then stops every server (the default action would orphan them)."""
    raise KeyboardInterrupt(f"signal {signum}")


def moto_credentials() -> None:
    """AWS credentials and region in the environment, unless set: moto accepts any, boto3 (the harness's and the
    servers' it starts) needs some."""
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        os.environ.setdefault(name, value)


def peak_rss_mb(pid: int) -> float:
    """The most memory process ``pid`` has held at once (Linux's high-water mark), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def write_results(out: Path, stem: str, markdown: str, raw: Any = None) -> Path:
    """``{stem}.md`` for people and, given the raw numbers, ``{stem}.json`` beside it; the markdown file's path."""
    out.mkdir(parents=True, exist_ok=True)
    if raw is not None:
        (out / f"{stem}.json").write_text(json.dumps(raw, indent=1, default=str) + "\n")
    written = out / f"{stem}.md"
    written.write_text(markdown)
    return written
