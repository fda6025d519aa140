"""The web room's fixtures: its in-process tests see what each request touched in storage."""

from __future__ import annotations

import pytest

from resize_sidecar.media.storage import Storage
from tests.support.in_process import CountingStorage


@pytest.fixture
def storage(storage: Storage) -> CountingStorage:
    """The suite's storage (local unless a test says otherwise), counting the calls each request makes."""
    return CountingStorage(storage)
