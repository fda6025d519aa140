"""A store that answers reads and refuses writes, in process: readiness, the request log, and setup-bucket.

The real store that does this, Ceph's RADOS Gateway, is in tests/e2e/test_s3_stores.py; here the same answers come
from a storage that refuses writes and from botocore's Stubber, so the handling is tested where Ceph is absent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator

import pytest
from botocore.stub import Stubber

from resize_sidecar.core.errors import StorageError
from resize_sidecar.core.objects import write_headers
from resize_sidecar.core.settings import Settings
from resize_sidecar.media.s3 import BucketAdmin
from resize_sidecar.media.storage import WriteProbe
from resize_sidecar.ops.bucket import BucketPlan, setup_bucket
from resize_sidecar.web.app import WRITE_PROBE_KEY, make_app
from tests.support.commands import Run, s3_env
from tests.support.images import photo
from tests.support.in_process import CountingStorage, get, url
from tests.support.servers import SECRET


def test_the_write_probe_writes_at_most_once_per_interval_and_keeps_a_refusal_as_long(
    storage: CountingStorage,
) -> None:
    now = [0.0]
    headers = write_headers("readiness_probe", Settings())
    probe = WriteProbe(storage, WRITE_PROBE_KEY, headers=headers, interval=30.0, clock=lambda: now[0])

    for now[0] in (0.0, 10.0, 29.9):
        probe.check()
    assert storage.calls.count("put") == 1
    assert storage.inner.get(WRITE_PROBE_KEY) == b"ok\n"

    storage.fail_writes = True
    now[0] = 30.0
    with pytest.raises(StorageError, match="put refused for the test"):
        probe.check()
    storage.fail_writes = False
    now[0] = 59.9
    with pytest.raises(StorageError, match="put refused for the test"):
        probe.check()
    assert storage.calls.count("put") == 2
    now[0] = 60.0
    probe.check()
    assert storage.calls.count("put") == 3


def test_readiness_is_503_when_storage_refuses_writes(
    make_settings: Callable[..., Settings], storage: CountingStorage
) -> None:
    storage.fail_writes = True
    app = make_app(make_settings(), storage=storage)

    response = get(app, "/readyz")

    assert (response.status_int, response.text) == (503, "storage refuses writes\n")
    assert response.cache_control.no_store


def test_a_derivative_made_but_not_stored_is_answered_and_logged_as_unstored(
    make_settings: Callable[..., Settings], storage: CountingStorage, caplog: pytest.LogCaptureFixture
) -> None:
    storage.inner.put("c.jpg", photo(300, 200), "image/jpeg", "")
    storage.fail_writes = True
    app = make_app(make_settings(), storage=storage)

    with caplog.at_level(logging.INFO, logger="resize_sidecar.requests"):
        refused = get(app, url("c.jpg", "100x", "jpg"))
        storage.fail_writes = False
        stored = get(app, url("c.jpg", "120x", "jpg"))

    assert (refused.status_int, refused.headers["X-Derivative"]) == (200, "unstored")
    assert (stored.status_int, stored.headers["X-Derivative"]) == (200, "created")
    assert len(storage.inner.list("_r/")) == 1
    lines = [json.loads(record.getMessage()) for record in caplog.records if record.name == "resize_sidecar.requests"]
    assert [line["cache"] for line in lines] == ["unstored", "created"]


# setup-bucket against a store's answers (botocore's Stubber stands in for the store)


@pytest.fixture
def admin() -> Iterator[tuple[BucketAdmin, Stubber]]:
    settings = Settings(
        storage="s3", s3_bucket="media", s3_endpoint_url="http://127.0.0.1:9", secrets=(SECRET,)
    ).validate()
    bucket_admin = BucketAdmin(settings, "media")
    with Stubber(bucket_admin._client) as stubber:
        yield bucket_admin, stubber
        stubber.assert_no_pending_responses()


def settings_for(admin: BucketAdmin) -> Settings:
    return Settings(storage="s3", s3_bucket=admin.bucket, secrets=(SECRET,)).validate()


@pytest.mark.parametrize(
    ("status", "code"),
    [pytest.param(405, "MethodNotAllowed", id="405"), pytest.param(501, "NotImplemented", id="501")],
)
def test_setup_bucket_reads_a_part_the_store_lacks_as_unsupported_and_sets_the_rest(
    admin: tuple[BucketAdmin, Stubber], status: int, code: str
) -> None:
    bucket_admin, store = admin
    store.add_response("head_bucket", {})
    store.add_client_error("get_bucket_website", code, http_status_code=status)
    store.add_client_error("get_bucket_cors", "NoSuchCORSConfiguration", http_status_code=404)
    store.add_response("put_bucket_cors", {})
    plan = BucketPlan(website=True, cors_origins=("https://app.example.com",))

    changes = setup_bucket(settings_for(bucket_admin), bucket_admin, plan)

    assert [(change.part, change.status) for change in changes] == [
        ("bucket", "unchanged"),
        ("website", "unsupported"),
        ("CORS", "set"),
    ]
    assert changes[1].detail == f"this store has none (S3 get_bucket_website on bucket 'media': {code})"


def test_setup_bucket_puts_back_a_public_access_block_after_which_writes_fail_and_names_the_option(
    admin: tuple[BucketAdmin, Stubber],
) -> None:
    bucket_admin, store = admin
    store.add_response("head_bucket", {})
    store.add_client_error("get_public_access_block", "NoSuchPublicAccessBlockConfiguration", http_status_code=404)
    store.add_response("put_public_access_block", {})
    store.add_client_error("get_bucket_policy", "NoSuchBucketPolicy", http_status_code=404)
    store.add_response("put_bucket_policy", {})
    store.add_client_error("put_object", "AccessDenied", http_status_code=403)
    store.add_response("delete_public_access_block", {}, {"Bucket": "media"})

    with pytest.raises(StorageError) as refused:
        setup_bucket(settings_for(bucket_admin), bucket_admin, BucketPlan(public_read=True))

    message = refused.value.detail
    assert message.startswith("setup-bucket could not verify bucket 'media': S3 put_object on bucket 'media': Access")
    assert "run setup-bucket again with --no-public-access-block. It was put back as it was." in message


def test_setup_bucket_refuses_no_public_access_block_without_public_read_with_exit_2(cli: Run) -> None:
    env = s3_env("http://127.0.0.1:9", "media")  # refused before any request

    result = cli("setup-bucket", "media", "--no-public-access-block", env=env)

    assert (result.code, result.out) == (2, "")
    assert "--no-public-access-block: the block is set only with --public-read, add it" in result.err
