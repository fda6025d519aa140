"""Object metadata, the part of the storage contract a derivative's recipe travels in: written with ``put`` and
``put_if_absent``, read back by ``head``, against local storage and against S3 on moto's S3 server over HTTP (and
Ceph's RADOS Gateway where it runs); and how local storage keeps it beside the object without showing it."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from resize_sidecar.core.errors import MalformedPathError
from resize_sidecar.media.local import LocalStorage
from resize_sidecar.media.s3 import S3Storage
from resize_sidecar.media.storage import Storage
from tests.support.stores import S3Endpoint

WEBP = "image/webp"
CACHE = "public, max-age=31536000, immutable"
KEY = "_r/a.jpg/thumb-0123456789abcdef0123456789abcdef.webp"
RECIPE = {"recipe": "3f2a9c", "decoder": "libvips", "source": '"9b2cf535f27731c974343645a3985328"'}


@pytest.fixture(params=["local", "s3", "s3-with-prefix"])
def storage_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_metadata_written_with_an_object_is_read_back_by_head(storage: Storage) -> None:
    storage.put(KEY, b"image", WEBP, CACHE, metadata=RECIPE)
    assert storage.head(KEY) == RECIPE
    assert storage.get(KEY) == b"image"


def test_an_object_written_without_metadata_has_none_and_a_missing_one_no_head(storage: Storage) -> None:
    storage.put(KEY, b"image", WEBP, CACHE)
    assert storage.head(KEY) == {}
    assert storage.head("_r/a.jpg/missing.webp") is None


def test_put_if_absent_writes_metadata_only_with_the_object_it_writes(storage: Storage) -> None:
    assert storage.put_if_absent(KEY, b"first", WEBP, CACHE, metadata=RECIPE) is True
    assert storage.put_if_absent(KEY, b"second", WEBP, CACHE, metadata={**RECIPE, "recipe": "other"}) is False
    assert (storage.get(KEY), storage.head(KEY)) == (b"first", RECIPE)


def test_writing_an_object_again_replaces_its_metadata_and_without_any_leaves_it_none(storage: Storage) -> None:
    storage.put(KEY, b"one", WEBP, CACHE, metadata=RECIPE)
    storage.put(KEY, b"two", WEBP, CACHE, metadata={**RECIPE, "recipe": "newer"})
    assert storage.head(KEY) == {**RECIPE, "recipe": "newer"}
    storage.put(KEY, b"three", WEBP, CACHE)
    assert storage.head(KEY) == {}


def test_a_deleted_object_written_again_without_metadata_has_none(storage: Storage) -> None:
    storage.put(KEY, b"one", WEBP, CACHE, metadata=RECIPE)
    storage.delete(KEY)
    assert storage.head(KEY) is None
    storage.put_if_absent(KEY, b"one", WEBP, CACHE)
    assert storage.head(KEY) == {}


def test_metadata_stays_out_of_listings_and_goes_with_its_objects(storage: Storage) -> None:
    storage.put("a.jpg", b"original", "image/jpeg", "no-cache")
    storage.put(KEY, b"image", WEBP, CACHE, metadata=RECIPE)
    storage.put("_r/a.jpg/other.png", b"image", "image/png", CACHE, metadata=RECIPE)
    assert [item.key for item in storage.list()] == ["_r/a.jpg/other.png", KEY, "a.jpg"]
    assert storage.delete_prefix("_r/a.jpg/", nested=False) == 2
    assert [item.key for item in storage.list()] == ["a.jpg"]


def test_s3_keeps_metadata_as_user_metadata(moto_endpoint: str, s3_bucket: str, s3_client: Any) -> None:
    S3Storage(s3_bucket, endpoint_url=moto_endpoint).put(KEY, b"image", WEBP, CACHE, metadata=RECIPE)
    answer = s3_client.head_object(Bucket=s3_bucket, Key=KEY)
    assert answer["ResponseMetadata"]["HTTPHeaders"]["x-amz-meta-recipe"] == RECIPE["recipe"]
    assert answer["Metadata"] == RECIPE


def test_every_s3_store_keeps_user_metadata(s3_endpoint: S3Endpoint) -> None:
    import boto3

    bucket = f"metadata-{uuid.uuid4().hex[:16]}"
    boto3.client("s3", endpoint_url=s3_endpoint.url, region_name="us-east-1").create_bucket(Bucket=bucket)
    storage = S3Storage(bucket, endpoint_url=s3_endpoint.url)
    storage.put(KEY, b"image", WEBP, CACHE, metadata=RECIPE)
    assert storage.head(KEY) == RECIPE


class TestLocalMetadataFile:
    def test_it_lies_beside_the_object_hidden_and_names_the_version_it_describes(self, tmp_path: Path) -> None:
        storage = LocalStorage(tmp_path)
        storage.put(KEY, b"image", WEBP, CACHE, metadata=RECIPE)
        folder = tmp_path / "_r" / "a.jpg"
        assert sorted(path.name for path in folder.iterdir()) == [
            ".resize-sidecar-meta-thumb-0123456789abcdef0123456789abcdef.webp",
            "thumb-0123456789abcdef0123456789abcdef.webp",
        ]
        assert str(storage.version(KEY)) in (folder / f".resize-sidecar-meta-{KEY.rpartition('/')[2]}").read_text()

    def test_a_metadata_file_of_another_version_or_not_its_own_is_none(self, tmp_path: Path) -> None:
        storage = LocalStorage(tmp_path)
        storage.put(KEY, b"image", WEBP, CACHE, metadata=RECIPE)
        meta = tmp_path / "_r" / "a.jpg" / f".resize-sidecar-meta-{KEY.rpartition('/')[2]}"
        kept = meta.read_bytes()
        # The object replaced by something that does not write metadata (a restore, a copy): the old file stays.
        (tmp_path / KEY).unlink()
        (tmp_path / KEY).write_bytes(b"image")
        assert meta.read_bytes() == kept
        assert storage.head(KEY) == {}
        # Cut off by a crash (it is written unsynced), planted, or too large to be one of ours.
        for planted in (b"", kept[: len(kept) // 2], b"not json", b'{"object": 1}', b"[]", b"x" * 5000):
            storage.put(KEY, b"image", WEBP, CACHE)
            meta.write_bytes(planted)
            assert storage.head(KEY) == {}

    def test_only_the_object_waits_for_the_disk(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """The object is synced before it is named (nginx must never serve an empty file); its metadata is not, as
        losing it costs one render and a second fsync would slow every miss."""
        synced: list[int] = []
        monkeypatch.setattr(os, "fsync", synced.append)
        storage = LocalStorage(tmp_path)
        storage.put(KEY, b"image", WEBP, CACHE, metadata=RECIPE)
        assert len(synced) == 1
        assert storage.head(KEY) == RECIPE

    def test_keys_cannot_name_a_metadata_file(self, tmp_path: Path) -> None:
        storage = LocalStorage(tmp_path)
        with pytest.raises(MalformedPathError, match="may not start with"):
            storage.put("_r/a.jpg/.resize-sidecar-meta-x.webp", b"planted", WEBP, CACHE)
        with pytest.raises(MalformedPathError):
            storage.head("_r/a.jpg/.resize-sidecar-meta-x.webp")

    def test_delete_removes_the_metadata_file(self, tmp_path: Path) -> None:
        storage = LocalStorage(tmp_path)
        storage.put(KEY, b"image", WEBP, CACHE, metadata=RECIPE)
        storage.delete(KEY)
        assert list((tmp_path / "_r" / "a.jpg").iterdir()) == []
