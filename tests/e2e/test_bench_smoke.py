"""The benchmark harness keeps working: ``bench/run.py --smoke`` on tiny images, without wrk or thumbor.

It only checks that a run completes and writes its results; numbers from a smoke run mean nothing, and no test
asserts on timing.
"""

from __future__ import annotations

import json
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


def test_workload_smoke_run_plays_every_page_view_cold_then_warm(tmp_path: Path) -> None:
    nginx_binary()
    out = tmp_path / "results"
    script = REPO / "bench" / "workload.py"
    command = [sys.executable, str(script), "--smoke", "--out", str(out), "--work", str(tmp_path)]
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=180)

    assert finished.returncode == 0, f"{finished.stdout[-4000:]}\n{finished.stderr[-4000:]}"
    raw = json.loads((out / "workload.json").read_text())
    requests = raw["plan"]["page_views"] * raw["plan"]["images_per_page"]
    passes = {(run["server"], run["phase"]): run for run in raw["passes"]}
    assert sorted(passes) == [(server, phase) for server in ("sidecar", "sidecar-local") for phase in ("cold", "warm")]
    distinct = raw["distinct_urls"]["sidecar"]
    for server in ("sidecar", "sidecar-local"):
        cold, warm = passes[server, "cold"], passes[server, "warm"]
        # Cold: each distinct URL is made once, its repeats are hits; warm: everything is answered from storage.
        assert cold["statuses"] == warm["statuses"] == {"200": requests}
        assert (cold["created"], warm["created"]) == (distinct, 0)
        assert cold["bytes_stored"] == warm["bytes_stored"] > 0
    assert passes["sidecar", "cold"]["objects_stored"] == distinct
    text = (out / "workload.md").read_text()
    assert "## Results" in text
    assert "| sidecar | warm | " in text
