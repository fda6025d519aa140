"""``resize-sidecar migrate``: derivatives stored at their signed keys, as every store was before storage keys left the
signature out, are moved to their unsigned keys without a render, against local storage and a bucket on moto's S3
server over HTTP.

The old store is written by a Deriver in redirect mode, whose keys still carry the signature: objects, types and
recipes exactly as a miss of the version before stored them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from resize_sidecar.core import private
from resize_sidecar.core.errors import SettingsError
from resize_sidecar.core.objects import write_headers
from resize_sidecar.core.settings import Settings, load
from resize_sidecar.core.signing import DerivativePath, sign
from resize_sidecar.core.urls import MediaURLs
from resize_sidecar.media.derive import Deriver
from resize_sidecar.media.local import LocalStorage
from resize_sidecar.media.s3 import S3Storage
from resize_sidecar.media.storage import Metadata, Storage
from resize_sidecar.media.stores import open_storage
from resize_sidecar.ops.migrate import migrate
from resize_sidecar.ops.shards import Shard
from tests.support.commands import Run, local_env, s3_env
from tests.support.faults import Fault, FaultProxy
from tests.support.images import photo

JPEG = "image/jpeg"
OLD_SECRET = "a-secret-rotated-out-0123456789"


@pytest.fixture(params=["local", "s3"])
def storage_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(presets={"thumb": "100x100-fill"})


@dataclass(frozen=True)
class Old:
    """A derivative as the version before stored it: at its signed key, and where this version reads it."""

    original: str
    url: str  #: requested with ``query`` and ``accept``
    signed_key: str
    new_key: str
    query: str = ""
    accept: str = ""


def old_store(settings: Settings, storage: Storage, *, keys: tuple[str, ...] = ("a.jpg",)) -> list[Old]:
    """Originals at ``keys`` and, of each, the derivatives of every kind the version before stored: a public one, a
    preset's, a private one and the two formats an ``.auto`` URL was answered in."""
    before = replace(settings, on_miss="redirect", public_base_url="https://media.example.com")
    deriver, current, urls = Deriver(before, storage), Deriver(settings, storage), MediaURLs(settings)
    made = []
    for key in keys:
        storage.put(key, photo(320, 240), JPEG, "no-cache")
        auto = urls.derivative(key, width=120, format="auto")
        path, query = urls.derivative(key, width=80, format="png", private=True).split("?")
        requests = [
            (urls.derivative(key, width=200), "", ""),
            (urls.derivative(key, preset="thumb", format="webp"), "", ""),
            (path, query, ""),
            (auto, "", "image/webp"),
            (auto, "", "*/*"),
        ]
        for url, query, accept in requests:
            stored = deriver.derive(url, query=query, accept=accept)
            assert stored.created
            new_key = current.storage_key(current.parse(url, accept=accept)[0], private=current.is_private(url))
            made.append(Old(key, url, stored.storage_key, new_key, query, accept))
    return made


def keys(storage: Storage) -> list[str]:
    return [item.key for item in storage.list("")]


def statuses(report: Any) -> dict[str, str]:
    return {outcome.item: outcome.status for outcome in report.outcomes}


def test_migrate_moves_every_kind_of_derivative_to_its_unsigned_key_with_its_bytes_and_recipe(
    settings: Settings, storage: Storage
) -> None:
    old = old_store(settings, storage)
    stored = {item.signed_key: (storage.get(item.signed_key), storage.head(item.signed_key)) for item in old}
    assert all(recipe for _, recipe in stored.values())

    report = migrate(settings, storage)

    assert statuses(report) == {item.signed_key: "moved" for item in old}
    assert report.summary() == "migrate: 5 moved"
    assert {item.new_key: (storage.get(item.new_key), storage.head(item.new_key)) for item in old} == {
        item.new_key: stored[item.signed_key] for item in old
    }
    assert keys(storage) == sorted(["a.jpg", *(item.new_key for item in old)])
    deriver = Deriver(settings, storage)
    for item in old:
        found = deriver.derive(item.url, query=item.query, accept=item.accept)
        assert (found.created, found.body) == (False, stored[item.signed_key][0])


def test_a_moved_object_is_stored_with_a_derivatives_type_and_cache_control(
    make_settings: Callable[..., Settings], s3_client: Any, s3_bucket: str, moto_endpoint: str
) -> None:
    settings = make_settings(presets={"thumb": "100x100-fill"}, cache_control="public, max-age=600")
    storage = S3Storage(s3_bucket, endpoint_url=moto_endpoint)
    old = old_store(settings, storage)

    migrate(settings, storage)

    for item in old:
        head = s3_client.head_object(Bucket=s3_bucket, Key=item.new_key)
        fmt = item.new_key.rpartition(".")[2]
        expected = write_headers("derivative", settings, {"jpg": JPEG, "png": "image/png", "webp": "image/webp"}[fmt])
        assert (head["ContentType"], head["CacheControl"]) == expected


def test_a_second_run_moves_nothing_and_writes_nothing(settings: Settings, storage: Storage) -> None:
    old = old_store(settings, storage)
    migrate(settings, storage)
    versions = {item.new_key: storage.version(item.new_key) for item in old}

    again = migrate(settings, storage)

    assert (again.outcomes, again.summary(), again.ok) == ([], "migrate: nothing to do", True)
    assert {item.new_key: storage.version(item.new_key) for item in old} == versions


def test_a_dry_run_says_what_it_would_move_and_delete_and_changes_nothing(settings: Settings, storage: Storage) -> None:
    old = old_store(settings, storage)
    stranger = signed_elsewhere(storage, "a.jpg", "50x", "jpg", OLD_SECRET)
    before = [(item.key, item.size) for item in storage.list("")]

    report = migrate(settings, storage, dry_run=True, delete_unverified=True)

    assert statuses(report) == {item.signed_key: "would move" for item in old} | {stranger: "would delete"}
    assert [(item.key, item.size) for item in storage.list("")] == before
    kept = migrate(settings, storage, dry_run=True, keep_old=True)
    assert statuses(kept) == {item.signed_key: "would copy" for item in old} | {stranger: "unverified"}
    assert [(item.key, item.size) for item in storage.list("")] == before


def signed_elsewhere(storage: Storage, key: str, spec: str, fmt: str, secret: str, prefix: str = "_r/") -> str:
    """A derivative stored at its signed key under ``prefix``, signed with ``secret`` over ``fmt``; its key."""
    path = DerivativePath(key, spec, "jpg", sign(key, spec, fmt, secret))
    storage.put(path.signed_storage_key(prefix), photo(50, 37), JPEG, "no-cache")
    return path.signed_storage_key(prefix)


@pytest.mark.parametrize(
    ("prefix", "secret", "signed_format", "moved"),
    [
        pytest.param("_r/", "current", "jpg", True, id="public, the secret"),
        pytest.param("_r/", "current", "auto", True, id="public, the secret over auto"),
        pytest.param("_r/", "old", "jpg", False, id="public, a secret rotated out"),
        pytest.param("_r/", "private", "jpg", False, id="public, the private signing key"),
        pytest.param("_r/", "current", "png", False, id="public, over another format"),
        pytest.param("_p/", "private", "jpg", True, id="private, the private signing key"),
        pytest.param("_p/", "current", "jpg", False, id="private, the secret itself"),
        pytest.param("_p/", "private", "auto", False, id="private, over auto"),
    ],
)
def test_a_signed_object_is_moved_only_when_signed_as_this_version_verifies_its_url(
    settings: Settings, storage: Storage, prefix: str, secret: str, signed_format: str, moved: bool
) -> None:
    keys_of = {"current": settings.secrets[0], "old": OLD_SECRET, "private": private.signing_key(settings.secrets[0])}
    signed = signed_elsewhere(storage, "a.jpg", "50x", signed_format, keys_of[secret], prefix)

    report = migrate(settings, storage)

    unsigned = f"{prefix}a.jpg/50x.jpg"
    if moved:
        assert [(o.item, o.status) for o in report.outcomes] == [(signed, "moved")]
        assert keys(storage) == [unsigned]
    else:
        assert [(o.item, o.status, o.detail) for o in report.outcomes] == [
            (signed, "unverified", "signed with none of the current secrets; left in place")
        ]
        assert keys(storage) == [signed]


def test_unverified_objects_are_deleted_only_with_delete_unverified(settings: Settings, storage: Storage) -> None:
    stranger = signed_elsewhere(storage, "a.jpg", "50x", "jpg", OLD_SECRET)
    assert statuses(migrate(settings, storage)) == {stranger: "unverified"}
    assert storage.exists(stranger)

    report = migrate(settings, storage, delete_unverified=True)

    assert [(o.item, o.status, o.detail) for o in report.outcomes] == [
        (stranger, "deleted", "signed with none of the current secrets")
    ]
    assert keys(storage) == []


def test_keep_old_copies_and_keeps_the_signed_objects_and_a_later_run_only_deletes_them(
    settings: Settings, storage: Storage
) -> None:
    old = old_store(settings, storage)

    copied = migrate(settings, storage, keep_old=True)

    assert statuses(copied) == {item.signed_key: "copied" for item in old}
    assert all(storage.get(item.new_key) == storage.get(item.signed_key) for item in old)
    versions = {item.new_key: storage.version(item.new_key) for item in old}
    assert statuses(migrate(settings, storage, keep_old=True)) == {item.signed_key: "current" for item in old}

    moved = migrate(settings, storage)

    assert statuses(moved) == {item.signed_key: "moved" for item in old}
    assert {item.new_key: storage.version(item.new_key) for item in old} == versions
    assert keys(storage) == sorted(["a.jpg", *(item.new_key for item in old)])


@pytest.mark.parametrize("method", ["PUT", "DELETE"], ids=["cut off copying", "cut off deleting"])
def test_a_run_cut_off_by_a_silent_store_exits_1_loses_nothing_and_a_rerun_finishes_the_move(
    cli: Run, settings: Settings, moto_endpoint: str, s3_bucket: str, method: str
) -> None:
    storage = S3Storage(s3_bucket, endpoint_url=moto_endpoint)
    old = old_store(settings, storage, keys=("p0.jpg", "p1.jpg", "p2.jpg"))
    before = {item: storage.get(item.signed_key) for item in old}
    with FaultProxy(moto_endpoint) as proxy:
        proxy.fault = Fault.blackhole(methods=[method], path=r"/_r/p1\.jpg/")
        cut = cli("migrate", "--jobs", "2", env=s3_env(proxy.url, s3_bucket))

    assert cut.code == 1
    assert "stopped: S3 " in cut.out
    for item, data in before.items():
        assert storage.get(item.new_key) in (None, data), "a copy differs from its signed object"
        assert data in (storage.get(item.new_key), storage.get(item.signed_key)), "a derivative was lost"

    rerun = cli("migrate", "--json", env=s3_env(moto_endpoint, s3_bucket))

    assert rerun.code == 0, rerun.err
    assert {(item.new_key, storage.get(item.new_key)) for item in old} == {(i.new_key, d) for i, d in before.items()}
    assert not any(storage.exists(item.signed_key) for item in old)


def test_a_derivative_a_miss_stored_at_the_unsigned_key_meanwhile_is_never_overwritten(
    settings: Settings, storage: Storage
) -> None:
    old = old_store(settings, storage)[0]
    fresh = Deriver(settings, storage).derive(old.url)
    assert fresh.created and fresh.storage_key == old.new_key
    storage.put(old.new_key, b"rendered by this version", JPEG, "no-cache", metadata={"recipe": "fresh"})

    report = migrate(settings, storage)

    assert statuses(report)[old.signed_key] == "moved"
    assert (storage.get(old.new_key), storage.head(old.new_key)) == (b"rendered by this version", {"recipe": "fresh"})
    assert not storage.exists(old.signed_key)


class MissMeanwhile(LocalStorage):
    """A miss of this version stores each derivative between migrate's look for it and its write."""

    def exists(self, key: str) -> bool:
        found = super().exists(key)
        if not found:
            self.put(key, b"rendered meanwhile", JPEG, "no-cache", metadata={"recipe": "fresh"})
        return found


def test_a_derivative_a_miss_stores_while_it_is_moved_is_never_overwritten(settings: Settings, tmp_path: Path) -> None:
    storage = MissMeanwhile(tmp_path / "media")
    old = old_store(settings, LocalStorage(tmp_path / "media"))

    report = migrate(settings, storage)

    assert statuses(report) == {item.signed_key: "moved" for item in old}
    for item in old:
        assert (storage.get(item.new_key), storage.head(item.new_key)) == (b"rendered meanwhile", {"recipe": "fresh"})
        assert not storage.exists(item.signed_key)


class DeletedMeanwhile(LocalStorage):
    """Each signed object is deleted (its original deleted through the API, say) as migrate reads it."""

    def head(self, key: str) -> Metadata | None:
        self.delete(key)
        return super().head(key)


def test_a_derivative_deleted_while_it_is_moved_is_skipped_and_not_written_again(
    settings: Settings, tmp_path: Path
) -> None:
    old = old_store(settings, LocalStorage(tmp_path / "media"))

    report = migrate(settings, DeletedMeanwhile(tmp_path / "media"))

    assert {o.item: (o.status, o.detail) for o in report.outcomes} == {
        item.signed_key: ("skipped", "deleted by someone else while it was moved") for item in old
    }
    assert keys(LocalStorage(tmp_path / "media")) == ["a.jpg"]


def test_objects_that_are_no_derivative_are_skipped_and_those_in_the_new_layout_not_reported(
    settings: Settings, storage: Storage
) -> None:
    storage.put("_r/a.jpg/notes.txt", b"?", "text/plain", "no-cache")
    storage.put("_r/a.jpg/400x300-fit-0123456789abcdef0123456789abcdef.jpg", b"?", JPEG, "no-cache")
    storage.put("_r/a.jpg/200x.jpg", b"new", JPEG, "no-cache")
    storage.put("_p/a.jpg/200x.webp", b"new", "image/webp", "no-cache")

    report = migrate(settings, storage, delete_unverified=True)

    assert sorted((o.item, o.status, o.detail) for o in report.outcomes) == [
        ("_r/a.jpg/400x300-fit-0123456789abcdef0123456789abcdef.jpg", "skipped", "not a derivative's key"),
        ("_r/a.jpg/notes.txt", "skipped", "not a derivative's key"),
    ]
    assert len(keys(storage)) == 4


def test_prefix_and_shards_each_move_only_their_originals_derivatives(settings: Settings, storage: Storage) -> None:
    originals = ("a/1.jpg", "a/3.jpg", "b/2.jpg")  # a/1.jpg is shard 0 of 2, a/3.jpg shard 1
    old = old_store(settings, storage, keys=originals)
    of = {key: {item.signed_key for item in old if item.original == key} for key in originals}

    assert set(statuses(migrate(settings, storage, prefix="b/"))) == of["b/2.jpg"]
    halves = [set(statuses(migrate(settings, storage, shard=Shard(part, 2)))) for part in (0, 1)]

    assert halves == [of["a/1.jpg"], of["a/3.jpg"]]
    assert not any(storage.exists(item.signed_key) for item in old)


def test_migrate_refuses_redirect_mode_whose_keys_keep_the_signature(settings: Settings, storage: Storage) -> None:
    old = old_store(settings, storage)
    redirect = replace(settings, on_miss="redirect", public_base_url="https://media.example.com")

    with pytest.raises(SettingsError, match="redirect mode"):
        migrate(redirect, storage)
    assert all(storage.exists(item.signed_key) for item in old)


def test_the_command_prints_a_line_per_object_and_the_counts_and_exits_0(cli: Run, tmp_path: Path) -> None:
    env = local_env(tmp_path / "media")
    settings = load(environ=env)
    storage = open_storage(settings)
    old = old_store(settings, storage)
    stranger = signed_elsewhere(storage, "a.jpg", "50x", "jpg", OLD_SECRET)

    result = cli("migrate", "--jobs", "1", env=env)

    assert result.code == 0, result.err
    assert sorted(result.lines()) == sorted(
        [f"moved {item.signed_key}: to {item.new_key}" for item in old]
        + [f"unverified {stranger}: signed with none of the current secrets; left in place"]
        + ["migrate: 5 moved, 1 unverified"]
    )
    assert cli("migrate", "--json", env=env).json()["counts"] == {"unverified": 1}


def test_the_command_in_redirect_mode_exits_2_with_one_line(cli: Run, tmp_path: Path) -> None:
    redirect = {"RESIZE_SIDECAR_ON_MISS": "redirect", "RESIZE_SIDECAR_PUBLIC_BASE_URL": "https://media.example.com"}
    result = cli("migrate", env=local_env(tmp_path / "media", **redirect))
    assert (result.code, result.out) == (2, "")
    assert result.err == (
        "resize-sidecar: migrate: in redirect mode (ON_MISS=redirect) derivatives are stored at their signed URL's "
        "path, which the bucket's website serves; there is nothing to move\n"
    )
