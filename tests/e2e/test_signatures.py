"""Invalid signatures are free, and the longest key the contract allows works end to end.

F5: a valid derivative URL mutated anywhere after the derived prefix (a byte replaced, inserted, dropped or
re-cased, a character percent-encoded or decoded, the signature of other parameters) is 400 or 403, and reaches
storage not once. Storage here is S3 behind ``FaultProxy``, so "not once" counts requests on the
wire, not calls of a Python method. ``test_..._10000_...`` is the full figure (``-m slow``, or
``python bench/reliability.py``); the same property runs on 500 examples in every test run.

FAULTS row 3: a key of exactly 1024 UTF-8 bytes (about 3 KB percent-encoded) goes through nginx and gunicorn.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from webob import Request

from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import MAX_KEY_BYTES, encode_key, format_path, sign
from resize_sidecar.web.app import SidecarApp, make_app
from tests.support.contract import refusal
from tests.support.faults import FaultProxy
from tests.support.images import photo
from tests.support.servers import SECRET, NginxServer, SidecarServer, raw_get, world_readable_dir

PREFIX = "/media/_r/"
KEYS = ["photos/cat.jpg", "albums/café déjà vu/été 2024.jpg", "odd/a+b %25 & c; ~d=e,f!.jpg", "x.png"]
SPECS = ["300x", "200x200-fill-sm-q70", "0x0", "x120-up", "64x64-pad-bgff00aa-blur5-sharp", "thumb"]
FORMATS = ["jpg", "webp", "png", "avif", "gif"]
#: Characters a mutation puts in: URL syntax, percent escapes, hex digits of both cases, non-ASCII, controls.
ALPHABET = st.sampled_from(list("/%.-_~+ ?#;&=0123456789abcdefABCDEFxX") + ["é", "\x00", "\t", "\\", "%2F", "%2e"])


@dataclass
class Counted:
    """The sidecar in-process over S3 behind the fault proxy; every request to S3 is counted there."""

    app: SidecarApp
    proxy: FaultProxy
    #: Every mutated URL asked for, and how many got each status.
    mutated: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    def get(self, path: str) -> int:
        return int(Request.blank("/", environ={"RAW_URI": path}).get_response(self.app).status_int)

    def get_mutated(self, path: str) -> int:
        status = self.get(path)
        self.mutated.append(path)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        return status


@pytest.fixture(scope="module")
def counted(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Counted]:
    bucket = f"sig-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    with FaultProxy(moto_endpoint) as proxy:
        app_settings = Settings(
            storage="s3",
            s3_bucket=bucket,
            s3_endpoint_url=proxy.url,
            secrets=(SECRET, "an-older-secret-still-accepted"),
            presets={"thumb": "120x120-fill"},
            lock_dir=str(tmp_path_factory.mktemp("sig-locks")),
        ).validate()
        yield Counted(make_app(app_settings), proxy)


@st.composite
def mutated_urls(draw: st.DrawFn) -> tuple[str, str]:
    """A correctly signed path and a different one made from it by one mutation after the derived prefix."""
    key, spec, fmt = draw(st.sampled_from(KEYS)), draw(st.sampled_from(SPECS)), draw(st.sampled_from(FORMATS))
    good = format_path(key, spec, fmt, SECRET)
    tail = good[len(PREFIX) :]
    at = draw(st.integers(0, len(tail) - 1))
    how = draw(st.sampled_from(["replace", "insert", "delete", "case", "encode", "decode", "other-signature"]))
    if how == "replace":
        tail = tail[:at] + draw(ALPHABET) + tail[at + 1 :]
    elif how == "insert":
        tail = tail[:at] + draw(ALPHABET) + tail[at:]
    elif how == "delete":
        tail = tail[:at] + tail[at + 1 :]
    elif how == "case":
        tail = tail[:at] + tail[at].swapcase() + tail[at + 1 :]
    elif how == "encode":  # the same character, spelled as an escape: the same key, not its canonical spelling
        tail = tail[:at] + f"%{ord(tail[at]):02X}" + tail[at + 1 :] if tail[at].isascii() else tail
    elif how == "decode":
        escapes = [m.start() for m in re.finditer("%[0-9A-F]{2}", tail)]
        if escapes:
            start = escapes[at % len(escapes)]
            tail = tail[:start] + chr(int(tail[start + 1 : start + 3], 16)) + tail[start + 3 :]
    else:  # a genuine signature, of other parameters
        other_key, other_spec = draw(st.sampled_from(KEYS)), draw(st.sampled_from(SPECS))
        signature = sign(other_key, other_spec, fmt, SECRET)
        tail = re.sub("-[0-9a-f]{32}\\.", f"-{signature}.", tail)
    mutated = PREFIX + tail
    if mutated == good:
        mutated = PREFIX + tail + "x"  # a mutation that changed nothing becomes one that changes the format
    return good, mutated


def check_mutation(counted: Counted, urls: tuple[str, str]) -> None:
    _, mutated = urls
    assert counted.get_mutated(mutated) == refusal(mutated)[0], mutated
    assert counted.proxy.count() == 0, f"{mutated} reached S3"


_HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


@settings(max_examples=500, deadline=None, suppress_health_check=_HEALTH)
@given(urls=mutated_urls())
def test_500_mutated_urls_are_400_or_403_without_a_single_s3_request(counted: Counted, urls: tuple[str, str]) -> None:
    check_mutation(counted, urls)


@pytest.fixture
def opted_in(request: pytest.FixtureRequest) -> None:
    """Slow figures run when asked for (``-m slow``), not in every test run, which selects no marker."""
    if "slow" not in (request.config.option.markexpr or "") or "not slow" in request.config.option.markexpr:
        pytest.skip("a slow figure: run with -m slow, or python bench/reliability.py")


@pytest.mark.slow
@pytest.mark.usefixtures("opted_in")
@settings(max_examples=10_000, deadline=None, suppress_health_check=_HEALTH)
@given(urls=mutated_urls())
def test_10000_mutated_urls_are_400_or_403_without_a_single_s3_request(counted: Counted, urls: tuple[str, str]) -> None:
    check_mutation(counted, urls)


def test_the_unmutated_urls_do_reach_s3(counted: Counted) -> None:
    """The property above is not vacuous: a correctly signed URL is read from S3 (404 here: no original)."""
    before = counted.proxy.count()
    assert counted.get(format_path(KEYS[0], "300x", "jpg", SECRET)) == 404
    assert counted.get(format_path(KEYS[1], "thumb", "webp", "an-older-secret-still-accepted")) == 404
    assert counted.proxy.count() > before


@pytest.fixture(scope="module", autouse=True)
def record_figures(counted: Counted) -> Iterator[None]:
    """After the module, write the F5 figures where ``RELIABILITY_RESULTS_DIR`` says (nothing without it).

    The time per answer is measured by asking for every mutated URL once more in a row, away from hypothesis'
    own work between examples: wall time, and the CPU time of this thread, which a busy machine does not inflate.
    """
    yield
    folder = os.environ.get("RELIABILITY_RESULTS_DIR")
    if not folder or len(counted.mutated) < 2:
        return
    before = counted.proxy.count()
    milliseconds, cpu_milliseconds = [], []
    for path in counted.mutated:
        started, cpu_started = time.perf_counter(), time.thread_time()
        counted.get(path)
        milliseconds.append(1000 * (time.perf_counter() - started))
        cpu_milliseconds.append(1000 * (time.thread_time() - cpu_started))
    figures = {
        "mutated_urls": len(milliseconds),
        "statuses": {str(k): v for k, v in sorted(counted.statuses.items())},
        "s3_requests_of_the_replay": counted.proxy.count() - before,
        "p50_ms": round(statistics.median(milliseconds), 3),
        "p99_ms": round(percentile99(milliseconds), 3),
        "max_ms": round(max(milliseconds), 3),
        "cpu_p50_ms": round(statistics.median(cpu_milliseconds), 3),
        "cpu_p99_ms": round(percentile99(cpu_milliseconds), 3),
        "load_average": round(os.getloadavg()[0], 2),
    }
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / "signatures.json").write_text(json.dumps(figures, indent=1) + "\n")


def percentile99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


# FAULTS row 3: the longest key, end to end --------------------------------------------------------------------------


def key_of_bytes(size: int) -> str:
    """A key of exactly ``size`` UTF-8 bytes, mostly two-byte characters, no segment over a file name's 255 bytes."""
    folders = "/".join(["é" * 100] * 4) + "/"
    rest = size - len(folders.encode()) - len(".jpg")
    key = folders + "é" * (rest // 2) + "z" * (rest % 2) + ".jpg"
    assert len(key.encode()) == size
    return key


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SidecarServer, NginxServer, Path]]:
    root = world_readable_dir("resize-sidecar-longkeys-")
    env = {
        "RESIZE_SIDECAR_SECRETS": SECRET,
        "RESIZE_SIDECAR_STORAGE": "local",
        "RESIZE_SIDECAR_LOCAL_ROOT": str(root),
        "RESIZE_SIDECAR_LOCK_DIR": str(tmp_path_factory.mktemp("longkey-locks")),
    }
    sidecar = SidecarServer(env, tmp_path_factory.mktemp("longkeys"), workers=1)
    with sidecar:
        nginx = NginxServer(env, sidecar_url=sidecar.url)
        with nginx:
            yield sidecar, nginx, root


def derivative_requests(sidecar: SidecarServer) -> float:
    body = raw_get(sidecar.url, "/metrics")[2].decode()
    pattern = r'^resize_sidecar_requests_total\{route="derivative",status="\d+"\} (\S+)$'
    return sum(float(value) for value in re.findall(pattern, body, re.MULTILINE))


@pytest.mark.e2e
def test_a_key_of_exactly_1024_bytes_is_made_stored_and_then_served_by_nginx(
    edge: tuple[SidecarServer, NginxServer, Path],
) -> None:
    sidecar, nginx, root = edge
    key = key_of_bytes(MAX_KEY_BYTES)
    (root / key).parent.mkdir(parents=True, exist_ok=True)
    (root / key).write_bytes(photo(640, 480))
    url = format_path(key, "200x", "webp", SECRET)
    assert len(url) > 3000  # the request line nginx and gunicorn must both accept
    status, headers, body = raw_get(nginx.url, url)
    assert status == 200, body[:200]
    assert headers["content-type"] == "image/webp"
    reached = derivative_requests(sidecar)
    again: Any = raw_get(nginx.url, url)
    assert (again[0], again[2]) == (200, body)
    assert derivative_requests(sidecar) == reached, "the stored derivative of a long key was not served by nginx"


@pytest.mark.e2e
def test_a_key_one_byte_over_1024_is_400_through_nginx(edge: tuple[SidecarServer, NginxServer, Path]) -> None:
    _, nginx, _ = edge
    key = key_of_bytes(MAX_KEY_BYTES + 1)
    path = f"{PREFIX}{encode_key(key)}/200x-{sign(key, '200x', 'webp', SECRET)}.webp"
    assert raw_get(nginx.url, path)[0] == 400
