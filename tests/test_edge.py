"""nginx at the edge: a private bucket read with SigV4 signatures, the hit cache, and honest errors.

moto runs in its own process here with authentication enforced, so a request nginx signs wrongly is refused
exactly as S3 would refuse it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from resize_sidecar.settings import Settings
from resize_sidecar.signing import format_path
from tests.conftest import SECRET, photo
from tests.servers import Blackhole, MotoServer, NginxServer, SidecarServer, raw_get, sidecar_requests

pytestmark = pytest.mark.e2e


@dataclass
class PrivateBucket:
    moto: MotoServer
    bucket: str
    env: dict[str, str]  # settings and credentials for the sidecar and nginx


@pytest.fixture(scope="module")
def private_bucket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateBucket]:
    """A bucket no anonymous request can read, and an IAM key allowed to use it."""
    logs = tmp_path_factory.mktemp("moto-auth")
    with MotoServer(logs) as moto:
        iam = boto3.client("iam", endpoint_url=moto.url, region_name="us-east-1")
        iam.create_user(UserName="media")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="media", PolicyName="media", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="media")["AccessKey"]
        bucket = f"private-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1").create_bucket(Bucket=bucket)
        moto.enforce_auth()
        env = {
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
            "RESIZE_SIDECAR_SECRETS": SECRET,
            "RESIZE_SIDECAR_STORAGE": "s3",
            "RESIZE_SIDECAR_S3_BUCKET": bucket,
            "RESIZE_SIDECAR_S3_ENDPOINT_URL": moto.url,
            "RESIZE_SIDECAR_NGINX_S3_AUTH": "sigv4",
        }
        yield PrivateBucket(moto, bucket, env)


def put_original(bucket: PrivateBucket, key: str, body: bytes) -> None:
    client = boto3.client(
        "s3",
        endpoint_url=bucket.moto.url,
        region_name="us-east-1",
        aws_access_key_id=bucket.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=bucket.env["AWS_SECRET_ACCESS_KEY"],
    )
    client.put_object(Bucket=bucket.bucket, Key=key, Body=body, ContentType="image/jpeg")


@pytest.fixture(scope="module")
def signed_edge(
    private_bucket: PrivateBucket, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[SidecarServer, NginxServer]]:
    logs = tmp_path_factory.mktemp("edge")
    env = {**private_bucket.env, "RESIZE_SIDECAR_NGINX_CACHE_SIZE": "64m"}
    with ExitStack() as stack:
        sidecar = stack.enter_context(SidecarServer(env, logs))
        nginx = stack.enter_context(NginxServer(env, sidecar_url=sidecar.url))
        yield sidecar, nginx


def test_the_bucket_really_is_private(private_bucket: PrivateBucket) -> None:
    put_original(private_bucket, "_r/probe.jpg/x.jpg", b"x")
    status, _, _ = raw_get(private_bucket.moto.url, f"/{private_bucket.bucket}/_r/probe.jpg/x.jpg")
    assert status == 403


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("private/plain.jpg", id="plain"),
        pytest.param("private/café déjà/été 2024.jpg", id="utf-8 and spaces"),
        pytest.param("private/a+b %25 & c; ~d=e,f!'().jpg", id="plus percent and reserved"),
    ],
)
def test_nginx_signs_its_reads_so_hits_never_reach_python(
    private_bucket: PrivateBucket, signed_edge: tuple[SidecarServer, NginxServer], key: str
) -> None:
    sidecar, nginx = signed_edge
    put_original(private_bucket, key, photo(900, 600))
    url = format_path(key, "300x", "jpg", SECRET)
    status, headers, body = raw_get(nginx.url, url)
    assert status == 200, body
    assert headers["x-cache-status"] == "MISS"
    reached = sidecar_requests(sidecar)
    # The nginx cache would hide a failing S3 read: ask for the object twice more, once past the cache.
    again = raw_get(nginx.url, url)
    assert (again[0], again[2], again[1]["x-cache-status"]) == (200, body, "HIT")
    assert sidecar_requests(sidecar) == reached


def test_a_signed_read_of_an_uncached_derivative_is_served_by_s3(
    private_bucket: PrivateBucket, signed_edge: tuple[SidecarServer, NginxServer], tmp_path: Path
) -> None:
    """A second nginx, with no cache: every hit is a signed S3 read, and none reaches the sidecar."""
    sidecar, _ = signed_edge
    key = "private/uncached.jpg"
    put_original(private_bucket, key, photo(640, 480))
    url = format_path(key, "200x", "webp", SECRET)
    with NginxServer(private_bucket.env, sidecar_url=sidecar.url) as plain:
        assert raw_get(plain.url, url)[0] == 200
        reached = sidecar_requests(sidecar)
        for _ in range(3):
            status, headers, _ = raw_get(plain.url, url)
            assert status == 200
            assert "x-derivative" not in headers  # the sidecar sets it; S3 does not
        assert sidecar_requests(sidecar) == reached


def test_a_wrong_secret_key_is_refused_by_s3_and_every_hit_falls_back(
    private_bucket: PrivateBucket, signed_edge: tuple[SidecarServer, NginxServer]
) -> None:
    sidecar, _ = signed_edge
    key = "private/wrongkey.jpg"
    put_original(private_bucket, key, photo(640, 480))
    url = format_path(key, "120x", "png", SECRET)
    wrong = {**private_bucket.env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    with NginxServer(wrong, sidecar_url=sidecar.url) as nginx:
        assert raw_get(nginx.url, url)[0] == 200
        reached = sidecar_requests(sidecar)
        status, headers, _ = raw_get(nginx.url, url)
        assert status == 200
        assert headers.get("x-derivative") == "existing"
        assert sidecar_requests(sidecar) == reached + 1


def test_a_burst_of_identical_misses_reaches_the_sidecar_once(
    private_bucket: PrivateBucket, signed_edge: tuple[SidecarServer, NginxServer]
) -> None:
    sidecar, nginx = signed_edge
    key = "private/burst.jpg"
    put_original(private_bucket, key, photo(2000, 1500))
    url = format_path(key, "500x", "webp", SECRET)
    reached = sidecar_requests(sidecar)
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(lambda _: raw_get(nginx.url, url), range(12)))
    assert {status for status, _, _ in answers} == {200}
    assert len({body for _, _, body in answers}) == 1
    assert sidecar_requests(sidecar) == reached + 1


def test_sidecar_errors_reach_the_client_once_and_are_never_cached(
    signed_edge: tuple[SidecarServer, NginxServer],
) -> None:
    _, nginx = signed_edge
    status, headers, body = raw_get(nginx.url, format_path("private/none.jpg", "100x", "jpg", SECRET))
    assert status == 404
    assert headers["cache-control"] == "no-store"
    assert body.startswith(b"Not Found")
    assert raw_get(nginx.url, "/media/_r/a.jpg/100x-" + "0" * 32 + ".jpg")[0] == 403


def test_storage_errors_are_not_turned_into_resizes(
    private_bucket: PrivateBucket, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """S3 hanging answers 504 and S3 down answers 502, both no-store; neither is sent to the sidecar."""
    logs = tmp_path_factory.mktemp("outage")
    with Blackhole() as hung, ExitStack() as stack:
        env = {**private_bucket.env, "RESIZE_SIDECAR_S3_READ_TIMEOUT": "1"}
        sidecar = stack.enter_context(SidecarServer(env, logs))
        url = format_path("private/any.jpg", "100x", "jpg", SECRET)
        for endpoint, expected in ((hung.url, 504), ("http://127.0.0.1:9", 502)):
            edge = {**env, "RESIZE_SIDECAR_S3_ENDPOINT_URL": endpoint}
            with NginxServer(edge, sidecar_url=sidecar.url) as nginx:
                status, headers, _ = raw_get(nginx.url, url)
                assert status == expected
                assert headers["cache-control"] == "no-store"
        assert sidecar_requests(sidecar) == 0


def test_cached_hits_survive_an_s3_outage(
    private_bucket: PrivateBucket, signed_edge: tuple[SidecarServer, NginxServer]
) -> None:
    """Runs last in this module: it stops the S3 server."""
    sidecar, nginx = signed_edge
    key = "private/outage.jpg"
    put_original(private_bucket, key, photo(640, 480))
    url = format_path(key, "150x", "jpg", SECRET)
    status, _, body = raw_get(nginx.url, url)
    assert status == 200
    private_bucket.moto.stop()
    status, headers, cached = raw_get(nginx.url, url)
    assert (status, cached) == (200, body)
    assert headers["x-cache-status"] == "HIT"
    reached = sidecar_requests(sidecar)
    status, headers, _ = raw_get(nginx.url, format_path(key, "151x", "jpg", SECRET))
    assert status == 502
    assert headers["cache-control"] == "no-store"
    assert sidecar_requests(sidecar) == reached


def test_the_public_settings_still_render_anonymous_reads() -> None:
    from resize_sidecar.nginx import render_nginx

    settings = Settings(storage="s3", s3_bucket="b", s3_endpoint_url="http://127.0.0.1:9000").validate()
    text = render_nginx(settings, listen="8080", sidecar="http://127.0.0.1:8000")
    assert "js_import" not in text and "$s3_authorization" not in text
    assert "proxy_pass http://127.0.0.1:9000/b/_r/;" in text
    signed = render_nginx(settings, listen="8080", sidecar="http://127.0.0.1:8000", s3_auth="sigv4")
    assert "proxy_set_header Authorization $s3_authorization;" in signed
    assert "env AWS_SECRET_ACCESS_KEY;" in signed
