"""The e2e room's fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.api import serve_api
from tests.support.servers import Stack


@pytest.fixture(scope="module", params=["local", "s3"])
def api_stack(
    request: pytest.FixtureRequest, moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """nginx and the sidecar with the media API on, with a small upload cap (tests/support/api.py), over local
    storage and over a bucket on moto's S3 server in turn."""
    with serve_api(request.param, moto_endpoint, tmp_path_factory.mktemp(f"api-logs-{request.param}")) as stack:
        yield stack
