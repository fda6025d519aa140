"""A short soak in every test run (FAULTS row 29, F7): what must hold after hundreds of mixed requests.

The driver is ``bench/soak.py`` (its 10,000-request run is the F7 figure). Asserted here is what is not a
timing: every answer is the one its kind must get and none is a 5xx, the same workers serve from start to end,
no temporary file is left in storage, and the workers hold no more descriptors at the end than early on.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType
from typing import Any

import pytest

from tests.support.servers import REPO

pytestmark = pytest.mark.e2e

REQUESTS = 500
WORKERS = 2
#: Descriptors a worker may open lazily after the first sample (a connection pool, a log file) without leaking.
FD_SLACK_PER_WORKER = 2


def load_soak() -> ModuleType:
    """bench/ is a folder of scripts, not a package: load the driver by its path."""
    spec = importlib.util.spec_from_file_location("resize_sidecar_bench_soak", REPO / "bench/soak.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def soak(tmp_path_factory: pytest.TempPathFactory) -> Any:
    driver = load_soak()
    # A transform slot per worker: shedding under overload (503) is by design, and not what this soak is about.
    log_dir = tmp_path_factory.mktemp("soak")
    return driver.run_soak(REQUESTS, workers=WORKERS, clients=8, sample_every=250, log_dir=log_dir, slots=WORKERS)


def test_no_answer_of_a_short_soak_is_a_5xx_or_other_than_its_kind_must_get(soak: Any) -> None:
    assert soak.server_errors == soak.shed == 0, soak.statuses
    assert soak.unexpected == 0, soak.statuses
    assert soak.requests == REQUESTS


def test_the_same_workers_serve_the_whole_soak(soak: Any) -> None:
    assert soak.workers_unchanged


def test_a_soak_leaves_no_temporary_file_in_storage(soak: Any) -> None:
    assert [sample.temp_files for sample in soak.samples] == [0] * len(soak.samples)


def test_the_workers_open_descriptors_do_not_grow_during_a_soak(soak: Any) -> None:
    assert soak.fd_growth <= FD_SLACK_PER_WORKER * WORKERS, soak.samples
