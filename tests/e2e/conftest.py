"""The e2e room's fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from resize_sidecar.core.settings import Settings, StorageKind
from resize_sidecar.core.urls import MediaURLs
from tests.support.api import serve_api
from tests.support.servers import SECRET, Stack, media_stack


@pytest.fixture(scope="module", params=["local", "s3"])
def api_stack(
    request: pytest.FixtureRequest, moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """nginx and the sidecar with the media API on, with a small upload cap (tests/support/api.py), over local
    storage and over a bucket on moto's S3 server in turn."""
    with serve_api(request.param, moto_endpoint, tmp_path_factory.mktemp(f"api-logs-{request.param}")) as stack:
        yield stack


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(("local", False), id="local"),
        pytest.param(("s3", False), id="s3"),
        pytest.param(("local", True), id="local snippet"),
        pytest.param(("s3", True), id="s3 snippet"),
    ],
)
def edge_stack(
    request: pytest.FixtureRequest, moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """nginx and the sidecar as private and .auto URLs are served at the edge: over local storage, and over a bucket
    on moto's S3 server read with SigV4 (its public policy covers ``_r/`` only) with nginx's cache on; each with the
    whole rendered nginx.conf, and with the snippet in an nginx.conf of Debian's shape."""
    mode: StorageKind
    mode, snippet = request.param
    env = {"RESIZE_SIDECAR_NGINX_S3_AUTH": "sigv4", "RESIZE_SIDECAR_NGINX_CACHE_SIZE": "16m"}
    with media_stack(mode, moto_endpoint, tmp_path_factory.mktemp(f"edge-{mode}"), env, snippet=snippet) as stack:
        yield stack


@pytest.fixture(scope="module")
def edge_urls() -> MediaURLs:
    """The URL builder of :func:`edge_stack`'s settings."""
    return MediaURLs(Settings(secrets=(SECRET,)))
