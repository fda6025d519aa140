"""MediaClient, the middleware's client of the media API, against the running sidecar (gunicorn, local storage)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator

import pytest

from resize_sidecar.core.signing import format_path
from resize_sidecar.media.local import LocalStorage
from resize_sidecar.middleware.client import MediaAPIError, MediaClient
from tests.support.images import photo
from tests.support.servers import SECRET, SidecarServer, free_port, raw_get

pytestmark = pytest.mark.e2e

API_SECRET = "client-api-secret-0123456789"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SidecarServer, LocalStorage]]:
    root = tmp_path_factory.mktemp("client-media")
    env = {
        "RESIZE_SIDECAR_SECRETS": SECRET,
        "RESIZE_SIDECAR_API_SECRET": API_SECRET,
        "RESIZE_SIDECAR_PRESETS": "small=200x",
        "RESIZE_SIDECAR_LOCAL_ROOT": str(root),
        "RESIZE_SIDECAR_UPLOAD_CUSTOM_KEYS": "true",
    }
    sidecar = SidecarServer(env, tmp_path_factory.mktemp("client-logs"))
    with sidecar:
        yield sidecar, LocalStorage(root)


@pytest.fixture
def client(served: tuple[SidecarServer, LocalStorage]) -> MediaClient:
    return MediaClient(f"{served[0].url}/api/", API_SECRET)


def test_upload_activate_and_delete_through_the_client(
    client: MediaClient, served: tuple[SidecarServer, LocalStorage]
) -> None:
    sidecar, storage = served
    uploaded = client.upload(photo(800, 600))
    assert (uploaded["width"], uploaded["height"], uploaded["format"]) == (800, 600, "jpg")
    assert storage.exists(uploaded["incoming_key"])
    assert raw_get(sidecar.url, uploaded["urls"]["small"])[0] == 200

    activated = client.activate(uploaded["key"])
    assert activated == {
        "key": uploaded["key"],
        "activated": True,
        "moved_derivatives": 1,
        "urls": {"small": format_path(uploaded["key"], "small", "jpg", SECRET)},
    }
    assert storage.exists(uploaded["key"]) and not storage.exists(uploaded["incoming_key"])
    assert client.activate(uploaded["key"])["activated"] is False

    assert client.delete(uploaded["key"])["deleted_original"] is True
    assert storage.list(f"_r/{uploaded['key']}/") == []


def test_a_file_is_streamed_chunked_and_can_choose_its_key(client: MediaClient) -> None:
    uploaded = client.upload(io.BytesIO(photo(100, 50, "png")), key="client/é t+é.png")
    assert (uploaded["key"], uploaded["format"]) == ("client/é t+é.png", "png")
    assert client.activate(uploaded["key"])["key"] == "client/é t+é.png"


@pytest.mark.parametrize(
    ("call", "status"),
    [
        pytest.param(lambda client: client.upload(b"<html></html>"), 415, id="not an image"),
        pytest.param(lambda client: client.activate("client/nothing.jpg"), 404, id="unknown key"),
        pytest.param(lambda client: client.delete("client/../x.jpg"), 400, id="traversal"),
    ],
)
def test_refusals_raise_with_the_status_and_the_reason(
    client: MediaClient, call: Callable[[MediaClient], object], status: int
) -> None:
    with pytest.raises(MediaAPIError) as raised:
        call(client)
    assert raised.value.status == status
    assert raised.value.message


def test_a_wrong_secret_raises_403(served: tuple[SidecarServer, LocalStorage]) -> None:
    with pytest.raises(MediaAPIError) as raised:
        MediaClient(f"{served[0].url}/api", "not-the-secret-0123456789").upload(photo(10, 10))
    assert raised.value.status == 403


def test_an_unreachable_api_raises_without_a_status() -> None:
    with pytest.raises(MediaAPIError) as raised:
        MediaClient(f"http://127.0.0.1:{free_port()}/api/", API_SECRET, timeout=5).activate("a.jpg")
    assert raised.value.status is None
