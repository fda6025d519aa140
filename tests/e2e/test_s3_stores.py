"""The S3 path against two implementations: moto's emulator and Ceph's RADOS Gateway, a real store
(tests/support/rgw.py).

Every test runs once per store (the ``s3_endpoint`` fixture; ``-m "not rgw"`` leaves RGW out): misses and hits
through nginx, anonymous and SigV4-signed, with awkward keys; the conditional write and two nodes racing; the media
API; the operator's upload, regenerate, check and setup-bucket. moto cannot show where a real store differs, and
RGW does in three ways tested here: a public access block that blocks public ACLs makes it refuse every write, its
website calls answer 405 while static websites are off, and a store that refuses writes must be noticed. Where the
two behave differently, the test says what each does.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from resize_sidecar.core.signing import encode_key, format_path
from resize_sidecar.media.s3 import S3Storage
from tests.support.bursts import fetch_together
from tests.support.commands import Run, s3_env
from tests.support.images import image_size, image_size_and_format, photo
from tests.support.keys import AWKWARD_KEYS, stored_key
from tests.support.servers import SECRET, SidecarServer, Stack, media_stack, metric, raw_get
from tests.support.stores import S3Endpoint

pytestmark = pytest.mark.e2e

API_SECRET = "stores-api-secret-0123456789"
ENV = {"RESIZE_SIDECAR_API_SECRET": API_SECRET, "RESIZE_SIDECAR_PRESETS": "thumb=120x120-fill"}
READS = "resize_sidecar_original_reads_total"
#: What --public-read sets where the store has it, and what RGW reads back for a bucket that has none.
BLOCK_PUBLIC_ACLS = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": False,
    "RestrictPublicBuckets": False,
}
NO_BLOCK = dict.fromkeys(BLOCK_PUBLIC_ACLS, False)


def client(endpoint: S3Endpoint) -> Any:
    return boto3.client("s3", endpoint_url=endpoint.url, region_name="us-east-1")


@pytest.fixture(scope="module")
def stack(s3_endpoint: S3Endpoint, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """nginx and a sidecar over a bucket whose derivatives anyone may read."""
    logs = tmp_path_factory.mktemp(f"stores-{s3_endpoint.store}")
    with media_stack("s3", s3_endpoint.url, logs, ENV) as started:
        yield started


@pytest.fixture(scope="module")
def signed_stack(s3_endpoint: S3Endpoint, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """nginx signing its reads (SigV4) of a bucket nobody may read anonymously."""
    logs = tmp_path_factory.mktemp(f"stores-signed-{s3_endpoint.store}")
    env = {**ENV, "RESIZE_SIDECAR_NGINX_S3_AUTH": "sigv4"}
    with media_stack("s3", s3_endpoint.url, logs, env, public=False) as started:
        yield started


def bucket_url(stack: Stack, key: str) -> str:
    """A key's path on the store itself, as an anonymous client asks for it."""
    return f"/{stack.settings.s3_bucket}/{encode_key(key)}"


# nginx and the sidecar


@pytest.mark.parametrize("key", AWKWARD_KEYS)
def test_a_miss_is_stored_and_later_hits_are_served_by_nginx_anonymously_without_python(stack: Stack, key: str) -> None:
    stack.storage.put(key, photo(900, 600), "image/jpeg", "no-cache")
    url = stack.url(key, "300x", "webp")

    status, headers, body = stack.get(url)

    assert (status, headers["content-type"], headers["x-derivative"]) == (200, "image/webp", "created"), body
    assert image_size_and_format(body) == (300, 200, "webpload")
    stored = stored_key(url)
    assert stack.derivatives_of(key) == [stored]
    assert raw_get(stack.settings.s3_endpoint_url, bucket_url(stack, stored))[::2] == (200, body)
    reached = stack.sidecar_requests()
    for _ in range(2):
        assert stack.get(url)[::2] == (200, body)
    assert stack.sidecar_requests() == reached, "a hit reached the sidecar: nginx could not read the derivative"


@pytest.mark.parametrize("key", AWKWARD_KEYS)
def test_nginx_signs_its_reads_of_a_private_bucket_so_hits_never_reach_python(signed_stack: Stack, key: str) -> None:
    stack = signed_stack
    stack.storage.put(key, photo(900, 600), "image/jpeg", "no-cache")
    url = stack.url(key, "240x", "jpg")

    status, _, body = stack.get(url)

    assert status == 200, body
    stored = stored_key(url)
    assert raw_get(stack.settings.s3_endpoint_url, bucket_url(stack, stored))[0] == 403, "the bucket is not private"
    reached = stack.sidecar_requests()
    assert stack.get(url)[::2] == (200, body)
    assert stack.sidecar_requests() == reached, "nginx's signed read failed and fell back to the sidecar"


def test_a_conditional_write_refuses_the_second_writer(stack: Stack) -> None:
    key = f"_r/conditional/{uuid.uuid4().hex}.jpg"
    storage = stack.storage

    assert storage.put_if_absent(key, b"first", "image/jpeg", "no-cache") is True
    assert storage.put_if_absent(key, b"second", "image/jpeg", "no-cache") is False
    assert storage.get(key) == b"first"


def test_two_nodes_racing_on_one_bucket_answer_the_bytes_that_end_up_stored(
    s3_endpoint: S3Endpoint, stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    key = f"race/{uuid.uuid4().hex}.jpg"
    stack.storage.put(key, photo(2400, 1600), "image/jpeg", "no-cache")
    path = format_path(key, "1200x800-fill", "jpg", SECRET)
    env = {
        "RESIZE_SIDECAR_SECRETS": SECRET,
        "RESIZE_SIDECAR_STORAGE": "s3",
        "RESIZE_SIDECAR_S3_BUCKET": stack.settings.s3_bucket,
        "RESIZE_SIDECAR_S3_ENDPOINT_URL": s3_endpoint.url,
    }
    with ExitStack() as nodes:
        # Each node its own lock folder (SidecarServer's default): they share nothing but the bucket.
        servers = [nodes.enter_context(SidecarServer(env, tmp_path_factory.mktemp("node"))) for _ in range(2)]
        answers = fetch_together([server.url + path for server in servers for _ in range(8)])
        reads = [metric(server, READS) for server in servers]

    assert [answer.status for answer in answers] == [200] * 16
    stored = stack.storage.get(stored_key(path))
    assert stored is not None
    assert {answer.digest for answer in answers} == {hashlib.sha256(stored).hexdigest()}
    assert max(reads) == 1, reads  # a node's misses wait for its first: one read at most
    # Each node makes it once at most; across nodes the conditional PUT decides, and a node that lost answers what
    # the winner stored. (Both may "win" when their PUTs overlap on a store whose check is not atomic, as moto's.)
    for node in (answers[:8], answers[8:]):
        assert [answer.headers["x-derivative"] for answer in node].count("created") <= 1


# The media API


def api(stack: Stack, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {API_SECRET}", **kwargs.pop("headers", {})}
    return requests.request(method, f"{stack.sidecar.url}/api/{path}", headers=headers, timeout=30, **kwargs)


def test_the_api_uploads_activates_gives_a_temporary_url_and_deletes(stack: Stack) -> None:
    uploaded = api(stack, "POST", "images", files={"file": ("trip été.jpg", photo(800, 600), "image/jpeg")})
    assert uploaded.status_code == 201, uploaded.text
    incoming = uploaded.json()["incoming_key"]
    activated = api(stack, "POST", f"images/{encode_key(incoming)}/activate")
    assert activated.status_code == 200, activated.text
    key, thumb = activated.json()["key"], activated.json()["urls"]["thumb"]
    reached = stack.sidecar_requests()
    status, _, body = stack.get(thumb)
    assert (status, image_size_and_format(body)) == (200, (120, 120, "jpegload"))
    assert stack.sidecar_requests() == reached, "nginx did not serve the activated derivative from the store"

    temporary = api(stack, "GET", f"images/{encode_key(key)}/url", params={"expires": 60}).json()["url"]
    fetched = requests.get(temporary, timeout=10)
    assert (fetched.status_code, fetched.content) == (200, stack.storage.get(key))

    deleted = api(stack, "DELETE", f"images/{encode_key(key)}")
    assert deleted.json() == {"key": key, "deleted_original": True, "deleted_derivatives": 1}
    assert [item.key for item in stack.storage.list() if key in item.key] == []


# The operator's commands


def store_env(endpoint: str, bucket: str, **more: str) -> dict[str, str]:
    """The operations' settings, with timeouts a busy two-core machine meets (a bucket's creation on RGW can take
    over a second)."""
    timeouts = {"RESIZE_SIDECAR_S3_CONNECT_TIMEOUT": "5", "RESIZE_SIDECAR_S3_READ_TIMEOUT": "20"}
    return s3_env(endpoint, bucket, **{**timeouts, **more})


def stack_env(stack: Stack, **more: str) -> dict[str, str]:
    return store_env(stack.settings.s3_endpoint_url, stack.settings.s3_bucket, **more)


def test_upload_regenerate_and_check_work_on_the_store(cli: Run, stack: Stack, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    (folder / "alps").mkdir(parents=True)
    (folder / "alps" / "summit café.jpg").write_bytes(photo(640, 480))
    (folder / "lake.png").write_bytes(photo(320, 240, "png"))
    dest = f"ops-{uuid.uuid4().hex[:8]}"

    uploaded = cli("upload", str(folder), "--dest", dest, "--json", env=stack_env(stack))
    assert uploaded.code == 0, uploaded.err
    assert uploaded.json()["counts"] == {"uploaded": 2}
    key = f"{dest}/alps/summit café.jpg"
    assert stack.storage.get(key) == (folder / "alps" / "summit café.jpg").read_bytes()

    thumb = format_path(key, "thumb", "jpg", SECRET)
    assert image_size(stack.get(thumb)[2]) == (120, 120)
    smaller = stack_env(stack, RESIZE_SIDECAR_PRESETS="thumb=90x60-fill")
    rebuilt = cli("regenerate", "--prefix", f"{dest}/", "--json", env=smaller)
    assert rebuilt.code == 0, rebuilt.err
    assert rebuilt.json()["counts"] == {"rebuilt": 1}
    assert image_size(stack.storage.get(stored_key(thumb)) or b"") == (90, 60)

    checked = cli("check", "--json", env=stack_env(stack))
    storage = next(finding for finding in checked.json()["findings"] if finding["name"] == "storage")
    assert storage["status"] == "ok", storage
    assert storage["detail"].endswith("reached; a test object was written, read back and deleted")


SETUP_OPTIONS = ("--public-read", "--website", "--incoming-expiry", "3", "--cors", "https://app.example.com")


def test_setup_bucket_sets_what_the_store_has_and_verifies_that_derivatives_are_public(
    cli: Run, s3_endpoint: S3Endpoint
) -> None:
    bucket = f"setup-{uuid.uuid4().hex[:12]}"
    env = store_env(s3_endpoint.url, bucket)
    s3 = client(s3_endpoint)

    first = cli("setup-bucket", bucket, *SETUP_OPTIONS, env=env)

    if s3_endpoint.store == "moto":
        assert first.code == 0, first.err
        assert first.lines()[-2:] == [
            "verified public read: a test object under _r/ was written, read back and read by anyone",
            "setup-bucket: 6 changed, 0 unchanged",
        ]
        assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == BLOCK_PUBLIC_ACLS
    else:
        # RGW refuses every write under BlockPublicAcls: the command says so, names the way out, and puts the block
        # back as it was; what it set besides (policy, lifecycle, CORS) stays. Websites are off: unsupported.
        assert (first.code, first.out) == (1, "")
        assert "AccessDenied" in first.err and "run setup-bucket again with --no-public-access-block" in first.err
        assert "It was put back as it was." in first.err
        assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == NO_BLOCK
    assert [rule["ID"] for rule in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]] == [
        "resize-sidecar-incoming",
        "resize-sidecar-incoming-derivatives",
    ]
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"][0]["AllowedOrigins"] == ["https://app.example.com"]

    second = cli("setup-bucket", bucket, *SETUP_OPTIONS, "--no-public-access-block", env=env)

    assert second.code == 0, second.err
    assert "skipped public access block: left as it is (--no-public-access-block)" in second.lines()
    assert "verified public read: a test object under _r/ was written, read back and read by anyone" in second.lines()
    if s3_endpoint.store == "moto":
        assert second.lines()[-1] == "setup-bucket: 0 changed, 5 unchanged"
    else:
        website = f"unsupported website: this store has none (S3 get_bucket_website on bucket '{bucket}': "
        website += "MethodNotAllowed)"
        assert website in second.lines()
        assert second.lines()[-1] == "setup-bucket: 0 changed, 4 unchanged, unsupported by this store: website"
    S3Storage(bucket, endpoint_url=s3_endpoint.url).put("photos/after.jpg", b"x", "image/jpeg", "no-cache")


# A store that refuses writes


@pytest.fixture
def unwritable_stack(s3_endpoint: S3Endpoint, tmp_path: Path) -> Iterator[Stack]:
    """A stack whose store answers reads and refuses every write: RGW under a public access block."""
    if s3_endpoint.store == "moto":
        pytest.skip("moto refuses no write of a bucket's owner; tests/web/test_write_probe.py covers the probe itself")
    with media_stack("s3", s3_endpoint.url, tmp_path, ENV) as started:
        started.storage.put("refused/photo.jpg", photo(640, 480), "image/jpeg", "no-cache")
        client(s3_endpoint).put_public_access_block(
            Bucket=started.settings.s3_bucket, PublicAccessBlockConfiguration=BLOCK_PUBLIC_ACLS
        )
        yield started


def test_a_store_that_refuses_writes_is_not_ready_and_its_misses_are_logged_unstored(
    cli: Run, unwritable_stack: Stack
) -> None:
    stack = unwritable_stack
    status, _, body = raw_get(stack.sidecar.url, "/readyz")
    assert (status, body) == (503, b"storage refuses writes\n")
    assert "not ready: storage refuses writes: S3 put s3://" in stack.sidecar.log_tail(200)

    failed = metric(stack.sidecar, "resize_sidecar_derivative_store_failed_total")
    request_id = uuid.uuid4().hex
    path = stack.url("refused/photo.jpg", "200x", "jpg")
    status, headers, body = raw_get(stack.sidecar.url, path, headers={"X-Request-ID": request_id})

    assert (status, headers["x-derivative"], image_size(body)) == (200, "unstored", (200, 150))
    assert stack.derivatives_of("refused/photo.jpg") == []
    assert metric(stack.sidecar, "resize_sidecar_derivative_store_failed_total") == failed + 1
    (line,) = [json.loads(line) for line in stack.sidecar.log_tail(400).splitlines() if request_id in line]
    assert (line["status"], line["cache"]) == (200, "unstored")

    checked = cli("check", "--json", env=stack_env(stack))
    assert checked.code == 1
    storage = next(finding for finding in checked.json()["findings"] if finding["name"] == "storage")
    assert storage["status"] == "fail"
    assert storage["detail"].startswith("reached, but it refuses writes: S3 put s3://")
    assert "HTTP 403 AccessDenied" in storage["detail"]
    assert storage["detail"].endswith("(a public access block? see setup-bucket --no-public-access-block)")
