"""The miss path without HTTP: what the Deriver refuses under the settings' lists and limits, word for word, and the
exact Derivative it answers when a derivative is found, made, lost to a concurrent writer, or not stored."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from resize_sidecar.core import private
from resize_sidecar.core.errors import (
    MalformedPathError,
    NotFoundError,
    OverloadedError,
    PolicyError,
    SourceChangedError,
    SourceTooLargeError,
    StorageError,
)
from resize_sidecar.core.formats import FormatName
from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import DerivativePath, format_path, parse_path, parse_spec, sign
from resize_sidecar.media import imaging
from resize_sidecar.media.derive import Derivative, Deriver, Source
from resize_sidecar.media.local import LocalStorage
from resize_sidecar.media.locks import NodeLocks
from tests.support.images import photo
from tests.support.servers import SECRET

KEY = "photos/cat.jpg"
TOO_LARGE = "derivatives are at most 400 pixels wide and high (MAX_OUTPUT_DIMENSION)"


def make_deriver(tmp_path: Path, storage: LocalStorage | None = None, **overrides: Any) -> Deriver:
    values: dict[str, Any] = {
        "local_root": str(tmp_path / "media"),
        "secrets": (SECRET,),
        "lock_dir": str(tmp_path / "locks"),
        **overrides,
    }
    settings = Settings(**values).validate()
    return Deriver(settings, storage or LocalStorage(tmp_path / "media"))


def signed(spec: str, fmt: str = "webp", **where: str) -> str:
    return format_path(KEY, spec, fmt, SECRET, **where)


@pytest.mark.parametrize(
    ("overrides", "spec", "detail"),
    [
        ({"max_output_dimension": 400}, "401x", TOO_LARGE),
        ({"max_output_dimension": 400}, "x401", TOO_LARGE),
        ({"allowed_widths": ("640", "320")}, "500x", "width 500 is not one of the allowed widths (320, 640)"),
        ({"allowed_widths": ("320",)}, "x500", "height 500 is not one of the allowed widths (320)"),
        ({"allowed_widths": ("320",)}, "0x0", "full-size derivatives need a preset when allowed widths are set"),
        ({"allowed_qualities": ("90", "80")}, "320x-q50", "quality 50 is not one of the allowed qualities (80, 90)"),
        ({"allowed_blurs": ("5",)}, "320x-blur9", "blur 9 is not one of the allowed blurs (5)"),
    ],
)
def test_a_spec_outside_the_settings_is_refused_naming_the_setting(
    tmp_path: Path, overrides: dict[str, Any], spec: str, detail: str
) -> None:
    deriver = make_deriver(tmp_path, **overrides)

    with pytest.raises(PolicyError) as refused:
        deriver.authorize(signed(spec))

    assert refused.value.detail == detail


@pytest.mark.parametrize(
    ("overrides", "spec"),
    [
        ({"max_output_dimension": 400}, "400x400"),
        ({"allowed_widths": ("320", "640")}, "640x"),
        ({"allowed_widths": ("320",)}, "x320"),
        ({"allowed_widths": ("320",), "allowed_qualities": ("80",), "allowed_blurs": ("5",)}, "320x"),
        ({"allowed_qualities": ("80",), "allowed_blurs": ("5",)}, "320x-q80-blur5"),
        ({"allowed_widths": ("320",), "presets": {"hero": "1200x-q50-blur9"}}, "hero"),
    ],
)
def test_a_spec_the_settings_allow_is_authorized_as_the_spec_it_stands_for(
    tmp_path: Path, overrides: dict[str, Any], spec: str
) -> None:
    deriver = make_deriver(tmp_path, **overrides)
    path = signed(spec)

    parsed, resolved = deriver.authorize(path)

    assert parsed == parse_path(path)
    assert resolved == deriver.settings.preset_specs.get(spec, resolved)
    assert max(resolved.width or 0, resolved.height or 0) in (320, 400, 640, 1200)


def test_a_path_is_read_under_the_configured_media_url_and_derived_prefix(tmp_path: Path) -> None:
    deriver = make_deriver(tmp_path, media_url="/img/", derived_prefix="d/")
    path = signed("320x", media_url="/img/", derived_prefix="d/")

    parsed, _ = deriver.authorize(path)

    assert parsed.key == KEY
    assert deriver.storage_key(parsed) == f"d/{KEY}/320x.webp"


@pytest.mark.parametrize(
    "mode",
    [{"on_miss": "serve"}, {"on_miss": "redirect", "public_base_url": "https://media.example.org"}],
    ids=["keys without the signature", "signed keys"],
)
def test_a_storage_key_is_read_back_as_the_derivative_stored_there(tmp_path: Path, mode: dict[str, str]) -> None:
    on_miss = mode["on_miss"]
    deriver = make_deriver(tmp_path, derived_prefix="d/", **mode)
    path, _ = deriver.authorize(signed("320x-q70", derived_prefix="d/"))
    storage_key = deriver.storage_key(path)
    assert (path.signature in storage_key) == (on_miss == "redirect")

    found = deriver.stored_derivative(storage_key, "d/")

    assert (found.key, found.spec, found.fmt) == (KEY, "320x-q70", "webp")
    with pytest.raises(MalformedPathError):
        deriver.stored_derivative(storage_key, "_r/")


def test_a_stored_derivative_is_answered_as_found(tmp_path: Path) -> None:
    deriver = make_deriver(tmp_path)
    path = signed("320x")
    storage_key = parse_path(path).storage_key("_r/")
    deriver.storage.put(storage_key, b"stored bytes", "image/webp", "no-cache")

    assert deriver.derive(path) == Derivative(b"stored bytes", "image/webp", storage_key, created=False)
    assert deriver.ensure(path) == Derivative(b"", "image/webp", storage_key, created=False)


def test_a_missing_derivative_is_made_stored_and_answered(tmp_path: Path) -> None:
    deriver = make_deriver(tmp_path)
    deriver.storage.put(KEY, photo(640, 480), "image/jpeg", "no-cache")
    path = signed("320x", "png")
    storage_key = parse_path(path).storage_key("_r/")

    made = deriver.ensure(path)

    assert (made.content_type, made.storage_key, made.created, made.stored, made.concurrent) == (
        "image/png",
        storage_key,
        True,
        True,
        False,
    )
    assert made.body == deriver.storage.get(storage_key)
    assert made.body.startswith(b"\x89PNG")
    assert 0 < made.transform_seconds < 60


class UnwritableStorage(LocalStorage):
    def put_if_absent(self, key: str, data: bytes, *args: Any, **kwargs: Any) -> bool:
        raise StorageError("the disk is full")


def test_a_derivative_that_cannot_be_stored_is_answered_all_the_same(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = UnwritableStorage(tmp_path / "media")
    deriver = make_deriver(tmp_path, storage)
    storage.put(KEY, photo(640, 480), "image/jpeg", "no-cache")
    path = signed("320x", "png")
    storage_key = parse_path(path).storage_key("_r/")

    with caplog.at_level(logging.WARNING, logger="resize_sidecar.media.derive"):
        made = deriver.derive(path)

    assert (made.storage_key, made.created, made.stored, made.concurrent) == (storage_key, True, False, False)
    assert made.body.startswith(b"\x89PNG")
    assert 0 < made.transform_seconds < 60
    assert [record.getMessage() for record in caplog.records] == [f"could not store {storage_key}: the disk is full"]


class ConcurrentWriterStorage(LocalStorage):
    """Another node stores the derivative between this one's look and its write."""

    def put_if_absent(self, key: str, data: bytes, *args: Any, **kwargs: Any) -> bool:
        self.put(key, b"the other node's bytes", "image/png", "no-cache")
        return False


def test_a_derivative_another_node_stored_first_is_answered_with_its_bytes(tmp_path: Path) -> None:
    storage = ConcurrentWriterStorage(tmp_path / "media")
    deriver = make_deriver(tmp_path, storage)
    storage.put(KEY, photo(640, 480), "image/jpeg", "no-cache")
    path = signed("320x", "png")

    made = deriver.derive(path)

    assert (made.body, made.content_type, made.storage_key) == (
        b"the other node's bytes",
        "image/png",
        parse_path(path).storage_key("_r/"),
    )
    assert (made.created, made.stored, made.concurrent) == (False, True, True)
    assert 0 < made.transform_seconds < 60


class ReplacedOriginalStorage(LocalStorage):
    """The original is replaced (or deleted) while its derivative is made."""

    after_write: str | None = "another version"

    def put_if_absent(self, key: str, data: bytes, *args: Any, **kwargs: Any) -> bool:
        written = super().put_if_absent(key, data, *args, **kwargs)
        self.replaced = True
        return written

    def version(self, key: str) -> str | None:
        return self.after_write if getattr(self, "replaced", False) else super().version(key)


@pytest.mark.parametrize(
    ("after_write", "error", "detail"),
    [
        ("another version", SourceChangedError, f"the original {KEY!r} was replaced while this derivative was made"),
        (None, NotFoundError, f"the original {KEY!r} was deleted while this derivative was made"),
    ],
)
def test_a_derivative_of_an_original_replaced_or_deleted_meanwhile_is_deleted_again(
    tmp_path: Path, after_write: str | None, error: type[Exception], detail: str
) -> None:
    storage = ReplacedOriginalStorage(tmp_path / "media")
    storage.after_write = after_write
    deriver = make_deriver(tmp_path, storage)
    storage.put(KEY, photo(640, 480), "image/jpeg", "no-cache")
    path = signed("320x", "png")

    with pytest.raises(error) as refused:
        deriver.derive(path)

    assert refused.value.detail == detail  # type: ignore[attr-defined]
    assert not storage.exists(parse_path(path).storage_key("_r/"))


class UnreadableVersionStorage(LocalStorage):
    def version(self, key: str) -> str | None:
        raise StorageError("the store did not answer")


def test_a_derivative_whose_original_cannot_be_looked_at_again_is_deleted_and_the_error_raised(
    tmp_path: Path,
) -> None:
    storage = UnreadableVersionStorage(tmp_path / "media")
    deriver = make_deriver(tmp_path, storage)
    storage.put("_r/photos/cat.jpg/320x-made.png", b"made", "image/png", "no-cache")

    with pytest.raises(StorageError) as failed:
        deriver.confirm_source(KEY, "the version it was made from", "_r/photos/cat.jpg/320x-made.png")

    assert failed.value.detail == "the store did not answer"
    assert not storage.exists("_r/photos/cat.jpg/320x-made.png")


def test_a_missing_original_and_one_over_the_byte_limit_are_refused_naming_why(tmp_path: Path) -> None:
    deriver = make_deriver(tmp_path, max_source_bytes=1000)

    with pytest.raises(NotFoundError) as missing:
        deriver.derive(signed("320x"))
    deriver.storage.put(KEY, photo(640, 480), "image/jpeg", "no-cache")
    with pytest.raises(SourceTooLargeError) as large:
        deriver.derive(signed("320x"))

    assert missing.value.detail == "no original at 'photos/cat.jpg'"
    assert large.value.detail.endswith(" (MAX_SOURCE_BYTES)")


class UndeletableStorage(UnreadableVersionStorage):
    def delete(self, key: str) -> None:
        raise StorageError("the store refused the delete")


def test_when_neither_the_original_nor_the_delete_answers_the_first_error_is_raised(tmp_path: Path) -> None:
    deriver = make_deriver(tmp_path, UndeletableStorage(tmp_path / "media"))

    with pytest.raises(StorageError) as failed:
        deriver.confirm_source(KEY, "the version it was made from", "_r/photos/cat.jpg/320x-made.png")

    assert failed.value.detail == "the store did not answer"


def test_a_miss_that_waited_for_a_concurrent_one_answers_what_it_stored(tmp_path: Path) -> None:
    deriver = make_deriver(tmp_path, transform_timeout=4, overload_wait=2)
    path = signed("320x")
    storage_key = parse_path(path).storage_key("_r/")
    holder = NodeLocks(deriver.settings.lock_path, 1)
    holding, stored = threading.Event(), threading.Event()

    def concurrent_miss() -> None:
        # Longer than the overload wait alone: the wait for a concurrent miss adds the transform's time limit.
        with holder.flight(storage_key, 0):
            holding.set()
            time.sleep(3)
            deriver.storage.put(storage_key, b"the concurrent miss's bytes", "image/webp", "no-cache")
        stored.set()

    thread = threading.Thread(target=concurrent_miss)
    thread.start()
    holding.wait(5)
    try:
        found = deriver.derive(path)
    finally:
        thread.join()

    assert stored.is_set()
    stored_bytes = b"the concurrent miss's bytes"
    assert found == Derivative(stored_bytes, "image/webp", storage_key, created=False, concurrent=True)


def test_a_transform_slot_waits_as_long_as_asked_not_the_overload_wait(tmp_path: Path) -> None:
    deriver = make_deriver(tmp_path, max_concurrent_transforms=1, overload_wait=5)
    other_process = NodeLocks(deriver.settings.lock_path, 1)

    with other_process.transform_slot(0):
        started = time.monotonic()
        with pytest.raises(OverloadedError), deriver.transform_slot(0.2):
            pass

    assert time.monotonic() - started < 2


def test_a_derivative_made_from_an_original_in_hand_reports_its_transform_time(tmp_path: Path) -> None:
    deriver = make_deriver(tmp_path)
    data = photo(640, 480)
    deriver.storage.put(KEY, data, "image/jpeg", "no-cache")
    version = deriver.storage.version(KEY)
    assert version is not None
    source = Source(data, version, imaging.probe(data, deriver.limits))
    path = parse_path(signed("320x", "png"))

    made = deriver.derive_from(source, path, deriver.authorize_path(path))

    assert (made.created, made.stored) == (True, True)
    assert made.body == deriver.storage.get(path.storage_key("_r/"))
    assert 0 < made.transform_seconds < 60


def stored_path(fmt: FormatName, signed_as: str, secret: str) -> DerivativePath:
    return DerivativePath(key=KEY, spec="320x", fmt=fmt, signature=sign(KEY, "320x", signed_as, secret))


def test_a_stored_derivative_s_spec_is_checked_against_the_settings_as_they_are_now(tmp_path: Path) -> None:
    deriver = make_deriver(tmp_path, allowed_widths=("320",))

    assert deriver.check_spec("320x") == parse_spec("320x")
    with pytest.raises(PolicyError, match="allowed widths"):
        deriver.check_spec("640x")
    with pytest.raises(MalformedPathError, match="unknown preset"):
        deriver.check_spec("gone")


def test_a_private_path_is_read_under_the_configured_media_url(tmp_path: Path) -> None:
    deriver = make_deriver(tmp_path, media_url="/img/")
    path = stored_path("webp", "webp", private.signing_key(SECRET))

    parsed, signed_format = deriver.parse(path.public_path("/img/", "_p/"))

    assert (parsed, signed_format) == (path, None)
