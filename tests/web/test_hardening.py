"""Concurrency and overload with real servers: one node's gunicorn workers share a miss, two nodes race on one
bucket, and a burst of misses beyond the transform slots is shed with 503 while nginx keeps serving hits."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest
import requests

from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import format_path
from resize_sidecar.media.storage import Storage
from resize_sidecar.media.stores import open_storage
from tests.support.bursts import fetch_together
from tests.support.images import photo
from tests.support.servers import SECRET, NginxServer, SidecarServer, metric, world_readable_dir

pytestmark = pytest.mark.e2e

READS = "resize_sidecar_original_reads_total"
TRANSFORMS = "resize_sidecar_transforms_total"


def private_dir(tmp_path_factory: pytest.TempPathFactory, name: str) -> str:
    path = tmp_path_factory.mktemp(name)
    path.chmod(0o700)
    return str(path)


@dataclass
class Bucket:
    env: dict[str, str]
    storage: Storage


@pytest.fixture(scope="module")
def bucket(moto_endpoint: str) -> Bucket:
    import boto3

    name = f"hardening-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    env = {
        "RESIZE_SIDECAR_SECRETS": SECRET,
        "RESIZE_SIDECAR_STORAGE": "s3",
        "RESIZE_SIDECAR_S3_BUCKET": name,
        "RESIZE_SIDECAR_S3_ENDPOINT_URL": moto_endpoint,
    }
    settings = Settings(storage="s3", s3_bucket=name, s3_endpoint_url=moto_endpoint, secrets=(SECRET,)).validate()
    return Bucket(env, open_storage(settings))


@pytest.fixture(scope="module")
def big_original() -> bytes:
    """A 12 MP JPEG."""
    return photo(4000, 3000)


@pytest.fixture(scope="module")
def node_locks(tmp_path_factory: pytest.TempPathFactory) -> str:
    return private_dir(tmp_path_factory, "locks-a")


@pytest.fixture(scope="module")
def node(bucket: Bucket, node_locks: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarServer]:
    """One machine: gunicorn with 4 workers and its own lock folder."""
    env = {**bucket.env, "RESIZE_SIDECAR_LOCK_DIR": node_locks}
    server = SidecarServer(env, tmp_path_factory.mktemp("logs-a"), workers=4)
    with server:
        yield server


def test_fifty_concurrent_misses_on_one_node_share_one_read_one_transform_and_one_write(
    node: SidecarServer, node_locks: str, bucket: Bucket, big_original: bytes
) -> None:
    key = "f1/photo.jpg"
    bucket.storage.put(key, big_original, "image/jpeg", "no-cache")
    path = format_path(key, "1600x", "webp", SECRET)
    reads, transforms = metric(node, READS), metric(node, TRANSFORMS)

    answers = fetch_together([node.url + path] * 50)

    assert [answer.status for answer in answers] == [200] * 50
    stored = bucket.storage.list(f"_r/{key}/")
    assert [item.key for item in stored] == [f"_r/{key}/1600x.webp"]
    stored_body = bucket.storage.get(stored[0].key)
    assert stored_body is not None
    assert {answer.digest for answer in answers} == {hashlib.sha256(stored_body).hexdigest()}
    assert [answer.headers["x-derivative"] for answer in answers].count("created") == 1
    assert metric(node, READS) == reads + 1
    assert metric(node, TRANSFORMS) == transforms + 1
    assert [name for name in os.listdir(node_locks) if not name.startswith("slot-")] == []


def test_the_sidecar_logs_one_json_line_per_request_with_the_id_it_was_sent(
    node: SidecarServer, bucket: Bucket
) -> None:
    key = "logs/photo.jpg"
    bucket.storage.put(key, photo(640, 480), "image/jpeg", "no-cache")
    path = format_path(key, "200x", "jpg", SECRET)
    request_id = uuid.uuid4().hex
    response = requests.get(f"{node.url}{path}?tracking=1", headers={"X-Request-ID": request_id}, timeout=30)
    assert response.headers["X-Request-ID"] == request_id

    lines = [json.loads(line) for line in node.log.read_text().splitlines() if request_id in line]
    assert len(lines) == 1
    assert {name: lines[0][name] for name in ("method", "path", "key", "spec", "fmt", "status", "cache")} == {
        "method": "GET",
        "path": path,
        "key": key,
        "spec": "200x",
        "fmt": "jpg",
        "status": 200,
        "cache": "created",
    }
    assert lines[0]["bytes"] == len(response.content)


def test_two_nodes_racing_on_one_bucket_answer_the_bytes_that_end_up_stored(
    node: SidecarServer, bucket: Bucket, big_original: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    key = "f2/photo.jpg"
    bucket.storage.put(key, big_original, "image/jpeg", "no-cache")
    path = format_path(key, "1200x900-fill", "jpg", SECRET)
    env = {**bucket.env, "RESIZE_SIDECAR_LOCK_DIR": private_dir(tmp_path_factory, "locks-b")}
    with SidecarServer(env, tmp_path_factory.mktemp("logs-b"), workers=4) as other:
        nodes = (node, other)
        before = [metric(server, READS) for server in nodes]

        answers = fetch_together([server.url + path for server in nodes for _ in range(25)])

        reads = [metric(server, READS) - count for server, count in zip(nodes, before, strict=True)]
    assert [answer.status for answer in answers] == [200] * 50
    stored_body = bucket.storage.get(f"_r/{key}/1200x900-fill.jpg")
    assert stored_body is not None
    # The strict claim: whoever wrote, every client got exactly what storage now holds. (moto's conditional PUT is
    # not atomic, so two nodes may both "win" now and then; S3's is.)
    assert {answer.digest for answer in answers} == {hashlib.sha256(stored_body).hexdigest()}
    for half in (answers[:25], answers[25:]):
        assert [answer.headers["x-derivative"] for answer in half].count("created") <= 1
    assert all(count <= 1 for count in reads), reads


def test_misses_beyond_the_transform_slots_are_shed_with_503_while_nginx_serves_hits(
    big_original: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = world_readable_dir("resize-sidecar-media-")
    cleanup = ExitStack()
    cleanup.callback(shutil.rmtree, root, ignore_errors=True)
    env = {
        "RESIZE_SIDECAR_SECRETS": SECRET,
        "RESIZE_SIDECAR_LOCAL_ROOT": str(root),
        "RESIZE_SIDECAR_LOCK_DIR": private_dir(tmp_path_factory, "locks-overload"),
        "RESIZE_SIDECAR_MAX_CONCURRENT_TRANSFORMS": "1",
        "RESIZE_SIDECAR_OVERLOAD_WAIT": "0.1",
    }
    storage = open_storage(Settings(local_root=str(root), secrets=(SECRET,)).validate())
    storage.put("burst/photo.jpg", big_original, "image/jpeg", "")
    with cleanup as servers:
        sidecar = servers.enter_context(SidecarServer(env, tmp_path_factory.mktemp("logs-overload"), workers=4))
        nginx = servers.enter_context(NginxServer(env, sidecar_url=sidecar.url))
        hit_path = format_path("burst/photo.jpg", "300x", "jpg", SECRET)
        first = requests.get(nginx.url + hit_path, timeout=60)
        assert first.status_code == 200

        # Distinct, slow misses (each a full-size sharpen), and hits for a stored derivative at the same time.
        misses = [format_path("burst/photo.jpg", f"{3000 + width}x-sharp", "webp", SECRET) for width in range(8)]
        answers = fetch_together([nginx.url + path for path in misses] + [nginx.url + hit_path] * 16)

    missed, hits = answers[:8], answers[8:]
    assert {answer.status for answer in missed} <= {200, 503}
    shed = [answer for answer in missed if answer.status == 503]
    assert shed, "no miss was shed: the transforms never overlapped"
    assert all(answer.headers["retry-after"] == "2" for answer in shed)
    assert all(answer.headers["cache-control"] == "no-store" for answer in shed)
    assert {(answer.status, answer.body) for answer in hits} == {(200, first.content)}
