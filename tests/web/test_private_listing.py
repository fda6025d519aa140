"""The media API's listing never shows the program's own objects: upload manifests and the readiness write probe."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from webob import Request

from resize_sidecar.core.settings import Settings
from resize_sidecar.media.local import LocalStorage
from resize_sidecar.ops.upload import upload
from resize_sidecar.web.app import WRITE_PROBE_KEY, make_app
from tests.support.images import photo

API_SECRET = "api-secret-0123456789abcdef"


def listing(settings: Settings, storage: LocalStorage, query: str = "") -> tuple[int, dict[str, Any]]:
    request = Request.blank(f"/api/images{query}")
    request.authorization = ("Bearer", API_SECRET)
    response = request.get_response(make_app(settings, storage=storage))
    return response.status_int, response.json


@pytest.fixture
def stored(make_settings: Callable[..., Settings], tmp_path: Path) -> tuple[Settings, LocalStorage]:
    """An upload's originals and manifest, and the write probe, as the program itself writes them."""
    settings = make_settings(api_secret=(API_SECRET,))
    (tmp_path / "media").mkdir()
    storage = LocalStorage(tmp_path / "media")
    folder = tmp_path / "originals"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(photo(64, 48))
    report = upload(settings, storage, folder, dest="photos/", jobs=1)
    assert report.ok
    storage.put(WRITE_PROBE_KEY, b"probe", "application/octet-stream", "no-store")
    private = [item.key for item in storage.list(".resize-sidecar/")]
    assert private == [".resize-sidecar/upload/photos/manifest.json", WRITE_PROBE_KEY]
    return settings, storage


def test_the_listing_shows_the_originals_and_none_of_the_programs_own_objects(
    stored: tuple[Settings, LocalStorage],
) -> None:
    status, page = listing(*stored)
    assert status == 200
    assert [item["key"] for item in page["items"]] == ["photos/cat.jpg"]
    assert page["cursor"] is None


@pytest.mark.parametrize("query", ["?match=*manifest*", "?match=.resize-sidecar/*", "?match=*probe"])
def test_no_filter_brings_them_back(stored: tuple[Settings, LocalStorage], query: str) -> None:
    status, page = listing(*stored, query)
    assert status == 200
    assert page["items"] == []
    assert page["cursor"] is None


@pytest.mark.parametrize("prefix", [".resize-sidecar/", ".resize-sidecar/upload/", ".resize-sidecar/write"])
def test_a_prefix_inside_the_private_area_is_400(stored: tuple[Settings, LocalStorage], prefix: str) -> None:
    status, body = listing(*stored, f"?prefix={prefix}")
    assert status == 400
    assert body["error"] == "Bad Request"
    assert "resize-sidecar's own" in body["detail"]
