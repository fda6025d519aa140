"""The storage contract, run against LocalStorage and against S3Storage on moto's S3 server over HTTP.

Behaviour only one backend has (file modes, Content-Type on S3, the S3 prefix) and the faults moto cannot produce
(409 conflicts, short bodies, silent endpoints) follow the contract class. Faults come from real sockets on the
loopback interface: a closed port, a listener that never answers, and a small scripted HTTP server.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import stat
import threading
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from resize_sidecar.core.errors import (
    MalformedPathError,
    SidecarError,
    SourceTooLargeError,
    StorageConflictError,
    StorageError,
    StorageTimeoutError,
)
from resize_sidecar.core.settings import Settings
from resize_sidecar.media.local import LocalStorage
from resize_sidecar.media.s3 import S3Storage
from resize_sidecar.media.storage import Storage
from resize_sidecar.media.stores import open_storage

JPEG = "image/jpeg"
CACHE = "public, max-age=31536000, immutable"

TRICKY_KEYS = [
    pytest.param("with space.jpg", id="space"),
    pytest.param("a+b.jpg", id="plus"),
    pytest.param("100%.jpg", id="percent"),
    pytest.param("%41%2F.jpg", id="looks-percent-encoded"),
    pytest.param("a&b=c.jpg", id="ampersand"),
    pytest.param("hash#tag.jpg", id="hash"),
    pytest.param("what?.jpg", id="question-mark"),
    pytest.param("~tilde.jpg", id="tilde"),
    pytest.param("semi;colon.jpg", id="semicolon"),
    pytest.param("café.jpg", id="utf8-accent"),
    pytest.param("日本/写真.jpg", id="utf8-cjk"),
    pytest.param("a/b/c/d/e/f/g/h/i/j/k.jpg", id="deep"),
    pytest.param("_r/photos/cat.jpg/200x200-fill-0123456789abcdef0123456789abcdef.webp", id="derivative"),
]

UNSAFE_KEYS = [
    pytest.param("", id="empty"),
    pytest.param("/etc/passwd", id="absolute"),
    pytest.param("a/../../b", id="dot-dot"),
    pytest.param("./a", id="dot"),
    pytest.param("a//b", id="empty-segment"),
    pytest.param("a/", id="trailing-slash"),
    pytest.param("a\\..\\b", id="backslash"),
    pytest.param("a\x00b", id="nul"),
]


@pytest.fixture(params=["local", "s3", "s3-with-prefix"])
def storage_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def keys(storage: Storage, prefix: str = "", **options: Any) -> list[str]:
    return [item.key for item in storage.list(prefix, **options)]


class TestStorageContract:
    def test_bytes_written_are_read_back_unchanged(self, storage: Storage) -> None:
        data = bytes(range(256)) * 1000
        storage.put("photos/cat.jpg", data, JPEG, CACHE)
        assert storage.get("photos/cat.jpg") == data
        assert storage.exists("photos/cat.jpg")

    def test_a_presigned_url_reads_the_object_without_credentials_where_the_store_has_them(
        self, storage: Storage
    ) -> None:
        storage.put("signed/a b+c.jpg", b"original", "image/jpeg", "no-cache")
        url = storage.presigned_url("signed/a b+c.jpg", 60)
        if isinstance(storage, LocalStorage):
            assert url is None  # the media API signs its own URLs for local storage
            return
        assert url is not None
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert answer.read() == b"original"

    def test_an_empty_object_is_stored_and_is_not_absent(self, storage: Storage) -> None:
        storage.put("empty.jpg", b"", JPEG, CACHE)
        assert storage.get("empty.jpg") == b""
        assert storage.exists("empty.jpg")

    def test_a_missing_key_reads_as_none_and_does_not_exist(self, storage: Storage) -> None:
        assert storage.get("nothing/here.jpg") is None
        assert storage.get("nothing/here.jpg", max_bytes=10) is None
        assert not storage.exists("nothing/here.jpg")

    def test_put_replaces_an_existing_object(self, storage: Storage) -> None:
        storage.put("a.jpg", b"old", JPEG, CACHE)
        storage.put("a.jpg", b"new", JPEG, CACHE)
        assert storage.get("a.jpg") == b"new"

    def test_put_if_absent_writes_once_and_keeps_the_first_bytes(self, storage: Storage) -> None:
        assert storage.put_if_absent("_r/a.jpg/x.webp", b"first", "image/webp", CACHE) is True
        assert storage.put_if_absent("_r/a.jpg/x.webp", b"second", "image/webp", CACHE) is False
        assert storage.get("_r/a.jpg/x.webp") == b"first"

    @pytest.mark.parametrize("key", TRICKY_KEYS)
    def test_keys_with_url_special_and_utf8_characters_round_trip(self, storage: Storage, key: str) -> None:
        storage.put(key, key.encode(), JPEG, CACHE)
        assert storage.get(key) == key.encode()
        assert storage.exists(key)
        assert keys(storage) == [key]
        storage.delete(key)
        assert not storage.exists(key)

    @pytest.mark.parametrize("key", UNSAFE_KEYS)
    def test_keys_that_could_leave_the_storage_are_refused_by_every_operation(self, storage: Storage, key: str) -> None:
        for operation in (
            lambda: storage.get(key),
            lambda: storage.exists(key),
            lambda: storage.delete(key),
            lambda: storage.put(key, b"x", JPEG, CACHE),
            lambda: storage.put_if_absent(key, b"x", JPEG, CACHE),
        ):
            with pytest.raises(MalformedPathError):
                operation()

    @pytest.mark.parametrize("prefix", ["/abs/", "a/../", "a//b/", "a\\b", "a\x00"])
    def test_prefixes_that_could_leave_the_storage_are_refused(self, storage: Storage, prefix: str) -> None:
        with pytest.raises(MalformedPathError):
            storage.list(prefix)
        with pytest.raises(MalformedPathError):
            storage.delete_prefix(prefix)

    def test_get_accepts_exactly_max_bytes_and_refuses_one_more(self, storage: Storage) -> None:
        storage.put("big.jpg", b"x" * 1000, JPEG, CACHE)
        assert storage.get("big.jpg", max_bytes=1000) == b"x" * 1000
        with pytest.raises(SourceTooLargeError):
            storage.get("big.jpg", max_bytes=999)

    def test_list_is_sorted_in_utf8_byte_order_and_pages_with_start_after(self, storage: Storage) -> None:
        names = ["b.jpg", "a/z.jpg", "a.jpg", "a0.jpg", "é.jpg", "日本.jpg", "Z.jpg", "a/a.jpg", "a b.jpg"]
        for name in names:
            storage.put(name, b"x", JPEG, CACHE)
        expected = sorted(names, key=lambda name: name.encode("utf-8"))
        assert keys(storage) == expected
        pages, after = [], ""
        while page := keys(storage, start_after=after, limit=4):
            pages.append(page)
            after = page[-1]
        assert pages == [expected[0:4], expected[4:8], expected[8:]]
        assert storage.list(limit=0) == []

    def test_list_returns_only_keys_under_the_prefix(self, storage: Storage) -> None:
        for name in ("photos/a.jpg", "photos/b/c.jpg", "photo.jpg", "photos2/d.jpg", "x.jpg"):
            storage.put(name, b"x", JPEG, CACHE)
        assert keys(storage, "photos/") == ["photos/a.jpg", "photos/b/c.jpg"]
        assert keys(storage, "photo") == ["photo.jpg", "photos/a.jpg", "photos/b/c.jpg", "photos2/d.jpg"]
        assert keys(storage, "photos/b") == ["photos/b/c.jpg"]
        assert keys(storage, "photos/", start_after="photos/a.jpg") == ["photos/b/c.jpg"]
        assert keys(storage, "nothing/") == []

    def test_list_reports_the_size_and_an_aware_utc_modification_time(self, storage: Storage) -> None:
        storage.put("a.jpg", b"12345", JPEG, CACHE)
        [item] = storage.list()
        assert (item.key, item.size) == ("a.jpg", 5)
        assert item.last_modified.utcoffset() == timedelta(0)
        assert abs(datetime.now(UTC) - item.last_modified) < timedelta(minutes=5)

    def test_delete_removes_the_object_and_ignores_a_missing_one(self, storage: Storage) -> None:
        storage.put("a/b.jpg", b"x", JPEG, CACHE)
        storage.delete("a/b.jpg")
        storage.delete("a/b.jpg")
        storage.delete("never/there.jpg")
        assert storage.get("a/b.jpg") is None

    def test_delete_prefix_removes_only_keys_under_that_prefix(self, storage: Storage) -> None:
        for name in ("_r/a.jpg/1.webp", "_r/a.jpg/sub/2.webp", "_r/a.jpg2/3.webp", "a.jpg", "b/_r/a.jpg/4.webp"):
            storage.put(name, b"x", JPEG, CACHE)
        assert storage.delete_prefix("_r/a.jpg/") == 2
        assert keys(storage) == ["_r/a.jpg2/3.webp", "a.jpg", "b/_r/a.jpg/4.webp"]
        assert storage.delete_prefix("_r/a.jpg/") == 0

    def test_delete_prefix_not_nested_leaves_the_keys_below_the_next_slash(self, storage: Storage) -> None:
        # The derivatives of "g" are _r/g/{name}; _r/g/a.jpg/… belong to the original "g/a.jpg".
        for name in ("_r/g/1.webp", "_r/g/2.webp", "_r/g/a.jpg/3.webp", "_r/g/a.jpg/sub/4.webp", "_r/gx/5.webp"):
            storage.put(name, b"x", JPEG, CACHE)
        assert storage.delete_prefix("_r/g/", nested=False) == 2
        assert keys(storage) == ["_r/g/a.jpg/3.webp", "_r/g/a.jpg/sub/4.webp", "_r/gx/5.webp"]
        assert storage.delete_prefix("_r/nothing/", nested=False) == 0

    def test_a_version_names_what_is_stored_and_changes_when_other_bytes_are_written(self, storage: Storage) -> None:
        assert storage.version("v/a.jpg") is None
        assert storage.get_versioned("v/a.jpg") is None
        storage.put("v/a.jpg", b"first", JPEG, CACHE)
        read = storage.get_versioned("v/a.jpg")
        assert read is not None
        assert read.data == b"first"
        assert read.version == storage.version("v/a.jpg") != ""
        storage.put("v/a.jpg", b"second", JPEG, CACHE)
        assert storage.version("v/a.jpg") not in (None, read.version)
        storage.delete("v/a.jpg")
        assert storage.version("v/a.jpg") is None
        storage.put("v/a.jpg", b"third", JPEG, CACHE)
        assert storage.version("v/a.jpg") not in (None, read.version)

    def test_delete_prefix_refuses_an_empty_prefix(self, storage: Storage) -> None:
        storage.put("a.jpg", b"x", JPEG, CACHE)
        with pytest.raises(MalformedPathError):
            storage.delete_prefix("")
        assert storage.exists("a.jpg")

    def test_check_passes_on_working_storage(self, storage: Storage) -> None:
        storage.put("a.jpg", b"x", JPEG, CACHE)
        storage.check()

    def test_concurrent_put_if_absent_on_one_key_has_exactly_one_winner(self, storage: Storage) -> None:
        start = threading.Barrier(8)
        results: dict[int, bool] = {}

        def write(writer: int) -> None:
            start.wait()
            results[writer] = storage.put_if_absent("_r/a.jpg/race.webp", b"writer %d" % writer, JPEG, CACHE)

        threads = [threading.Thread(target=write, args=(writer,)) for writer in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners = [writer for writer, written in results.items() if written]
        if len(winners) > 1 and isinstance(storage, S3Storage):
            # moto checks If-None-Match and then stores without a lock (moto/s3/responses.py, put_object), so two
            # writers can both win there (about 1 run in 300); S3 itself decides atomically.
            pytest.xfail(f"moto let {len(winners)} conditional writes through")
        assert len(results) == 8
        assert len(winners) == 1
        assert storage.get("_r/a.jpg/race.webp") == b"writer %d" % winners[0]


def test_open_storage_builds_the_backend_the_settings_name(tmp_path: Path) -> None:
    local = open_storage(Settings(local_root=str(tmp_path), local_file_mode="0640", local_dir_mode="0750"))
    assert isinstance(local, LocalStorage)
    assert (local.file_mode, local.dir_mode) == (0o640, 0o750)
    s3 = open_storage(Settings(storage="s3", s3_bucket="media", s3_prefix="p/", s3_endpoint_url="http://s3.test"))
    assert isinstance(s3, S3Storage)
    assert (s3.bucket, s3.prefix, s3.endpoint_url) == ("media", "p/", "http://s3.test")


# LocalStorage only ----------------------------------------------------------------------------------------------


def all_paths(root: Path) -> list[Path]:
    return [root, *sorted(root.rglob("*"))]


@pytest.fixture
def strict_umask() -> Iterator[None]:
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.parametrize(("file_mode", "dir_mode"), [(0o644, 0o755), (0o640, 0o750)])
def test_local_files_and_folders_get_their_modes_even_under_a_strict_umask(
    tmp_path: Path, strict_umask: None, file_mode: int, dir_mode: int
) -> None:
    root = tmp_path / "media"
    storage = LocalStorage(root, file_mode=file_mode, dir_mode=dir_mode)
    storage.put("a/b/put.jpg", b"x", JPEG, CACHE)
    storage.put_if_absent("_r/a/b/c.jpg/once.webp", b"x", JPEG, CACHE)
    modes = {path.relative_to(root).as_posix(): stat.S_IMODE(path.stat().st_mode) for path in all_paths(root)}
    assert modes == {
        ".": dir_mode,
        "a": dir_mode,
        "a/b": dir_mode,
        "a/b/put.jpg": file_mode,
        "_r": dir_mode,
        "_r/a": dir_mode,
        "_r/a/b": dir_mode,
        "_r/a/b/c.jpg": dir_mode,
        "_r/a/b/c.jpg/once.webp": file_mode,
    }


@pytest.mark.parametrize(("max_bytes", "capped"), [(1500, True), (5000, False), (None, False)])
def test_a_local_file_that_grows_while_it_is_read_is_still_capped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, max_bytes: int | None, capped: bool
) -> None:
    # The file is read in one go at the size fstat() gave; here it has grown from 1000 to 2000 bytes since.
    (tmp_path / "growing.jpg").write_bytes(b"x" * 2000)
    real_fstat = os.fstat

    def fstat_before_it_grew(fd: int) -> Any:
        fields = list(real_fstat(fd))
        fields[stat.ST_SIZE] //= 2
        return os.stat_result(fields)

    monkeypatch.setattr(os, "fstat", fstat_before_it_grew)
    storage = LocalStorage(tmp_path)
    if capped:
        with pytest.raises(SourceTooLargeError):
            storage.get("growing.jpg", max_bytes=max_bytes)
    else:
        assert storage.get("growing.jpg", max_bytes=max_bytes) == b"x" * 2000


def test_local_writes_leave_no_temporary_file(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put("a/b.jpg", b"1", JPEG, CACHE)
    storage.put("a/b.jpg", b"2", JPEG, CACHE)
    assert storage.put_if_absent("a/c.jpg", b"3", JPEG, CACHE)
    assert not storage.put_if_absent("a/c.jpg", b"4", JPEG, CACHE)
    assert sorted(path.name for path in tmp_path.rglob("*")) == ["a", "b.jpg", "c.jpg"]


def test_failing_local_writes_raise_and_leave_no_temporary_file(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put("file.jpg", b"x", JPEG, CACHE)
    storage.put("folder.jpg/inside.webp", b"x", JPEG, CACHE)
    too_long = "x" * 300 + ".jpg"  # longer than the 255 bytes a file name may have
    failing: list[Callable[[], object]] = [
        lambda: storage.put_if_absent(too_long, b"y", JPEG, CACHE),
        lambda: storage.put(too_long, b"y", JPEG, CACHE),
        lambda: storage.put("folder.jpg", b"y", JPEG, CACHE),  # the name is taken by a folder
        lambda: storage.put_if_absent("folder.jpg", b"y", JPEG, CACHE),
        lambda: storage.put("file.jpg/below.webp", b"y", JPEG, CACHE),  # a path component is a file
    ]
    for write in failing:
        with pytest.raises(SidecarError):  # which one: the tests below
            write()
    assert sorted(path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob("*")) == [
        "file.jpg",
        "folder.jpg",
        "folder.jpg/inside.webp",
    ]


def test_local_writes_with_a_file_or_a_folder_in_the_way_are_conflicts_and_a_link_is_not(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put("file.jpg", b"x", JPEG, CACHE)
    storage.put("folder.jpg/inside.webp", b"x", JPEG, CACHE)
    (tmp_path / "link").symlink_to(tmp_path / "folder.jpg")
    for key in ("file.jpg/below.webp", "folder.jpg"):
        for write in (storage.put, storage.put_if_absent):
            with pytest.raises(StorageConflictError) as raised:
                write(key, b"y", JPEG, CACHE)
            assert raised.value.status == 409
    # A link where a folder is needed is no key's doing: storage is not as it should be.
    with pytest.raises(StorageError) as raised:
        storage.put("link/below.webp", b"y", JPEG, CACHE)
    assert raised.value.status == 502


@pytest.mark.parametrize(
    ("key", "named"),
    [
        pytest.param("x" * 251 + ".jpeg", "256 (" + "x" * 20 + "…)", id="name"),
        pytest.param("a/" + "é" * 128 + "/b.jpg", "256 (" + "é" * 20 + "…)", id="folder"),
        pytest.param("日本" * 43 + ".jpg", "262 (" + "日本" * 10 + "…)", id="utf-8"),
    ],
)
def test_a_local_write_of_a_name_too_long_for_the_file_system_is_the_keys_mistake(
    tmp_path: Path, key: str, named: str
) -> None:
    storage = LocalStorage(tmp_path)
    for write in (storage.put, storage.put_if_absent):
        with pytest.raises(MalformedPathError) as raised:
            write(key, b"y", JPEG, CACHE)
        assert raised.value.detail == f"local storage takes names of at most 255 bytes in a key, not {named}"
    assert storage.list() == [] and [path.name for path in tmp_path.rglob("*") if path.is_file()] == []
    storage.put("x" * 251 + ".jpg", b"y", JPEG, CACHE)  # 255 bytes: the longest name it takes


def test_local_keys_through_a_file_or_too_long_for_the_file_system_read_as_absent(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put("file.jpg", b"x", JPEG, CACHE)
    storage.put("folder.jpg/inside.webp", b"x", JPEG, CACHE)
    for key in ("file.jpg/below.webp", "x" * 300 + ".jpg", "folder.jpg"):
        assert storage.get(key) is None
        assert not storage.exists(key)
        storage.delete(key)
    assert storage.exists("folder.jpg/inside.webp")


def test_local_list_skips_temporary_files_and_keys_may_not_look_like_one(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put("a/b.jpg", b"x", JPEG, CACHE)
    (tmp_path / "a" / ".resize-sidecar-tmp-abc123").write_bytes(b"half a file")
    assert keys(storage) == ["a/b.jpg"]
    with pytest.raises(MalformedPathError):
        storage.get("a/.resize-sidecar-tmp-abc123")


def test_local_delete_prefix_removes_the_emptied_folders_under_the_prefix(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put("_r/a.jpg/sub/1.webp", b"x", JPEG, CACHE)
    storage.put("_r/b.jpg/2.webp", b"x", JPEG, CACHE)
    assert storage.delete_prefix("_r/a.jpg/") == 1
    assert sorted(path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob("*")) == [
        "_r",
        "_r/b.jpg",
        "_r/b.jpg/2.webp",
    ]
    storage.put("_r/a.jpg/again.webp", b"x", JPEG, CACHE)
    assert storage.exists("_r/a.jpg/again.webp")


def test_local_storage_never_follows_a_link_planted_under_its_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "secret.jpg").write_bytes(b"secret")
    (outside / "sub" / "kept.jpg").write_bytes(b"kept")
    root = tmp_path / "media"
    storage = LocalStorage(root)
    storage.put("photos/real.jpg", b"real", JPEG, CACHE)
    (root / "linked").symlink_to(outside)  # a folder link
    (root / "photos" / "file.jpg").symlink_to(outside / "secret.jpg")  # an object link
    (root / "_r").mkdir()
    (root / "_r" / "photos").symlink_to(outside)  # derivatives' folder led outside

    for key in ("linked/secret.jpg", "photos/file.jpg", "_r/photos/secret.jpg"):
        assert storage.get(key) is None, key
        assert storage.get_versioned(key) is None, key
        assert storage.version(key) is None, key
        assert not storage.exists(key), key
    for key in ("linked/new.jpg", "_r/photos/a.jpg/x.webp", "linked/sub/kept.jpg"):
        with pytest.raises(StorageError):
            storage.put(key, b"planted", JPEG, CACHE)
        with pytest.raises(StorageError):
            storage.put_if_absent(key, b"planted", JPEG, CACHE)
    storage.put("photos/file.jpg", b"replaced the link", JPEG, CACHE)  # the link itself is replaced, not its target
    storage.delete("linked/sub/kept.jpg")
    assert storage.delete_prefix("linked/") == 0
    assert storage.delete_prefix("_r/photos/") == 0
    assert storage.delete_prefix("_r/", nested=True) == 0
    assert keys(storage) == ["photos/file.jpg", "photos/real.jpg"]
    assert sorted(path.relative_to(outside).as_posix() for path in outside.rglob("*")) == [
        "secret.jpg",
        "sub",
        "sub/kept.jpg",
    ]
    assert (outside / "secret.jpg").read_bytes() == b"secret"


def test_a_fifo_planted_at_a_local_key_reads_as_absent_without_blocking(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    os.mkfifo(tmp_path / "pipe.jpg")
    assert storage.get("pipe.jpg") is None
    assert not storage.exists("pipe.jpg")


def test_local_check_fails_while_the_root_folder_is_missing(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "media")
    with pytest.raises(StorageError):
        storage.check()
    storage.put("a.jpg", b"x", JPEG, CACHE)
    storage.check()


# S3Storage only -------------------------------------------------------------------------------------------------


def test_s3_writes_store_content_type_and_cache_control(moto_endpoint: str, s3_bucket: str, s3_client: Any) -> None:
    storage = S3Storage(s3_bucket, endpoint_url=moto_endpoint)
    storage.put("a.jpg", b"x", JPEG, "public, max-age=60")
    storage.put_if_absent("_r/a.jpg/b.webp", b"x", "image/webp", CACHE)
    head = s3_client.head_object(Bucket=s3_bucket, Key="a.jpg")
    assert (head["ContentType"], head["CacheControl"]) == (JPEG, "public, max-age=60")
    head = s3_client.head_object(Bucket=s3_bucket, Key="_r/a.jpg/b.webp")
    assert (head["ContentType"], head["CacheControl"]) == ("image/webp", CACHE)


def test_s3_objects_live_under_the_prefix_and_nothing_outside_it_is_touched(
    moto_endpoint: str, s3_bucket: str, s3_client: Any
) -> None:
    for outside in ("a.jpg", "media-other/a.jpg", "_r/a.jpg/x.webp"):
        s3_client.put_object(Bucket=s3_bucket, Key=outside, Body=b"outside")
    storage = S3Storage(s3_bucket, endpoint_url=moto_endpoint, prefix="media/")
    storage.put("a.jpg", b"inside", JPEG, CACHE)
    storage.put("_r/a.jpg/x.webp", b"inside", JPEG, CACHE)
    assert keys(storage) == ["_r/a.jpg/x.webp", "a.jpg"]
    assert storage.get("a.jpg") == b"inside"
    assert storage.delete_prefix("_r/") == 1
    listed = s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]
    assert sorted(item["Key"] for item in listed) == ["_r/a.jpg/x.webp", "a.jpg", "media-other/a.jpg", "media/a.jpg"]


def test_s3_missing_bucket_fails_check_and_is_an_error_not_an_absent_key(moto_endpoint: str) -> None:
    storage = S3Storage("no-such-bucket-for-this-test", endpoint_url=moto_endpoint)
    with pytest.raises(StorageError, match="does not exist"):
        storage.check()
    with pytest.raises(StorageError):
        storage.get("a.jpg")
    with pytest.raises(StorageError):
        storage.put("a.jpg", b"x", JPEG, CACHE)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_s3_endpoint_refusing_connections_is_a_storage_error() -> None:
    storage = S3Storage("media", endpoint_url=f"http://127.0.0.1:{closed_port()}", max_attempts=1)
    operations: list[Callable[[], object]] = [
        lambda: storage.get("a.jpg"),
        storage.check,
        lambda: storage.put("a.jpg", b"x", JPEG, CACHE),
    ]
    for operation in operations:
        with pytest.raises(StorageError) as caught:
            operation()
        assert not isinstance(caught.value, StorageTimeoutError)


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A listener that accepts connections and never says a word."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    listener.close()


def test_s3_endpoint_that_never_answers_is_a_storage_timeout(silent_endpoint: str) -> None:
    storage = S3Storage("media", endpoint_url=silent_endpoint, connect_timeout=0.5, read_timeout=0.5, max_attempts=1)
    with pytest.raises(StorageTimeoutError):
        storage.get("a.jpg")
    with pytest.raises(StorageTimeoutError):
        storage.put_if_absent("a.jpg", b"x", JPEG, CACHE)


Reply = Callable[[BaseHTTPRequestHandler], None]


class ScriptedS3:
    """A loopback HTTP server answering each request with the next scripted reply: faults moto cannot make."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.requests: list[dict[str, Any]] = []
        script = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as S3 does

            def handle_one_request(self) -> None:
                try:
                    super().handle_one_request()
                except OSError:
                    self.close_connection = True  # the client hung up mid-answer, as a refused body makes it do

            def answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                script.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": self.headers,
                        "body": body,
                        "client_port": self.client_address[1],
                    }
                )
                script.replies.pop(0)(self)

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted_s3() -> Iterator[ScriptedS3]:
    server = ScriptedS3()
    yield server
    server.close()


def answer(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Reply:
    def reply(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            handler.send_header(name, value)
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)

    return reply


def s3_error(status: int, code: str) -> Reply:
    body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>scripted</Message></Error>"
    return answer(status, body.encode(), {"Content-Type": "application/xml"})


def announced_body(announced: int, sent: bytes) -> Reply:
    def reply(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(announced))
        handler.end_headers()
        handler.wfile.write(sent)
        handler.close_connection = True

    return reply


def chunked_body(size: int) -> Reply:
    def reply(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for _ in range(0, size, 65536):
            handler.wfile.write(b"10000\r\n" + b"x" * 65536 + b"\r\n")
        handler.wfile.write(b"0\r\n\r\n")

    return reply


def scripted_storage(server: ScriptedS3) -> S3Storage:
    return S3Storage("media", endpoint_url=server.endpoint, max_attempts=1)


def test_s3_conditional_write_conflict_is_retried_once(scripted_s3: ScriptedS3) -> None:
    storage = scripted_storage(scripted_s3)
    scripted_s3.replies = [s3_error(409, "ConditionalRequestConflict"), answer(200, headers={"ETag": '"e"'})]
    assert storage.put_if_absent("a.jpg", b"x", JPEG, CACHE) is True
    assert [request["headers"]["If-None-Match"] for request in scripted_s3.requests] == ["*", "*"]
    scripted_s3.replies = [s3_error(409, "ConditionalRequestConflict"), s3_error(412, "PreconditionFailed")]
    assert storage.put_if_absent("a.jpg", b"x", JPEG, CACHE) is False
    scripted_s3.replies = [s3_error(409, "ConditionalRequestConflict")] * 2
    with pytest.raises(StorageError, match="409"):
        storage.put_if_absent("a.jpg", b"x", JPEG, CACHE)


def test_s3_access_denied_reads_as_absent_but_fails_a_write(
    scripted_s3: ScriptedS3, caplog: pytest.LogCaptureFixture
) -> None:
    storage = scripted_storage(scripted_s3)
    scripted_s3.replies = [s3_error(403, "AccessDenied"), answer(403), s3_error(403, "AccessDenied")]
    assert storage.get("a.jpg") is None
    assert storage.exists("a.jpg") is False
    with pytest.raises(StorageError, match="403"):
        storage.put("a.jpg", b"x", JPEG, CACHE)
    assert "treating it as absent" in caplog.text


def test_s3_server_error_is_a_storage_error_naming_the_operation_and_key(scripted_s3: ScriptedS3) -> None:
    scripted_s3.replies = [s3_error(500, "InternalError")]
    with pytest.raises(StorageError, match=r"S3 get s3://media/a b\.jpg: HTTP 500 InternalError"):
        scripted_storage(scripted_s3).get("a b.jpg")


def test_s3_body_shorter_than_announced_is_an_error_not_a_partial_image(scripted_s3: ScriptedS3) -> None:
    scripted_s3.replies = [announced_body(1000, b"x" * 500)]
    with pytest.raises(StorageError):
        scripted_storage(scripted_s3).get("a.jpg", max_bytes=10_000)


def test_s3_announced_size_over_the_limit_is_refused_before_reading(scripted_s3: ScriptedS3) -> None:
    scripted_s3.replies = [announced_body(10**12, b"")]
    with pytest.raises(SourceTooLargeError) as refused:
        scripted_storage(scripted_s3).get("a.jpg", max_bytes=1000)
    # The message reaches whoever holds a signed URL (422): the key, never the bucket or its prefix.
    assert refused.value.detail == "'a.jpg' has 1000000000000 bytes, more than 1000"


def test_s3_body_without_a_length_is_cut_one_byte_past_the_limit(scripted_s3: ScriptedS3) -> None:
    scripted_s3.replies = [chunked_body(4 * 65536)]
    with pytest.raises(SourceTooLargeError) as refused:
        scripted_storage(scripted_s3).get("a.jpg", max_bytes=100_000)
    assert refused.value.detail == "'a.jpg' has more than 100000 bytes"
    scripted_s3.replies = [chunked_body(65536)]
    assert scripted_storage(scripted_s3).get("a.jpg", max_bytes=65536) == b"x" * 65536


def listing(names: list[str], next_token: str = "") -> Reply:
    """A ListObjectsV2 answer; truncated, with a continuation token, when ``next_token`` is given."""
    page = f"<IsTruncated>true</IsTruncated><NextContinuationToken>{next_token}</NextContinuationToken>"
    body = "<?xml version='1.0' encoding='UTF-8'?><ListBucketResult><Name>media</Name>{}{}</ListBucketResult>".format(
        page if next_token else "<IsTruncated>false</IsTruncated>",
        "".join(
            f"<Contents><Key>{name}</Key><Size>1</Size><LastModified>2025-01-01T00:00:00.000Z</LastModified></Contents>"
            for name in names
        ),
    )
    return answer(200, body.encode(), {"Content-Type": "application/xml"})


DELETED = answer(200, b"<DeleteResult></DeleteResult>", {"Content-Type": "application/xml"})


def test_s3_listing_follows_continuation_tokens_past_one_page(scripted_s3: ScriptedS3) -> None:
    # S3 pages at 1000 keys; moto would need over a thousand objects (seconds) to show the same thing.
    scripted_s3.replies = [listing(["a", "b"], next_token="t1"), listing(["c"])]
    assert keys(scripted_storage(scripted_s3), limit=1500) == ["a", "b", "c"]
    first, second = (request["path"] for request in scripted_s3.requests)
    assert "max-keys=1000" in first and "continuation-token" not in first
    assert "continuation-token=t1" in second


def test_s3_delete_prefix_deletes_page_by_page_with_content_md5(scripted_s3: ScriptedS3) -> None:
    scripted_s3.replies = [listing(["_r/a/1", "_r/a/2"], next_token="t1"), DELETED, listing(["_r/a/3"]), DELETED]
    assert scripted_storage(scripted_s3).delete_prefix("_r/a/") == 3
    methods = [request["method"] for request in scripted_s3.requests]
    assert methods == ["GET", "POST", "GET", "POST"]
    assert "prefix=_r%2Fa%2F" in scripted_s3.requests[0]["path"]
    assert "continuation-token=t1" in scripted_s3.requests[2]["path"]
    for delete in scripted_s3.requests[1::2]:
        # Several S3-compatible stores refuse DeleteObjects without it (S3's API reference marks it required).
        assert delete["headers"]["Content-MD5"] == base64.b64encode(hashlib.md5(delete["body"]).digest()).decode()
    assert b"<Key>_r/a/3</Key>" in scripted_s3.requests[3]["body"]


def test_s3_objects_that_fail_to_delete_are_reported(scripted_s3: ScriptedS3) -> None:
    refused = b"<DeleteResult><Error><Key>_r/a/1</Key><Code>AccessDenied</Code></Error></DeleteResult>"
    scripted_s3.replies = [listing(["_r/a/1"]), answer(200, refused, {"Content-Type": "application/xml"})]
    with pytest.raises(StorageError, match="1 of 1 objects not deleted.*AccessDenied"):
        scripted_storage(scripted_s3).delete_prefix("_r/a/")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_s3_client_is_reused_but_not_across_a_fork(scripted_s3: ScriptedS3) -> None:
    storage = scripted_storage(scripted_s3)
    scripted_s3.replies = [answer(200)] * 3
    assert storage.exists("a.jpg") and storage.exists("a.jpg")
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child, which reports through its exit code
        try:
            os._exit(0 if storage.exists("a.jpg") else 1)
        finally:
            os._exit(2)
    assert os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == 0
    ports = [request["client_port"] for request in scripted_s3.requests]
    # A reused client keeps its connection; a forked worker must open its own instead of sharing the parent's socket.
    assert ports[0] == ports[1] != ports[2]
