"""S3 misbehaving under a real sidecar: missing originals, oversized and lying bodies, hangs, resets, failed writes.

gunicorn runs the sidecar as users run it; between it and moto's S3 server sits ``FaultProxy`` (tests/support/faults),
which breaks S3 in one chosen way per test and counts the requests it saw (``PUT`` = writes). Short S3 timeouts keep a
hang to about four seconds (2 s read timeout x 2 attempts), yet leave a busy machine's moto time to answer. What is
asserted is the answer, what was written and that the same workers live on; durations are not asserted.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
import pyvips

from resize_sidecar.core.signing import format_path
from tests.support.faults import Fault, FaultProxy, Workers
from tests.support.images import photo
from tests.support.servers import SECRET, SidecarServer, metric, raw_get

pytestmark = pytest.mark.e2e

#: Small enough that a 1600x1200 photo is over it and an 800x600 one is under it.
MAX_SOURCE_BYTES = 100_000
WORKERS = 2
S3_ATTEMPTS = 2
S3_READ_TIMEOUT = 2


@dataclass
class FaultyStack:
    proxy: FaultProxy
    sidecar: SidecarServer
    s3: Any  # a boto3 client talking to moto directly, past the proxy
    bucket: str
    workers: Workers

    def put_original(self, key: str, body: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="image/jpeg")

    def stored_derivatives(self, key: str) -> list[str]:
        listing = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=f"_r/{key}/")
        return [item["Key"] for item in listing.get("Contents", [])]

    def get(self, key: str, spec: str = "300x", fmt: str = "jpg") -> tuple[int, dict[str, str], bytes]:
        return raw_get(self.sidecar.url, format_path(key, spec, fmt, SECRET))

    def metric(self, name: str, **labels: str) -> float:
        return metric(self.sidecar, name, **labels)

    def rejections(self, reason: str) -> float:
        return self.metric("resize_sidecar_rejections_total", reason=reason)


@pytest.fixture(scope="module")
def stack(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultyStack]:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    bucket = f"faults-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    with FaultProxy(moto_endpoint) as proxy:
        env = {
            "RESIZE_SIDECAR_SECRETS": SECRET,
            "RESIZE_SIDECAR_STORAGE": "s3",
            "RESIZE_SIDECAR_S3_BUCKET": bucket,
            "RESIZE_SIDECAR_S3_ENDPOINT_URL": proxy.url,
            "RESIZE_SIDECAR_S3_CONNECT_TIMEOUT": "1",
            "RESIZE_SIDECAR_S3_READ_TIMEOUT": str(S3_READ_TIMEOUT),
            "RESIZE_SIDECAR_S3_MAX_ATTEMPTS": str(S3_ATTEMPTS),
            "RESIZE_SIDECAR_MAX_SOURCE_BYTES": str(MAX_SOURCE_BYTES),
            # Transform slots are shared by every sidecar using one lock folder: keep other test runs out of ours.
            "RESIZE_SIDECAR_LOCK_DIR": str(tmp_path_factory.mktemp("fault-locks")),
        }
        sidecar = SidecarServer(env, tmp_path_factory.mktemp("faults"), workers=WORKERS)
        with sidecar:
            assert sidecar.process is not None
            # `resize-sidecar serve` execs gunicorn, so the process started is gunicorn's master.
            yield FaultyStack(proxy, sidecar, s3, bucket, Workers.of(sidecar.process.pid, WORKERS))


@pytest.fixture(autouse=True)
def healthy_s3(stack: FaultyStack) -> Iterator[None]:
    """Each test starts with S3 relayed faithfully and the counts at zero, and leaves no fault behind."""
    stack.proxy.clear()
    yield
    stack.proxy.clear()


def original(stack: FaultyStack, name: str, width: int = 800, height: int = 600) -> str:
    """Store a photo under a key of its own (so derivatives of other tests never answer for it); returns the key."""
    key = f"{name}/{uuid.uuid4().hex[:8]}.jpg"
    stack.put_original(key, photo(width, height))
    return key


def only_the_original(key: str) -> str:
    """A target pattern matching reads of the original, not the lookup of its derivative (under ``_r/``)."""
    return rf"^/[^/]+/{re.escape(key)}$"


def is_jpeg(body: bytes, width: int) -> bool:
    image = pyvips.Image.new_from_buffer(body, "")
    return bool(image.get("vips-loader").startswith("jpegload")) and image.width == width


# FAULTS row 5: the original is missing ---------------------------------------------------------------------------


def test_a_missing_original_is_404_no_store_and_nothing_is_written(stack: FaultyStack) -> None:
    status, headers, _ = stack.get(f"nowhere/{uuid.uuid4().hex}.jpg")
    assert status == 404
    assert headers["cache-control"] == "no-store"
    assert stack.proxy.count("PUT") == 0


def test_an_original_s3_refuses_to_read_is_404_like_a_missing_one(stack: FaultyStack) -> None:
    """S3 answers 403 AccessDenied, not 404, for a missing key when the reader may not list the bucket."""
    key = original(stack, "denied")
    stack.proxy.fault = Fault.error(403, "AccessDenied", methods=["GET"])
    status, headers, _ = stack.get(key)
    assert status == 404
    assert headers["cache-control"] == "no-store"
    assert stack.proxy.count("PUT") == 0
    assert stack.stored_derivatives(key) == []


# FAULTS row 7: the original's size, honest and lying ------------------------------------------------------------


def test_an_original_announced_over_max_source_bytes_is_422_without_reading_its_body(stack: FaultyStack) -> None:
    """S3 sends the head and then stalls: reading the body would end in a read timeout (504), refusing it is 422."""
    key = original(stack, "large", 1600, 1200)
    stack.proxy.fault = Fault.stall_after(0, path=only_the_original(key))
    refused = stack.rejections("source_limit")
    status, headers, body = stack.get(key)
    assert status == 422, body
    assert headers["cache-control"] == "no-store"
    assert stack.rejections("source_limit") == refused + 1
    assert stack.proxy.count("PUT") == 0


def test_a_body_longer_than_its_announced_length_is_cut_there_and_refused_as_truncated(stack: FaultyStack) -> None:
    """The announced length is under the limit and the stream is over it: HTTP framing stops at the announced
    length, and the cut image fails the strict decode rather than being grey-filled and stored."""
    key = original(stack, "longer", 1600, 1200)
    size = stack.s3.head_object(Bucket=stack.bucket, Key=key)["ContentLength"]
    stack.proxy.fault = Fault.content_length(MAX_SOURCE_BYTES - 10_000 - size, path=only_the_original(key))
    undecodable = stack.rejections("undecodable")
    status, _, body = stack.get(key)
    assert status == 422, body
    assert stack.rejections("undecodable") == undecodable + 1
    assert stack.proxy.count("PUT") == 0
    assert stack.stored_derivatives(key) == []


def test_a_body_without_a_length_is_cut_one_byte_past_max_source_bytes(stack: FaultyStack) -> None:
    key = original(stack, "unannounced", 1600, 1200)
    stack.proxy.fault = Fault.content_length(None, path=only_the_original(key))
    refused = stack.rejections("source_limit")
    status, _, body = stack.get(key)
    assert status == 422, body
    assert stack.rejections("source_limit") == refused + 1
    assert stack.proxy.count("PUT") == 0


def test_a_body_shorter_than_announced_is_502_and_never_decoded(stack: FaultyStack) -> None:
    key = original(stack, "shorter")
    stack.proxy.fault = Fault.content_length(+5_000, path=only_the_original(key))
    storage_failures, undecodable = stack.rejections("storage"), stack.rejections("undecodable")
    status, headers, body = stack.get(key)
    assert status == 502, body
    assert headers["cache-control"] == "no-store"
    assert stack.rejections("storage") == storage_failures + 1
    assert stack.rejections("undecodable") == undecodable  # the partial buffer never reached libvips
    assert stack.proxy.count("PUT") == 0


# FAULTS rows 15 and 16, F6: S3 hangs, resets, goes away and comes back -----------------------------------------------


def test_s3_answering_late_but_within_the_read_timeout_only_slows_the_answer(stack: FaultyStack) -> None:
    key = original(stack, "slow")
    stack.proxy.fault = Fault.delay(300)
    status, _, body = stack.get(key)
    assert status == 200
    assert is_jpeg(body, 300)


def test_s3_hanging_is_504_and_the_same_workers_serve_the_next_request(stack: FaultyStack) -> None:
    key = original(stack, "hung")
    stack.proxy.fault = Fault.blackhole()
    status, headers, _ = stack.get(key)
    assert status == 504
    assert headers["cache-control"] == "no-store"
    # botocore tried the lookup of the derivative as often as configured, and gave up: nothing more was asked.
    assert stack.proxy.counts() == {"GET": S3_ATTEMPTS}
    stack.proxy.clear()
    status, _, body = stack.get(key)
    assert status == 200, "the request after the hang did not succeed: something stayed locked or broken"
    assert is_jpeg(body, 300)
    assert stack.workers.unchanged()


def test_s3_hanging_while_the_original_is_read_is_504_and_nothing_is_written(stack: FaultyStack) -> None:
    key = original(stack, "hung-original")
    stack.proxy.fault = Fault.stall_after(1_000, path=only_the_original(key))
    status, _, _ = stack.get(key)
    assert status == 504
    assert stack.proxy.count("PUT") == 0
    assert stack.stored_derivatives(key) == []


def test_s3_resetting_mid_body_is_502_nothing_is_written_and_the_next_request_succeeds(stack: FaultyStack) -> None:
    key = original(stack, "reset")
    stack.proxy.fault = Fault.reset_after(2_000, path=only_the_original(key))
    undecodable = stack.rejections("undecodable")
    status, headers, _ = stack.get(key)
    assert status == 502
    assert headers["cache-control"] == "no-store"
    assert stack.rejections("undecodable") == undecodable
    assert stack.proxy.count("PUT") == 0
    assert stack.stored_derivatives(key) == []
    stack.proxy.clear()
    assert stack.get(key)[0] == 200
    assert stack.workers.unchanged()


def test_s3_going_away_is_502_and_the_first_request_after_it_returns_succeeds(stack: FaultyStack) -> None:
    key = original(stack, "gone")
    stack.proxy.fault = Fault.reset()  # every connection dropped before a byte of answer, as when S3 is killed
    assert stack.get(key)[0] == 502
    stack.proxy.clear()
    assert stack.get(key)[0] == 200
    assert stack.workers.unchanged()


def test_every_request_during_an_s3_outage_ends_with_504_and_all_succeed_after_it(stack: FaultyStack) -> None:
    """More requests than workers: those queued behind a hung one end too, none is left waiting."""
    keys = [original(stack, f"outage-{n}") for n in range(2 * WORKERS)]
    stack.proxy.fault = Fault.blackhole()
    with ThreadPoolExecutor(max_workers=len(keys)) as pool:
        during = list(pool.map(lambda key: stack.get(key)[:2], keys))
    assert [status for status, _ in during] == [504] * len(keys)
    assert all(headers["cache-control"] == "no-store" for _, headers in during)
    stack.proxy.clear()
    with ThreadPoolExecutor(max_workers=len(keys)) as pool:
        after = list(pool.map(lambda key: stack.get(key)[0], keys))
    assert after == [200] * len(keys)
    assert stack.workers.unchanged()


# FAULTS row 17: the write fails after the transform ---------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(Fault.slow_down(methods=["PUT"]), id="503 SlowDown"),
        pytest.param(Fault.reset(methods=["PUT"]), id="connection reset"),
        pytest.param(Fault.blackhole(methods=["PUT"]), id="timeout"),
    ],
)
def test_a_failed_write_still_answers_the_image_counts_it_and_stores_nothing(stack: FaultyStack, fault: Fault) -> None:
    key = original(stack, "unwritable")
    stack.proxy.fault = fault
    failed = stack.metric("resize_sidecar_derivative_store_failed_total")
    status, headers, body = stack.get(key, "200x", "jpg")
    assert status == 200
    assert headers["content-type"] == "image/jpeg"
    assert is_jpeg(body, 200)
    assert stack.metric("resize_sidecar_derivative_store_failed_total") == failed + 1
    assert 1 <= stack.proxy.count("PUT") <= S3_ATTEMPTS  # retried, within bounds
    assert stack.stored_derivatives(key) == []
    stack.proxy.clear()
    status, headers, _ = stack.get(key, "200x", "jpg")
    assert (status, headers["x-derivative"]) == (200, "created")  # the next miss makes and stores it
    assert len(stack.stored_derivatives(key)) == 1


def test_a_1024_byte_key_is_answered_over_s3_though_its_derivative_key_is_too_long_to_store(
    stack: FaultyStack,
) -> None:
    """S3 keys end at 1024 bytes; a derivative's key adds its prefix, spec and signature to the original's.

    moto stores longer keys, so the proxy answers for S3 what S3 answers to any request for one.
    """
    key = "long/" + "é" * 507 + "z.jpg"
    assert len(key.encode()) == 1024
    stack.put_original(key, photo(640, 480))
    stack.proxy.fault = Fault.error(400, "KeyTooLongError", path="^/[^/]+/_r/long/")
    failed = stack.metric("resize_sidecar_derivative_store_failed_total")
    status, _, body = stack.get(key, "120x", "jpg")
    assert status == 200
    assert is_jpeg(body, 120)
    assert stack.metric("resize_sidecar_derivative_store_failed_total") == failed + 1
    assert stack.s3.list_objects_v2(Bucket=stack.bucket, Prefix="_r/long/").get("KeyCount") == 0


# FAULTS row 28: a worker killed in the middle of a request ---------------------------------------------------------


def test_a_worker_killed_mid_write_is_replaced_and_the_next_request_succeeds(stack: FaultyStack) -> None:
    """The write hangs (so the kill lands while the worker holds the derivative's lock), every worker is killed,
    and gunicorn's master starts new ones; the same URL then succeeds: no lock outlives its process.

    Runs last in this module: it changes the workers the other tests compare against.
    """
    key = original(stack, "killed")
    stack.proxy.fault = Fault.blackhole(methods=["PUT"])
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(stack.get, key)
        deadline = time.monotonic() + 20
        while stack.proxy.count("PUT") == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert stack.proxy.count("PUT") == 1, "the request never reached its write"
        for pid in stack.workers.pids:
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):  # the connection dies with its worker
            pending.result()
    stack.proxy.clear()
    replaced = stack.workers.replaced()
    assert len(replaced.pids) == WORKERS and set(replaced.pids).isdisjoint(stack.workers.pids)
    stack.workers = replaced
    status, headers, body = stack.get(key)
    assert (status, headers.get("x-derivative")) == (200, "created")
    assert is_jpeg(body, 300)
    assert len(stack.stored_derivatives(key)) == 1
