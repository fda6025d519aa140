"""Limits before work, in-process: interlaced originals, allowed widths, the transform deadline, the machine's locks,
overload answers and the request log."""

from __future__ import annotations

import json
import logging
import os
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pyvips

from resize_sidecar.core.errors import InterlacedTooLargeError, OverloadedError, SettingsError, TransformTimeoutError
from resize_sidecar.core.settings import Settings, load
from resize_sidecar.core.signing import parse_spec
from resize_sidecar.media import imaging
from resize_sidecar.media.local import LocalStorage
from resize_sidecar.media.locks import NodeLocks
from resize_sidecar.media.storage import Metadata
from resize_sidecar.web import metrics
from resize_sidecar.web.app import SidecarApp, make_app
from tests.support.images import photo
from tests.support.in_process import CountingStorage, counter, get, url
from tests.support.keys import stored_key
from tests.support.servers import REPO

MakeSettings = Callable[..., Settings]


def with_size(data: bytes, width: int, height: int) -> bytes:
    """A JPEG or PNG whose header claims ``width`` x ``height``; the pixels that follow stay as they were."""
    if data.startswith(b"\x89PNG"):
        header = struct.pack(">II", width, height) + data[24:29]
        return data[:16] + header + struct.pack(">I", zlib.crc32(b"IHDR" + header)) + data[33:]
    for marker in (b"\xff\xc0", b"\xff\xc2"):  # baseline and progressive start of frame
        at = data.find(marker)
        if at >= 0:
            return data[: at + 5] + struct.pack(">HH", height, width) + data[at + 9 :]
    raise ValueError("no start of frame")


def small(*, interlaced: bool, fmt: str) -> bytes:
    image = pyvips.Image.black(64, 48, bands=3) + [120, 60, 30]
    image = image.cast("uchar").copy(interpretation="srgb")
    if fmt == "png":
        return bytes(image.pngsave_buffer(interlace=interlaced))
    return bytes(image.jpegsave_buffer(interlace=interlaced))


@pytest.fixture
def lock_dir(tmp_path: Path) -> str:
    return str(tmp_path / "locks")


@pytest.fixture
def sidecar_with(make_settings: MakeSettings, storage: CountingStorage, lock_dir: str) -> Callable[..., SidecarApp]:
    def make(**overrides: Any) -> SidecarApp:
        settings = make_settings(lock_dir=lock_dir, **overrides)
        return make_app(settings, storage=storage)

    return make


@pytest.fixture(scope="module")
def slow_original() -> bytes:
    """A 4000x3000 JPEG of noise: sharpening all of it and compressing it as PNG takes libvips over a second."""
    bands = [pyvips.Image.gaussnoise(400, 300, sigma=40, mean=128) for _ in range(3)]
    tile = bands[0].bandjoin(bands[1:]).cast("uchar").copy(interpretation="srgb")
    return bytes(tile.replicate(10, 10).jpegsave_buffer(Q=85))


# Interlaced originals -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [pytest.param("jpg", id="progressive jpeg"), pytest.param("png", id="interlaced png")])
def test_an_interlaced_original_over_its_limit_is_refused_from_its_header_naming_the_setting(
    make_settings: MakeSettings, fmt: str
) -> None:
    data = with_size(small(interlaced=True, fmt=fmt), 10_000, 6001)
    with pytest.raises(InterlacedTooLargeError) as raised:
        imaging.probe(data, make_settings(max_source_pixels=10**9).image_limits)
    assert raised.value.status == 422
    assert raised.value.reason == "interlaced_limit"
    assert "over the limit of 60000000 pixels (MAX_INTERLACED_PIXELS)" in raised.value.detail


@pytest.mark.parametrize("fmt", ["jpg", "png"])
def test_a_12_mp_interlaced_original_passes_by_default(make_settings: MakeSettings, fmt: str) -> None:
    info = imaging.probe(with_size(small(interlaced=True, fmt=fmt), 4000, 3000), make_settings().image_limits)
    assert (info.width, info.height, info.interlaced) == (4000, 3000, True)


@pytest.mark.parametrize("fmt", ["jpg", "png"])
def test_the_same_size_without_interlacing_passes_the_header_check(make_settings: MakeSettings, fmt: str) -> None:
    info = imaging.probe(with_size(small(interlaced=False, fmt=fmt), 4000, 3000), make_settings().image_limits)
    assert (info.width, info.height, info.interlaced) == (4000, 3000, False)


def test_an_interlaced_original_within_the_limit_renders(make_settings: MakeSettings) -> None:
    data = small(interlaced=True, fmt="png")
    assert imaging.probe(data, make_settings().image_limits).interlaced
    assert imaging.render(data, parse_spec("32x"), "png", make_settings().image_limits).width == 32


def test_a_progressive_original_over_the_limit_is_a_422_and_nothing_is_stored(
    sidecar_with: Callable[..., SidecarApp], storage: CountingStorage
) -> None:
    storage.inner.put("big/progressive.jpg", with_size(small(interlaced=True, fmt="jpg"), 4000, 3000), "", "")
    refused = counter(metrics.REJECTIONS, "interlaced_limit")
    response = get(sidecar_with(max_interlaced_pixels=10_000_000), url("big/progressive.jpg", "100x", "jpg"))
    assert response.status_int == 422
    assert response.cache_control.no_store
    assert counter(metrics.REJECTIONS, "interlaced_limit") == refused + 1
    assert storage.inner.list("_r/") == []


def test_an_original_over_the_byte_limit_is_a_422(
    sidecar_with: Callable[..., SidecarApp], storage: CountingStorage
) -> None:
    storage.inner.put("heavy.jpg", photo(300, 200), "", "")
    response = get(sidecar_with(max_source_bytes=1000), url("heavy.jpg", "100x", "jpg"))
    assert response.status_int == 422
    assert storage.inner.list("_r/") == []


def test_libvips_keeps_no_operation_cache() -> None:
    assert pyvips.cache_get_max() == 0


# Allowed widths -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "status"),
    [
        pytest.param("640x", 200, id="listed width"),
        pytest.param("640x480-fill", 200, id="listed width with a height"),
        pytest.param("x320", 200, id="height only, a listed side"),
        pytest.param("thumb", 200, id="preset of an unlisted width"),
        pytest.param("full", 200, id="preset of full size"),
        pytest.param("640x-q75", 200, id="listed quality"),
        pytest.param("640x-blur5", 200, id="listed blur"),
        pytest.param("641x", 400, id="unlisted width"),
        pytest.param("100x100-pad", 400, id="unlisted width with a height"),
        pytest.param("x200", 400, id="height only, an unlisted side"),
        pytest.param("x4096-up", 400, id="height only, enlarged"),
        pytest.param("0x0", 400, id="full size"),
        pytest.param("0x0-q7", 400, id="full size, any quality"),
        pytest.param("640x-q7", 400, id="unlisted quality"),
        pytest.param("640x-blur9", 400, id="unlisted blur"),
    ],
)
def test_explicit_specs_are_made_only_from_the_listed_sides_qualities_and_blurs(
    sidecar_with: Callable[..., SidecarApp], storage: CountingStorage, spec: str, status: int
) -> None:
    storage.inner.put("w.jpg", photo(800, 600), "", "")
    sidecar = sidecar_with(
        allowed_widths=("320", "640"),
        allowed_qualities=("50", "75"),
        allowed_blurs=("5",),
        presets={"thumb": "150x150-fill", "full": "0x0"},
    )
    storage.calls.clear()
    response = get(sidecar, url("w.jpg", spec, "jpg"))
    assert response.status_int == status, response.text
    if status == 400:
        assert "allowed" in response.text
        assert storage.calls == []


# The transform deadline ---------------------------------------------------------------------------------------------


def test_a_transform_past_its_deadline_is_stopped_inside_libvips(
    make_settings: MakeSettings, slow_original: bytes
) -> None:
    settings = make_settings(transform_timeout=0.3)
    with pytest.raises(TransformTimeoutError) as raised:
        imaging.render(slow_original, parse_spec("4000x-sharp"), "png", settings.image_limits)
    # libvips reported the kill as an error while it computed pixels: the stop did not wait for the encode to end.
    assert isinstance(raised.value.__context__, pyvips.Error)


def test_a_transform_past_its_deadline_is_a_503_with_retry_after_and_nothing_is_stored(
    sidecar_with: Callable[..., SidecarApp], storage: CountingStorage, slow_original: bytes
) -> None:
    storage.inner.put("slow.jpg", slow_original, "", "")
    timed_out = counter(metrics.REJECTIONS, "transform_timeout")
    response = get(sidecar_with(transform_timeout=0.05), url("slow.jpg", "2000x-sharp", "png"))
    assert response.status_int == 503
    assert response.headers["Retry-After"] == "10"
    assert response.cache_control.no_store
    assert counter(metrics.REJECTIONS, "transform_timeout") == timed_out + 1
    assert storage.inner.list("_r/") == []


# The machine's locks ------------------------------------------------------------------------------------------------


def test_a_flight_lock_excludes_a_second_holder_and_leaves_no_file(lock_dir: str) -> None:
    first, second = NodeLocks(lock_dir, 1), NodeLocks(lock_dir, 1)
    with (
        first.flight("_r/a.jpg/100x-sig.jpg", wait=0),
        pytest.raises(OverloadedError),
        second.flight("_r/a.jpg/100x-sig.jpg", wait=0.05),
    ):
        pass
    with second.flight("_r/a.jpg/100x-sig.jpg", wait=0):
        assert len(os.listdir(lock_dir)) == 1
    assert os.listdir(lock_dir) == []


def test_a_waiter_gets_the_flight_lock_when_its_holder_lets_go(lock_dir: str) -> None:
    locks = NodeLocks(lock_dir, 1)
    held, order = threading.Event(), []

    def hold() -> None:
        with locks.flight("k", wait=10) as contended:
            held.set()
            order.append(("holder", contended))

    with locks.flight("k", wait=0) as contended:
        waiter = threading.Thread(target=hold)
        waiter.start()
        assert not held.wait(0.2)
        order.append(("first", contended))
    waiter.join(5)
    # The waiter knows it came second: what it then finds in storage was made by the first, not missed by nginx.
    assert order == [("first", False), ("holder", True)]
    assert os.listdir(lock_dir) == []


def test_a_lock_held_by_a_killed_process_is_released(lock_dir: str) -> None:
    code = (
        "import sys, time\n"
        "from resize_sidecar.media.locks import NodeLocks\n"
        f"with NodeLocks({lock_dir!r}, 1).flight('k', wait=0):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(OverloadedError), NodeLocks(lock_dir, 1).flight("k", wait=0.05):
            pass
        holder.kill()
        holder.wait(10)
        with NodeLocks(lock_dir, 1).flight("k", wait=5):
            pass
    finally:
        holder.kill()
        holder.wait(10)
    assert os.listdir(lock_dir) == []


def test_transform_slots_admit_only_their_number_at_once(lock_dir: str) -> None:
    locks = NodeLocks(lock_dir, 2)
    with locks.transform_slot(0), locks.transform_slot(0), pytest.raises(OverloadedError), locks.transform_slot(0.05):
        pass
    with locks.transform_slot(0), locks.transform_slot(0):
        pass


def test_the_lock_folder_is_made_private(lock_dir: str) -> None:
    NodeLocks(lock_dir, 1)
    assert os.stat(lock_dir).st_mode & 0o777 == 0o700


def test_a_lock_folder_others_can_write_to_is_refused(lock_dir: str) -> None:
    os.mkdir(lock_dir)
    os.chmod(lock_dir, 0o777)
    with pytest.raises(SettingsError, match="RESIZE_SIDECAR_LOCK_DIR"):
        NodeLocks(lock_dir, 1)


# Races ----------------------------------------------------------------------------------------------------------------


def test_a_stored_derivative_found_without_waiting_is_answered_and_warned_about(
    sidecar_with: Callable[..., SidecarApp], storage: CountingStorage, caplog: pytest.LogCaptureFixture
) -> None:
    # nginx sends only misses here: one stored and found at once means nginx could not read it.
    storage.inner.put("seen.jpg", photo(300, 200), "", "")
    sidecar = sidecar_with()
    first = get(sidecar, url("seen.jpg", "100x", "jpg"))
    before = len(storage.calls)
    again = get(sidecar, url("seen.jpg", "100x", "jpg"))
    assert (again.status_int, again.body, again.headers["X-Derivative"]) == (200, first.body, "existing")
    assert "nginx cannot read derivatives" in caplog.text
    # One look in storage, under the lock, and no read of the original.
    assert storage.calls[before:] == ["get"]


def test_a_request_that_waited_for_a_concurrent_maker_answers_its_bytes_without_the_warning(
    sidecar_with: Callable[..., SidecarApp], storage: CountingStorage, lock_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    storage.inner.put("shared.jpg", photo(300, 200), "", "")
    sidecar = sidecar_with()
    path = url("shared.jpg", "100x", "jpg")
    storage_key = stored_key(path)
    answers = []
    with NodeLocks(lock_dir, 1).flight(storage_key, wait=0):
        waiter = threading.Thread(target=lambda: answers.append(get(sidecar, path)))
        waiter.start()
        waiter.join(0.3)
        assert answers == [], "the request did not wait for the lock's holder"
        storage.inner.put(storage_key, b"the holder's bytes", "image/jpeg", "")
    waiter.join(10)
    assert (answers[0].status_int, answers[0].body) == (200, b"the holder's bytes")
    assert answers[0].headers["X-Derivative"] == "existing"
    assert "nginx cannot read derivatives" not in caplog.text


class LosingStorage(LocalStorage):
    """Local storage where another machine stores each derivative just before this one tries to."""

    def put_if_absent(
        self, key: str, data: bytes, content_type: str, cache_control: str, metadata: Metadata | None = None
    ) -> bool:
        super().put_if_absent(key, b"the winner's bytes", content_type, cache_control)
        return super().put_if_absent(key, data, content_type, cache_control, metadata)


def test_a_miss_that_loses_the_write_race_answers_the_winners_bytes(
    make_settings: MakeSettings, lock_dir: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = LosingStorage(tmp_path / "race")
    storage.put("race.jpg", photo(300, 200), "", "")
    sidecar = make_app(make_settings(lock_dir=lock_dir), storage=storage)
    response = get(sidecar, url("race.jpg", "100x", "jpg"))
    assert (response.status_int, response.body) == (200, b"the winner's bytes")
    assert response.headers["X-Derivative"] == "existing"
    assert [item.key for item in storage.list("_r/")] == [
        "_r/race.jpg/100x.jpg"
    ]
    assert "nginx cannot read derivatives" not in caplog.text


# Overload -----------------------------------------------------------------------------------------------------------


def test_a_miss_while_every_transform_slot_stays_busy_is_a_503_and_hits_are_answered(
    sidecar_with: Callable[..., SidecarApp], storage: CountingStorage, lock_dir: str
) -> None:
    storage.inner.put("o.jpg", photo(300, 200), "", "")
    sidecar = sidecar_with(max_concurrent_transforms=1, overload_wait=0.05)
    stored = get(sidecar, url("o.jpg", "100x", "jpg"))
    overloaded = counter(metrics.REJECTIONS, "overloaded")
    with NodeLocks(lock_dir, 1).transform_slot(0):
        miss = get(sidecar, url("o.jpg", "120x", "jpg"))
        hit = get(sidecar, url("o.jpg", "100x", "jpg"))
    assert miss.status_int == 503
    assert miss.headers["Retry-After"] == "2"
    assert miss.cache_control.no_store
    assert counter(metrics.REJECTIONS, "overloaded") == overloaded + 1
    assert (hit.status_int, hit.body) == (200, stored.body)
    assert get(sidecar, url("o.jpg", "120x", "jpg")).status_int == 200


# Settings -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        pytest.param("ALLOWED_WIDTHS", "320,wide", id="width not a number"),
        pytest.param("ALLOWED_WIDTHS", "0", id="width zero"),
        pytest.param("ALLOWED_QUALITIES", "0,75", id="quality zero"),
        pytest.param("ALLOWED_QUALITIES", "101", id="quality over 100"),
        pytest.param("ALLOWED_BLURS", "soft", id="blur not a number"),
        pytest.param("REWRITE_KEY_PREFIXES", "/photos/", id="key prefix with a leading slash"),
        pytest.param("MAX_INTERLACED_PIXELS", "0", id="interlaced limit zero"),
        pytest.param("MAX_TIFF_PIXELS", "0", id="tiff limit zero"),
        pytest.param("MAX_BMP_PIXELS", "-1", id="negative bmp limit"),
        pytest.param("TRANSFORM_TIMEOUT", "0", id="no time to transform"),
        pytest.param("TRANSFORM_TIMEOUT", "25", id="deadline past gunicorn's timeout"),
        pytest.param("MAX_CONCURRENT_TRANSFORMS", "-1", id="negative slots"),
        pytest.param("OVERLOAD_WAIT", "-1", id="negative wait"),
        pytest.param("LOCK_DIR", "relative/locks", id="relative lock folder"),
    ],
)
def test_invalid_hardening_settings_stop_start_up_naming_the_setting(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"RESIZE_SIDECAR_{variable}"):
        load(environ={f"RESIZE_SIDECAR_{variable}": value})


def test_zero_transform_slots_means_two_per_cpu() -> None:
    assert Settings(max_concurrent_transforms=0).transform_slots == 2 * len(os.sched_getaffinity(0))
    assert Settings(max_concurrent_transforms=3).transform_slots == 3


# The request log ----------------------------------------------------------------------------------------------------


def logged(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(record.getMessage()) for record in caplog.records if record.name == "resize_sidecar.requests"]


def test_each_request_writes_one_json_line_with_its_id_key_and_outcome(
    sidecar_with: Callable[..., SidecarApp], storage: CountingStorage, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="resize_sidecar.requests")
    storage.inner.put("logged/cat.jpg", photo(300, 200), "", "")
    sidecar = sidecar_with()
    path = url("logged/cat.jpg", "100x", "webp")
    made = get(sidecar, path + "?ignored=1", HTTP_X_REQUEST_ID="abc123")
    again = get(sidecar, path)
    refused = get(sidecar, path[: -len("0000.webp")] + "0000.webp")
    lines = logged(caplog)
    assert [line["cache"] for line in lines] == ["created", "existing", "error"]
    assert lines[0] == {
        "request_id": "abc123",
        "method": "GET",
        "path": path,
        "route": "derivative",
        "key": "logged/cat.jpg",
        "spec": "100x",
        "fmt": "webp",
        "status": 200,
        "duration_ms": lines[0]["duration_ms"],
        "bytes": len(made.body),
        "cache": "created",
        "reason": None,
    }
    assert made.headers["X-Request-ID"] == "abc123"
    assert again.headers["X-Request-ID"] == lines[1]["request_id"]
    assert (lines[2]["status"], lines[2]["reason"]) == (refused.status_int, "signature")


@pytest.mark.parametrize(
    "given",
    [
        pytest.param("", id="empty"),
        pytest.param("a b", id="space"),
        pytest.param('a"b', id="quote"),
        pytest.param("x" * 129, id="too long"),
        pytest.param("caf\u00e9", id="not ascii"),
    ],
)
def test_an_unsafe_request_id_is_replaced_by_a_new_one(sidecar_with: Callable[..., SidecarApp], given: str) -> None:
    response = get(sidecar_with(), "/healthz", HTTP_X_REQUEST_ID=given)
    assert response.headers["X-Request-ID"] != given
    assert len(response.headers["X-Request-ID"]) == 32


def test_a_conditional_request_is_logged_as_the_304_it_got(
    sidecar_with: Callable[..., SidecarApp], storage: CountingStorage, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="resize_sidecar.requests")
    storage.inner.put("etag.jpg", photo(300, 200), "", "")
    sidecar = sidecar_with()
    etag = get(sidecar, url("etag.jpg", "60x", "jpg")).etag
    response = get(sidecar, url("etag.jpg", "60x", "jpg"), HTTP_IF_NONE_MATCH=f'"{etag}"')
    line = logged(caplog)[-1]
    assert (response.status_int, line["status"], line["bytes"]) == (304, 304, 0)
