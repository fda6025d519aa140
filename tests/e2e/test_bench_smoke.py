"""The benchmark harness keeps working: ``bench/run.py --smoke`` on tiny images, without wrk or thumbor.

It only checks that a run completes and writes its results; numbers from a smoke run mean nothing, and no test
asserts on timing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import nginx_binary

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def test_bench_smoke_run_writes_its_results_file(tmp_path: Path) -> None:
    nginx_binary()  # skips (or fails on CI) where nginx is missing
    out = tmp_path / "results"
    command = [sys.executable, str(REPO / "bench" / "run.py"), "--smoke", "--out", str(out), "--work", str(tmp_path)]
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=180)

    assert finished.returncode == 0, f"{finished.stdout[-4000:]}\n{finished.stderr[-4000:]}"
    text = (out / "latest.md").read_text()
    assert "## Goals" in text
    assert "## Miss path" in text
    assert (out / "latest.json").is_file()
