"""nginx at the edge: a private bucket read with SigV4 signatures, the hit cache, and honest errors.

moto runs in its own process here with authentication enforced, so a request nginx signs wrongly is refused
exactly as S3 would refuse it. S3's rarer answers (an expired token, a wrong region, redirects) come from
:class:`StandInS3`, a server of this module that answers fixed shapes, behind the same rendered configuration.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import format_path
from tests.support.faults import Fault, FaultProxy
from tests.support.images import photo
from tests.support.servers import SECRET, Blackhole, MotoServer, NginxServer, SidecarServer, raw_get, sidecar_requests

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


def private_client(bucket: PrivateBucket) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=bucket.moto.url,
        region_name="us-east-1",
        aws_access_key_id=bucket.env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=bucket.env["AWS_SECRET_ACCESS_KEY"],
    )


def put_original(bucket: PrivateBucket, key: str, body: bytes) -> None:
    private_client(bucket).put_object(Bucket=bucket.bucket, Key=key, Body=body, ContentType="image/jpeg")


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
    assert (headers["x-cache-status"], headers["x-derivative"]) == ("MISS", "created")
    assert headers["x-request-id"]
    reached = sidecar_requests(sidecar)
    # The nginx cache would hide a failing S3 read: ask for the object twice more, once past the cache.
    again = raw_get(nginx.url, url)
    assert (again[0], again[2], again[1]["x-cache-status"]) == (200, body, "HIT")
    assert again[1]["x-content-type-options"] == "nosniff"
    # The miss's answer was kept: its account of that request is not repeated on a hit, nor is nosniff said twice.
    assert "x-derivative" not in again[1] and "x-request-id" not in again[1]
    assert header_values(nginx.url, url, "X-Content-Type-Options") == ["nosniff"]
    assert sidecar_requests(sidecar) == reached


def header_values(base_url: str, path: str, name: str) -> list[str]:
    """Every value of the header ``name`` in the answer to a GET of ``path``, repeats kept."""
    host, port = base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return [value for key, value in response.getheaders() if key.lower() == name.lower()]
    finally:
        connection.close()


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
            assert headers["x-content-type-options"] == "nosniff"
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


@contextmanager
def short_lived_cache(
    bucket: PrivateBucket, sidecar: SidecarServer, key: str, valid: str, **more: str
) -> Iterator[NginxServer]:
    """A new original at ``key``, and an nginx whose cached hits are valid for ``valid`` (``more``: its other
    settings)."""
    put_original(bucket, key, photo(640, 480))
    env = {**bucket.env, "RESIZE_SIDECAR_NGINX_CACHE_SIZE": "16m", "RESIZE_SIDECAR_NGINX_CACHE_VALID": valid, **more}
    with NginxServer(env, sidecar_url=sidecar.url) as nginx:
        yield nginx


def expire(nginx: NginxServer, url: str) -> None:
    """Wait out a 1 s entry: nginx counts validity in whole seconds, so it expires 1 to 2 s after it was stored."""
    assert raw_get(nginx.url, url)[1]["x-cache-status"] in ("MISS", "HIT")
    time.sleep(2.2)


def test_a_cached_hit_deleted_from_s3_is_served_no_longer_than_the_cache_validity(
    private_bucket: PrivateBucket, signed_edge: tuple[SidecarServer, NginxServer]
) -> None:
    """Open-source nginx cannot purge: after NGINX_CACHE_VALID it asks S3 again, which no longer has the object."""
    key = "private/deleted.jpg"
    url = format_path(key, "160x", "jpg", SECRET)
    with short_lived_cache(private_bucket, signed_edge[0], key, "2s") as nginx:
        assert raw_get(nginx.url, url)[0] == 200
        status, headers, _ = raw_get(nginx.url, url)
        assert (status, headers["x-cache-status"]) == (200, "HIT")
        s3 = private_client(private_bucket)
        for stored in s3.list_objects_v2(Bucket=private_bucket.bucket, Prefix=f"_r/{key}/")["Contents"]:
            s3.delete_object(Bucket=private_bucket.bucket, Key=stored["Key"])
        s3.delete_object(Bucket=private_bucket.bucket, Key=key)
        assert raw_get(nginx.url, url)[1]["x-cache-status"] == "HIT"  # within the validity: the documented bound
        # nginx counts validity in whole seconds: a 2 s entry expires 2 to 3 s after it was stored.
        deadline = time.monotonic() + 10
        while (answer := raw_get(nginx.url, url))[0] == 200 and time.monotonic() < deadline:
            time.sleep(0.25)
        status, headers, body = answer
        assert (status, headers["cache-control"]) == (404, "no-store")
        assert body == b"Not Found: no original at 'private/deleted.jpg'\n"
        assert raw_get(nginx.url, url)[0] == 404  # and nothing of it was cached again


def test_an_expired_hit_is_answered_from_the_cache_and_checked_with_s3_behind_it_by_a_conditional_get(
    private_bucket: PrivateBucket, signed_edge: tuple[SidecarServer, NginxServer]
) -> None:
    """The bound's cost: once the entry holds S3's own ETag, the check is a signed 304, not the whole object, and
    the visitor who found the entry expired got it from the cache."""
    key = "private/unchanged.jpg"
    url = format_path(key, "170x", "jpg", SECRET)
    stored = f"/{private_bucket.bucket}/_r/{key}/170x.jpg"
    with (
        FaultProxy(private_bucket.moto.url) as s3,
        short_lived_cache(private_bucket, signed_edge[0], key, "1s", RESIZE_SIDECAR_S3_ENDPOINT_URL=s3.url) as nginx,
    ):
        status, _, body = raw_get(nginx.url, url)
        assert (status, s3.statuses("GET", stored)) == (200, [404])  # made by the sidecar, cached on its way out
        expire(nginx, url)

        status, headers, again = raw_get(nginx.url, url)
        assert (status, headers["x-cache-status"], again) == (200, "STALE", body)
        deadline = time.monotonic() + 10
        while len(s3.statuses("GET", stored)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert s3.statuses("GET", stored) == [404, 304]
        status, headers, again = raw_get(nginx.url, url)
        assert (status, headers["x-cache-status"], again) == (200, "HIT", body)


def test_no_visitor_waits_on_s3_for_the_check_of_an_expired_hit(
    private_bucket: PrivateBucket, signed_edge: tuple[SidecarServer, NginxServer]
) -> None:
    """S3 holds the check without answering, for longer than this client waits (30 s; nginx would wait 60 s):
    the visitor is answered from the cache all the same."""
    key = "private/held.jpg"
    url = format_path(key, "180x", "jpg", SECRET)
    stored = f"/{private_bucket.bucket}/_r/{key}/180x.jpg"
    more = {"RESIZE_SIDECAR_S3_READ_TIMEOUT": "60"}
    with (
        FaultProxy(private_bucket.moto.url) as s3,
        short_lived_cache(private_bucket, signed_edge[0], key, "1s", RESIZE_SIDECAR_S3_ENDPOINT_URL=s3.url, **more)
        as nginx,
    ):
        status, _, body = raw_get(nginx.url, url)
        assert status == 200
        expire(nginx, url)
        s3.fault = Fault.blackhole(methods={"GET"}, path=f"^{re.escape(stored)}$")

        status, headers, again = raw_get(nginx.url, url)

        assert (status, headers["x-cache-status"], again) == (200, "STALE", body)
        assert s3.requests[-1] == ("GET", stored)  # the check was asked, and is still held
        assert s3.statuses("GET", stored) == [404]


class StandInS3:
    """An S3 endpoint answering fixed shapes: a key whose first segment under the derived prefix (or the bucket)
    names a shape gets it; any other key is 404 NoSuchKey. It records the requests it gets."""

    SHAPES: dict[str, tuple[int, dict[str, str], bytes]] = {
        "expired": (
            400,
            {"Content-Type": "application/xml"},
            b"<Error><Code>ExpiredToken</Code><Message>The provided token has expired.</Message></Error>",
        ),
        "wrong-region": (
            400,
            {"Content-Type": "application/xml"},
            b"<Error><Code>AuthorizationHeaderMalformed</Code><Message>the region 'us-east-1' is wrong; expecting "
            b"'eu-west-1'</Message><Region>eu-west-1</Region></Error>",
        ),
        "moved": (
            301,
            {"Content-Type": "application/xml", "x-amz-bucket-region": "eu-west-1"},
            b"<Error><Code>PermanentRedirect</Code><Endpoint>media.s3.eu-west-1.amazonaws.com</Endpoint></Error>",
        ),
        "temporary": (
            307,
            {"Content-Type": "application/xml", "Location": "https://media.s3.eu-west-1.amazonaws.com/x.jpg"},
            b"<Error><Code>TemporaryRedirect</Code><Message>Please re-send this request</Message></Error>",
        ),
        "page": (200, {"Content-Type": "text/html"}, b"<script>alert(document.cookie)</script>"),
        "picture": (200, {"Content-Type": "image/jpeg"}, photo(8, 8)),
    }
    MISSING = (404, {"Content-Type": "application/xml"}, b"<Error><Code>NoSuchKey</Code></Error>")

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
                stand_in.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                segments = self.path.split("/")  # "", bucket, [_r,] name, ...
                name = segments[3] if len(segments) > 3 and segments[2] == "_r" else segments[2]
                status, headers, body = stand_in.SHAPES.get(name, stand_in.MISSING)
                self.send_response(status)
                for header, value in {**headers, "x-amz-request-id": "STANDIN"}.items():
                    self.send_header(header, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_HEAD = do_GET  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class StandInEdge:
    s3: StandInS3
    sidecar: SidecarServer
    nginx: dict[str, NginxServer]  # by NGINX_S3_AUTH


@pytest.fixture(scope="module")
def stand_in_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandInEdge]:
    s3 = StandInS3()
    env = {
        "RESIZE_SIDECAR_SECRETS": SECRET,
        "RESIZE_SIDECAR_STORAGE": "s3",
        "RESIZE_SIDECAR_S3_BUCKET": "media",
        "RESIZE_SIDECAR_S3_ENDPOINT_URL": s3.url,
        "RESIZE_SIDECAR_SERVE_ORIGINALS": "true",
        "AWS_ACCESS_KEY_ID": "AKIDSTANDIN",
        "AWS_SECRET_ACCESS_KEY": "stand-in-secret",
    }
    try:
        with ExitStack() as stack:
            sidecar = stack.enter_context(SidecarServer(env, tmp_path_factory.mktemp("stand-in")))
            nginx = {
                auth: stack.enter_context(
                    NginxServer({**env, "RESIZE_SIDECAR_NGINX_S3_AUTH": auth}, sidecar_url=sidecar.url)
                )
                for auth in ("none", "sigv4")
            }
            yield StandInEdge(s3, sidecar, nginx)
    finally:
        s3.close()


@pytest.mark.parametrize("auth", ["none", "sigv4"])
@pytest.mark.parametrize("shape", ["expired", "wrong-region", "moved", "temporary"])
@pytest.mark.parametrize("what", ["derivative", "original"])
def test_s3_answers_other_than_missing_or_a_server_error_are_502_no_store_without_s3s_body_or_location(
    stand_in_edge: StandInEdge, auth: str, shape: str, what: str
) -> None:
    path = format_path(f"{shape}/a.jpg", "100x", "jpg", SECRET) if what == "derivative" else f"/media/{shape}/a.jpg"
    reached = sidecar_requests(stand_in_edge.sidecar)
    asked = len(stand_in_edge.s3.requests)

    status, headers, body = raw_get(stand_in_edge.nginx[auth].url, path)

    assert (status, body) == (502, b"storage unavailable\n")
    assert headers["cache-control"] == "no-store"
    assert headers["x-content-type-options"] == "nosniff"
    assert "location" not in headers and "x-amz-bucket-region" not in headers and "x-amz-request-id" not in headers
    assert sidecar_requests(stand_in_edge.sidecar) == reached  # not turned into a resize
    assert len(stand_in_edge.s3.requests) == asked + 1
    sent = stand_in_edge.s3.requests[-1][1]
    assert sent.get("authorization", "").startswith("AWS4-HMAC-SHA256 ") == (auth == "sigv4")


@pytest.mark.parametrize("auth", ["none", "sigv4"])
def test_originals_from_s3_are_served_only_with_an_image_type_and_nosniff(
    stand_in_edge: StandInEdge, auth: str
) -> None:
    nginx = stand_in_edge.nginx[auth]
    status, headers, body = raw_get(nginx.url, "/media/page/profile.html")
    assert (status, headers["content-type"], headers["x-content-type-options"]) == (
        200,
        "application/octet-stream",
        "nosniff",
    )
    assert body == StandInS3.SHAPES["page"][2]
    status, headers, body = raw_get(nginx.url, "/media/picture/cat.jpg")
    assert (status, headers["content-type"], headers["x-content-type-options"]) == (200, "image/jpeg", "nosniff")
    status, headers, body = raw_get(nginx.url, "/media/none/missing.jpg")
    assert (status, headers["cache-control"], body) == (404, "no-store", b"Not Found\n")
    assert headers["x-content-type-options"] == "nosniff"
    asked = len(stand_in_edge.s3.requests)
    status, headers, _ = raw_get(nginx.url, "/media/.resize-sidecar/upload/manifest.json")
    assert (status, headers["x-content-type-options"]) == (404, "nosniff")
    assert len(stand_in_edge.s3.requests) == asked  # never asked for


@pytest.mark.parametrize("auth", ["none", "sigv4"])
def test_s3_never_sees_a_clients_range_or_preconditions_so_it_cannot_answer_206_412_or_416(
    stand_in_edge: StandInEdge, auth: str
) -> None:
    """nginx answers ranges itself from S3's whole answer: S3's own 206, 412 and 416 are never passed through."""
    nginx = stand_in_edge.nginx[auth]
    whole = StandInS3.SHAPES["picture"][2]
    asked = {"Range": "bytes=0-9", "If-Range": '"x"', "If-Match": '"x"', "If-Unmodified-Since": "Mon, 01 Jan 2001"}
    raw_get(nginx.url, "/media/picture/cat.jpg", headers=asked)
    sent = stand_in_edge.s3.requests[-1][1]
    assert not {"range", "if-range", "if-match", "if-unmodified-since"} & set(sent)
    status, headers, body = raw_get(nginx.url, "/media/picture/cat.jpg", headers={"Range": "bytes=0-9"})
    assert (status, body, headers["content-range"]) == (206, whole[:10], f"bytes 0-9/{len(whole)}")
    status, headers, body = raw_get(nginx.url, "/media/picture/cat.jpg", headers={"Range": "bytes=99999-"})
    assert (status, headers["content-range"]) == (416, f"bytes */{len(whole)}")
    assert b"<Error>" not in body


def test_a_missing_derivative_still_falls_back_to_the_sidecar_behind_the_stand_in(stand_in_edge: StandInEdge) -> None:
    reached = sidecar_requests(stand_in_edge.sidecar)
    status, headers, _ = raw_get(stand_in_edge.nginx["sigv4"].url, format_path("none/a.jpg", "100x", "jpg", SECRET))
    assert (status, headers["cache-control"]) == (404, "no-store")  # the sidecar: no such original
    assert sidecar_requests(stand_in_edge.sidecar) == reached + 1


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
    from resize_sidecar.ops.nginx import render_nginx

    settings = Settings(storage="s3", s3_bucket="b", s3_endpoint_url="http://127.0.0.1:9000", secrets=("s",))
    text = render_nginx(settings.validate(), listen="8080", sidecar="http://127.0.0.1:8000")
    assert "s3-sigv4.js" not in text and "$s3_authorization" not in text
    assert 'rewrite ^ "/b/$resize_derivative" break;\n' in text and "proxy_pass http://127.0.0.1:9000;" in text
    signed = render_nginx(settings, listen="8080", sidecar="http://127.0.0.1:8000", s3_auth="sigv4")
    assert "proxy_set_header Authorization $s3_authorization;" in signed
    assert "env AWS_SECRET_ACCESS_KEY;" in signed
