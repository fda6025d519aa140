"""The media library's use cases over real local storage, with every write and delete recorded: the headers each
object is stored with, and the order of the steps a concurrent miss relies on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from resize_sidecar.core.errors import NotFoundError
from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import DerivativePath, sign
from resize_sidecar.media.derive import Deriver
from resize_sidecar.media.library import MediaLibrary, store_original
from resize_sidecar.media.local import LocalStorage
from tests.support.images import photo
from tests.support.servers import SECRET

DERIVATIVE_HEADERS = ("image/jpeg", "public, max-age=31536000, immutable")
ORIGINAL_HEADERS = ("image/jpeg", "no-cache")


class RecordingStorage:
    """Real local storage that records each write (with its headers) and each delete, in order."""

    def __init__(self, inner: LocalStorage) -> None:
        self.inner = inner
        self.steps: list[tuple[Any, ...]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def put(self, key: str, data: bytes, content_type: str, cache_control: str, metadata: Any = None) -> None:
        self.steps.append(("put", key, content_type, cache_control))
        self.inner.put(key, data, content_type, cache_control, metadata)

    def put_if_absent(self, key: str, data: bytes, content_type: str, cache_control: str, metadata: Any = None) -> bool:
        self.steps.append(("put_if_absent", key, content_type, cache_control))
        return self.inner.put_if_absent(key, data, content_type, cache_control, metadata)

    def delete(self, key: str) -> None:
        self.steps.append(("delete", key))
        self.inner.delete(key)

    def delete_prefix(self, prefix: str, *, nested: bool = True) -> int:
        self.steps.append(("delete_prefix", prefix))
        return self.inner.delete_prefix(prefix, nested=nested)


@pytest.fixture
def storage(storage: LocalStorage) -> RecordingStorage:
    return RecordingStorage(storage)


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(presets={"thumb": "120x120-fill"}, upload_custom_keys=True)


@pytest.fixture
def library(settings: Settings, storage: RecordingStorage) -> MediaLibrary:
    return MediaLibrary(settings, storage, Deriver(settings, storage))


def thumb(key: str) -> str:
    return DerivativePath(key, "thumb", "jpg", sign(key, "thumb", "jpg", SECRET)).storage_key("_r/")


def test_an_upload_and_its_activation_write_each_object_with_its_kinds_headers(
    library: MediaLibrary, storage: RecordingStorage
) -> None:
    library.upload(photo(300, 200), "a.jpg")
    library.activate("a.jpg")
    writes = [step for step in storage.steps if step[0].startswith("put")]
    assert writes == [
        ("put_if_absent", "incoming/a.jpg", *ORIGINAL_HEADERS),
        ("put_if_absent", thumb("incoming/a.jpg"), *DERIVATIVE_HEADERS),
        ("put_if_absent", thumb("a.jpg"), *DERIVATIVE_HEADERS),
        ("put_if_absent", "a.jpg", *ORIGINAL_HEADERS),
    ]
    # The incoming objects go last, derivatives before their original: a retried activation finishes the work.
    assert storage.steps[-3:] == [
        ("delete_prefix", "_r/incoming/a.jpg/"),
        ("delete", ".resize-sidecar/faces/incoming/a.jpg.json"),
        ("delete", "incoming/a.jpg"),
    ]
    assert sorted(item.key for item in storage.inner.list("")) == sorted(["a.jpg", thumb("a.jpg")])


def test_an_activated_derivative_keeps_the_record_of_what_made_it(
    library: MediaLibrary, storage: RecordingStorage
) -> None:
    """Copied with its recipe, so regenerate can find it current without rendering it again."""
    library.upload(photo(300, 200), "a.jpg")
    made = storage.inner.head(thumb("incoming/a.jpg"))
    assert made and made["recipe"]
    library.activate("a.jpg")
    assert storage.inner.head(thumb("a.jpg")) == made


def test_a_delete_removes_the_original_before_its_derivatives(library: MediaLibrary, storage: RecordingStorage) -> None:
    library.upload(photo(300, 200), "a.jpg")
    library.activate("a.jpg")
    storage.steps.clear()
    deletion = library.delete("a.jpg")
    assert (deletion.deleted_original, deletion.deleted_derivatives) == (True, 1)
    assert storage.steps == [
        ("delete", "a.jpg"),
        ("delete_prefix", "_p/a.jpg/"),
        ("delete_prefix", "_r/a.jpg/"),
        ("delete", ".resize-sidecar/faces/a.jpg.json"),
    ]
    with pytest.raises(NotFoundError):
        library.delete("a.jpg")


def test_store_original_writes_the_original_then_deletes_the_old_pictures_derivatives(
    settings: Settings, storage: RecordingStorage
) -> None:
    storage.inner.put(thumb("a.jpg"), b"old derivative", *DERIVATIVE_HEADERS)
    store_original(settings, storage, "a.jpg", photo(300, 200), "image/jpeg")
    assert storage.steps == [
        ("put", "a.jpg", *ORIGINAL_HEADERS),
        ("delete_prefix", "_p/a.jpg/"),
        ("delete_prefix", "_r/a.jpg/"),
    ]
    assert [item.key for item in storage.inner.list("")] == ["a.jpg"]
