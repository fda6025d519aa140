"""A deleted or replaced original leaves no derivative servable, even one that a miss was making meanwhile.

A miss reads the original, renders, stores, and then checks that the original is still the version it read
(``Deriver.confirm_source``); a delete removes the original before its derivatives, a replacement writes the new
original before removing them. The in-process cases below put the delete or the replacement at each point of a
miss; the end-to-end case races them for real, through nginx, over local storage and moto's S3 server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from webob import Request, Response

from resize_sidecar.core.errors import StorageError
from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import format_path, parse_path
from resize_sidecar.media.storage import Metadata, Storage, delete_derivatives
from resize_sidecar.ops.regenerate import regenerate
from resize_sidecar.web.app import SidecarApp, make_app
from tests.support.images import photo
from tests.support.servers import SECRET, Stack, media_stack, metric, raw_get

API_SECRET = "api-secret-for-deletes-0123456789"
KEY = "album/portrait.jpg"
SPEC = "100x"


class Interleaved:
    """Storage that runs ``meanwhile`` once, just before or just after a derivative is stored."""

    def __init__(self, inner: Storage, when: str, meanwhile: Callable[[], None]) -> None:
        self.inner = inner
        self.when = when
        self.meanwhile: Callable[[], None] | None = meanwhile

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def put_if_absent(
        self, key: str, data: bytes, content_type: str, cache_control: str, metadata: Metadata | None = None
    ) -> bool:
        self.run("before", key)
        written = self.inner.put_if_absent(key, data, content_type, cache_control, metadata)
        self.run("after", key)
        return written

    def put(
        self, key: str, data: bytes, content_type: str, cache_control: str, metadata: Metadata | None = None
    ) -> None:
        self.run("before", key)
        self.inner.put(key, data, content_type, cache_control, metadata)
        self.run("after", key)

    def run(self, when: str, key: str) -> None:
        if self.when == when and key.startswith("_r/") and self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            meanwhile()


@pytest.fixture(params=["local", "s3"])
def storage_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(api_secret=(API_SECRET,))


def get(app: SidecarApp, path: str) -> Response:
    return Request.blank(path, environ={"RAW_URI": path}).get_response(app)


def delete(app: SidecarApp, key: str) -> Response:
    request = Request.blank(f"/api/images/{key}", method="DELETE")
    request.authorization = ("Bearer", API_SECRET)
    return request.get_response(app)


def derivatives(storage: Storage) -> list[str]:
    return [item.key for item in storage.list("_r/")]


def width_of(body: bytes) -> int:
    import pyvips

    return int(pyvips.Image.new_from_buffer(body, "").width)


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_delete_while_a_miss_stores_leaves_nothing_and_the_miss_answers_404(
    storage: Storage, settings: Settings, when: str
) -> None:
    storage.put(KEY, photo(300, 400), "image/jpeg", "no-cache")
    deleter = make_app(settings, storage=storage)
    deleted: list[Response] = []
    racing = make_app(settings, storage=Interleaved(storage, when, lambda: deleted.append(delete(deleter, KEY))))  # type: ignore[arg-type]

    response = get(racing, format_path(KEY, SPEC, "jpg", SECRET))

    assert deleted[0].json["deleted_original"] is True
    assert (response.status_int, response.cache_control.no_store) == (404, True)
    assert "was deleted while this derivative was made" in response.text
    assert derivatives(storage) == []
    assert storage.get(KEY) is None


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_replacement_while_a_miss_stores_leaves_nothing_of_the_old_picture(
    storage: Storage, settings: Settings, when: str
) -> None:
    storage.put(KEY, photo(300, 400), "image/jpeg", "no-cache")

    def replace() -> None:  # what `resize-sidecar upload` does with a changed file
        storage.put(KEY, photo(600, 400), "image/jpeg", "no-cache")
        delete_derivatives(storage, KEY, settings.derived_prefix)

    racing = make_app(settings, storage=Interleaved(storage, when, replace))  # type: ignore[arg-type]
    url = format_path(KEY, SPEC, "jpg", SECRET)

    response = get(racing, url)
    assert (response.status_int, response.retry_after is not None) == (503, True)
    assert "was replaced while this derivative was made" in response.text
    assert derivatives(storage) == []

    again = get(racing, url)
    assert again.status_int == 200
    assert width_of(again.body) == 100
    assert again.body == storage.get(derivatives(storage)[0])
    # Made from the new, landscape picture: 100 wide is 67 high, where the old portrait made 133.
    import pyvips

    assert pyvips.Image.new_from_buffer(again.body, "").height == 67


def test_a_miss_that_cannot_confirm_its_original_stores_nothing_and_answers_502(
    storage: Storage, settings: Settings
) -> None:
    storage.put(KEY, photo(300, 400), "image/jpeg", "no-cache")

    class Unconfirmable(Interleaved):
        def version(self, key: str) -> str | None:
            raise StorageError("HEAD failed for the test")

    app = make_app(settings, storage=Unconfirmable(storage, "never", lambda: None))  # type: ignore[arg-type]
    response = get(app, format_path(KEY, SPEC, "jpg", SECRET))
    assert response.status_int == 502
    assert derivatives(storage) == []


@pytest.mark.parametrize("when", ["before", "after"])
def test_regenerate_does_not_bring_back_a_derivative_of_an_original_deleted_meanwhile(
    storage: Storage, settings: Settings, when: str
) -> None:
    storage.put(KEY, photo(300, 400), "image/jpeg", "no-cache")
    url = format_path(KEY, SPEC, "jpg", SECRET)
    stored_key = parse_path(url, media_url=settings.media_url).storage_key(settings.derived_prefix)
    storage.put(stored_key, b"made by an older version", "image/jpeg", "no-cache")

    report = regenerate(settings, Interleaved(storage, when, lambda: storage.delete(KEY)))  # type: ignore[arg-type]

    [outcome] = report.outcomes
    assert (outcome.item, outcome.status) == (stored_key, "deleted")
    assert "was deleted while this derivative was made" in outcome.detail
    assert derivatives(storage) == []


# End to end: a real DELETE, or a replacement, while a real miss renders.

SLOW_SPEC = "4000x-sharp"  # about a second or two of rendering from the PNG below on this kind of machine


@pytest.fixture(scope="module", params=["local", "s3"])
def stack(
    request: pytest.FixtureRequest, moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp(f"logs-{request.param}")
    with media_stack(request.param, moto_endpoint, logs, {"RESIZE_SIDECAR_API_SECRET": API_SECRET}) as started:
        yield started


def miss_in_background(stack: Stack, key: str) -> tuple[str, threading.Thread, list[int]]:
    """Store a large original at ``key`` and ask nginx for a slow derivative of it in a thread; return its URL, the
    thread and its answers once the sidecar has read the original (it is rendering)."""
    stack.storage.put(key, photo(4000, 3000, "png"), "image/png", "no-cache")
    url = stack.url(key, SLOW_SPEC, "webp")
    reads = metric(stack.sidecar, "resize_sidecar_original_reads_total")
    answers: list[int] = []
    thread = threading.Thread(target=lambda: answers.append(stack.get(url)[0]))
    thread.start()
    deadline = time.monotonic() + 30
    while metric(stack.sidecar, "resize_sidecar_original_reads_total") == reads:
        assert time.monotonic() < deadline, "the miss never read its original"
        time.sleep(0.01)
    return url, thread, answers


@pytest.mark.e2e
def test_a_delete_during_a_real_miss_leaves_no_derivative_servable(stack: Stack) -> None:
    key = f"race/deleted-{stack.mode}.png"
    url, thread, answers = miss_in_background(stack, key)

    status, _, body = raw_get(
        stack.sidecar.url, f"/api/images/{key}", "DELETE", headers={"Authorization": f"Bearer {API_SECRET}"}
    )
    assert status == 200, body
    thread.join(60)
    assert b'"deleted_derivatives":0' in body.replace(b" ", b""), "the miss stored before the delete: no race"
    assert answers == [404]
    assert stack.derivatives_of(key) == []
    assert stack.get(url)[0] == 404


@pytest.mark.e2e
def test_a_replacement_during_a_real_miss_leaves_only_the_new_picture_servable(stack: Stack) -> None:
    key = f"race/replaced-{stack.mode}.png"
    url, thread, answers = miss_in_background(stack, key)

    stack.storage.put(key, photo(400, 300, "png"), "image/png", "no-cache")
    delete_derivatives(stack.storage, key, stack.settings.derived_prefix)
    thread.join(60)
    assert answers == [503]
    assert stack.derivatives_of(key) == []
    status, _, body = stack.get(url)
    assert status == 200
    assert width_of(body) == 400  # the new picture, not enlarged
