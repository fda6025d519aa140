"""Short fuzz runs for every test run: atheris for a few seconds per target where it is installed, and a fixed
number of hypothesis-made mutations of the same seeds everywhere (atheris is not part of the test dependencies).
The hypothesis replays are derandomized: the same mutations every run, so they fail only on a regression.

The long runs are commands: ``python tests/fuzz/fuzz_images.py -max_total_time=600``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz import fuzz_images, fuzz_paths
from tests.support.servers import REPO

#: Values libFuzzer also likes to write over a length or a dimension: zero, one, the largest of each width.
INTERESTING = [b"\x00\x00\x00\x00", b"\x00\x00\x00\x01", b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x00\x01\x00\x00"]
#: Headers are where parsers go wrong: half of all mutations land in the first bytes.
HEAD = 1024
IMAGE_SEEDS = [data for _, data in fuzz_images.seeds() if 0 < len(data) <= 64 * 1024]
PATH_SEEDS = [data for _, data in fuzz_paths.seeds()]
check_image = fuzz_images.target()
check_path = fuzz_paths.target()


@st.composite
def mutations(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with one to eight byte-level edits: flips, overwrites, inserts, deletes, truncation, splices."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            break
        end = min(len(data), HEAD) if draw(st.booleans()) else len(data)
        at = draw(st.integers(0, end - 1))
        how = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "splice", "integer"]))
        if how == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "set":
            data[at] = draw(st.integers(0, 255))
        elif how == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif how == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif how == "truncate":
            del data[at:]
        elif how == "splice":  # a piece of another seed, as libFuzzer's cross-over does
            other = draw(st.sampled_from(seeds))
            start = draw(st.integers(0, max(0, len(other) - 1)))
            data[at:at] = other[start : start + draw(st.integers(1, 256))]
        else:
            data[at : at + 4] = draw(st.sampled_from(INTERESTING))
    return bytes(data)


@pytest.mark.skipif(not IMAGE_SEEDS, reason="shared test images not found (set TESTDATA_IMAGES)")
@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,  # the same mutations in every run: a failure here is a regression, never bad luck
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=mutations(IMAGE_SEEDS or [b"\xff\xd8"]))
def test_mutated_corpus_images_raise_nothing_but_sidecar_errors(data: bytes) -> None:
    check_image(data)


@settings(
    max_examples=500, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(data=mutations(PATH_SEEDS))
def test_mutated_paths_raise_nothing_but_path_errors_and_verify_only_canonically(data: bytes) -> None:
    check_path(data)


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris is not installed")
@pytest.mark.parametrize("target", ["fuzz_paths.py", "fuzz_images.py"])
def test_each_fuzz_target_survives_a_few_seconds_of_atheris(target: str, tmp_path: Path) -> None:
    env = {**os.environ, "FUZZ_WORK_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(Path(__file__).parent / target), "-max_total_time=8", "-print_final_stats=1"],
        capture_output=True, text=True, timeout=120, cwd=REPO, env=env,
    )  # fmt: skip
    crashes = list((tmp_path / "crashes").glob("*"))
    assert done.returncode == 0 and crashes == [], done.stderr[-3000:]
    assert "Done " in done.stderr
