"""Originals whose decode costs far more than their bytes: refused from their headers on every route that decodes,
and every decode held to the machine's transform slots (real gunicorn, moto's S3 server over HTTP).

The hostile files are made here: a progressive JPEG with thousands of tiny valid scans, an AVIF of one colour that
declares 7000x7000, a lossless WebP over its limit.
"""

from __future__ import annotations

import io
import struct
import uuid
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import pyvips
import requests

from resize_sidecar.core.errors import SourceTooLargeError
from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import encode_key, format_path, parse_path
from resize_sidecar.media import imaging
from resize_sidecar.media.locks import NodeLocks
from resize_sidecar.media.storage import Storage
from resize_sidecar.media.stores import open_storage
from resize_sidecar.ops.regenerate import regenerate
from resize_sidecar.ops.runs import FAILED
from resize_sidecar.ops.upload import upload
from tests.support.faults import (
    Workers,
    dc_scan_flood_jpeg,
    flat_avif,
    lossless_webp,
    peak_rss_kib,
    progressive_jpeg,
    reset_peak_rss,
    rss_kib,
    scan_flood_jpeg,
)
from tests.support.images import photo
from tests.support.servers import SECRET, SidecarServer

pytestmark = pytest.mark.e2e

API_SECRET = "hostile-api-secret-0123456789"
AUTH = {"Authorization": f"Bearer {API_SECRET}"}
#: Lower than the default, so that a lossless WebP over it is a few kilobytes and quick to make.
LOSSLESS_WEBP_LIMIT = 16_000_000
#: A header refusal reads the header only: a worker's peak RSS moves by far less than any decode of these would take.
REFUSAL_RSS_KIB = 64 * 1024
#: A 16 MP AVIF, at MAX_HEIF_PIXELS, measured at about 250 MB per decode (15.6 MB a megapixel): the bound stated.
HEIF_AT_LIMIT_RSS_KIB = 320 * 1024

SCAN_FLOOD = (
    "a JPEG of 3000x3000 pixels has more than 111 scans, each a pass over its pixels: over the limit of 1000000000 "
    "pixels decoded (MAX_JPEG_SCAN_PIXELS)"
)
AVIF_FLOOD = (
    "a HEIF or AVIF of 7000x7000 pixels is decoded whole, and is over the limit of 16000000 pixels (MAX_HEIF_PIXELS)"
)
WEBP_FLOOD = (
    "a lossless WebP of 5000x4000 pixels is decoded whole, and is over the limit of 16000000 pixels "
    "(MAX_LOSSLESS_WEBP_PIXELS)"
)


@dataclass(frozen=True)
class Hostile:
    key: str
    data: bytes
    detail: str


@pytest.fixture(scope="module")
def hostiles() -> list[Hostile]:
    return [
        Hostile("hostile/scans.jpg", scan_flood_jpeg(3000, 3000, 10_000), SCAN_FLOOD),
        Hostile("hostile/declared.avif", flat_avif(7000, 7000), AVIF_FLOOD),
        Hostile("hostile/lossless.webp", lossless_webp(5000, 4000), WEBP_FLOOD),
    ]


@dataclass
class Node:
    server: SidecarServer
    storage: Storage
    settings: Settings
    lock_dir: str
    workers: Workers

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.server.url + path, timeout=60, **kwargs)

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {**AUTH, **kwargs.pop("headers", {})}
        return requests.request(method, f"{self.server.url}/api/{path}", headers=headers, timeout=60, **kwargs)

    def hold_slot(self) -> Any:
        """The machine's only transform slot, held from this process (the slots are flock files in LOCK_DIR)."""
        return NodeLocks(self.lock_dir, 1).transform_slot(0.0)

    def hostile_derivatives(self) -> list[str]:
        return [item.key for item in self.storage.list("_r/hostile/")]


@pytest.fixture(scope="module")
def node(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    import boto3

    bucket = f"hostile-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    lock_dir = tmp_path_factory.mktemp("hostile-locks")
    lock_dir.chmod(0o700)
    env = {
        "RESIZE_SIDECAR_SECRETS": SECRET,
        "RESIZE_SIDECAR_STORAGE": "s3",
        "RESIZE_SIDECAR_S3_BUCKET": bucket,
        "RESIZE_SIDECAR_S3_ENDPOINT_URL": moto_endpoint,
        "RESIZE_SIDECAR_API_SECRET": API_SECRET,
        "RESIZE_SIDECAR_PRESETS": "thumb=120x120-fill",
        "RESIZE_SIDECAR_LOCK_DIR": str(lock_dir),
        "RESIZE_SIDECAR_MAX_CONCURRENT_TRANSFORMS": "1",
        "RESIZE_SIDECAR_OVERLOAD_WAIT": "0.3",
        "RESIZE_SIDECAR_MAX_LOSSLESS_WEBP_PIXELS": str(LOSSLESS_WEBP_LIMIT),
    }
    settings = Settings(
        storage="s3",
        s3_bucket=bucket,
        s3_endpoint_url=moto_endpoint,
        secrets=(SECRET,),
        lock_dir=str(lock_dir),
        max_concurrent_transforms=1,
        overload_wait=0.3,
        transform_timeout=1.0,
        max_lossless_webp_pixels=LOSSLESS_WEBP_LIMIT,
    ).validate()
    server = SidecarServer(env, tmp_path_factory.mktemp("hostile-logs"), workers=2)
    with server:
        assert server.process is not None
        yield Node(server, open_storage(settings), settings, str(lock_dir), Workers.of(server.process.pid, 2))


@pytest.fixture
def stored(node: Node, hostiles: list[Hostile]) -> Iterator[list[Hostile]]:
    for hostile in hostiles:
        node.storage.put(hostile.key, hostile.data, "application/octet-stream", "no-cache")
    yield hostiles
    for hostile in hostiles:
        node.storage.delete(hostile.key)


def assert_serves_legitimate(node: Node) -> None:
    """The workers are the ones that started, and a legitimate miss is made and answered."""
    key = f"legit/{uuid.uuid4().hex}.jpg"
    node.storage.put(key, photo(640, 480), "image/jpeg", "no-cache")
    response = node.get(format_path(key, "200x", "jpg", SECRET))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/jpeg"
    assert node.workers.unchanged()


def limited(setting: str, value: int) -> Settings:
    changes: dict[str, Any] = {setting: value}
    return replace(Settings(), **changes)


# From the header ------------------------------------------------------------------------------------------------------


def test_the_scan_count_is_what_libjpeg_reads() -> None:
    plain = progressive_jpeg(64, 64)
    assert imaging.jpeg_scans(plain) == 6
    flood = scan_flood_jpeg(64, 64, 500)
    assert imaging.jpeg_scans(flood) == 506
    # Fill bytes (0xFF) may precede any marker.
    assert imaging.jpeg_scans(flood.replace(b"\xff\xda", b"\xff\xff\xff\xda")) == 506
    # Counting stops once past what the limit allows: the header check of a flood stays cheap.
    assert imaging.jpeg_scans(flood, most=10) == 11
    # DC scans of three components, a symbol per block: libjpeg decodes them without a warning.
    dc_flood = dc_scan_flood_jpeg(64, 64, 40)
    assert imaging.jpeg_scans(dc_flood) == 50
    assert pyvips.Image.new_from_buffer(dc_flood, "", fail_on="error").avg() >= 0


def test_a_sequential_picture_whose_first_scan_holds_every_component_is_one_scan_whatever_follows() -> None:
    plain = photo(64, 48)  # baseline, its three components in one scan
    sos, end = plain.index(b"\xff\xda"), plain.rindex(b"\xff\xd9")
    repeated = plain[:end] + plain[sos:end] * 300 + b"\xff\xd9"
    assert imaging.jpeg_scans(repeated) == 1
    # libjpeg agrees: it reads the first scan, expects the end of the image and stops.
    decoded = [pyvips.Image.new_from_buffer(data, "", fail_on="error") for data in (plain, repeated)]
    assert (decoded[0] - decoded[1]).abs().max() == 0


def sequential_scans(components: int, scans: list[int]) -> bytes:
    """SOI, a baseline frame of ``components`` and a scan of each of ``scans`` components (a byte of data each),
    EOI: only the segments the scan count reads."""
    frame = struct.pack(">BHHB", 8, 16, 16, components) + b"".join(bytes([i + 1, 0x11, 0]) for i in range(components))
    body = b"\xff\xc0" + struct.pack(">H", 2 + len(frame)) + frame
    for count in scans:
        scan = bytes([count]) + b"".join(bytes([i + 1, 0]) for i in range(count)) + b"\x00\x3f\x00"
        body += b"\xff\xda" + struct.pack(">H", 2 + len(scan)) + scan + b"\x12"
    return b"\xff\xd8" + body + b"\xff\xd9"


def test_a_sequential_picture_coded_a_component_per_scan_has_every_scan_counted() -> None:
    assert imaging.jpeg_scans(sequential_scans(3, [1, 1, 1])) == 3
    assert imaging.jpeg_scans(sequential_scans(3, [2, 1] + [1] * 100)) == 102
    assert imaging.jpeg_scans(sequential_scans(1, [1] * 100)) == 1


def test_only_the_first_frame_header_says_whether_a_picture_is_sequential() -> None:
    flood = scan_flood_jpeg(64, 64, 100)
    sof = flood.index(b"\xff\xc2")
    length = struct.unpack_from(">H", flood, sof + 2)[0]
    # A baseline frame header after the progressive one: libjpeg stops at it, and it makes no scan count as one.
    second = b"\xff\xc0" + flood[sof + 2 : sof + 2 + length]
    assert imaging.jpeg_scans(flood[: sof + 2 + length] + second + flood[sof + 2 + length :]) == 106


def test_scans_of_an_embedded_thumbnail_or_of_a_picture_after_the_end_are_not_counted() -> None:
    plain = progressive_jpeg(64, 64)
    thumbnail = scan_flood_jpeg(16, 16, 50)
    # An APP1 segment holding a whole JPEG, as an EXIF thumbnail is held, and a second picture after the end marker
    # (a gain map, a multi-picture file).
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + len(thumbnail)) + thumbnail
    assert imaging.jpeg_scans(plain[:2] + app1 + plain[2:] + thumbnail) == 6


def test_after_bytes_out_of_place_every_scan_marker_left_is_counted() -> None:
    flood = scan_flood_jpeg(64, 64, 300)
    sof = flood.index(b"\xff\xc2")
    # Garbage where a marker should be: libjpeg skips it with a warning and reads on; so does the count.
    broken = flood[:sof] + b"\x00\x01garbage" + flood[sof:]
    assert imaging.jpeg_scans(broken) == flood.count(b"\xff\xda") == 306


def test_a_flood_at_the_scan_limit_passes_and_one_scan_more_is_refused() -> None:
    # A small picture's scan counts as 65,536 pixels: this limit allows 100 scans of it.
    settings = Settings(max_jpeg_scan_pixels=65_536 * 100)
    assert imaging.probe(scan_flood_jpeg(64, 64, 94), settings.image_limits).scans == 100
    with pytest.raises(SourceTooLargeError) as refused:
        imaging.probe(scan_flood_jpeg(64, 64, 95), settings.image_limits)
    assert refused.value.detail == (
        "a JPEG of 64x64 pixels has more than 100 scans, each a pass over its pixels: over the limit of 6553600 "
        "pixels decoded (MAX_JPEG_SCAN_PIXELS)"
    )


def test_a_legitimate_progressive_photo_is_far_inside_the_scan_budget() -> None:
    info = imaging.probe(photo(3000, 3000, "jpg"), Settings().image_limits)
    assert info.scans == 1
    data = bytes(pyvips.Image.new_from_buffer(photo(3000, 3000), "").jpegsave_buffer(interlace=True))
    progressive = imaging.probe(data, Settings().image_limits)
    assert progressive.interlaced and progressive.scans == 10


@pytest.mark.parametrize(
    ("fmt", "setting"), [("avif", "max_heif_pixels"), ("webp", "max_lossless_webp_pixels")], ids=["avif", "webp"]
)
def test_a_whole_decoded_format_within_its_limit_passes_and_one_pixel_over_is_refused(fmt: str, setting: str) -> None:
    data = flat_avif(400, 300) if fmt == "avif" else lossless_webp(400, 300)
    assert imaging.probe(data, limited(setting, 120_000).image_limits).width == 400
    with pytest.raises(SourceTooLargeError) as refused:
        imaging.probe(data, limited(setting, 119_999).image_limits)
    assert refused.value.status == 422
    assert f"({setting.upper()})" in refused.value.detail


def test_a_lossy_webp_of_the_same_size_is_not_held_to_the_lossless_limit() -> None:
    lossy = bytes(pyvips.Image.black(400, 300, bands=3).cast("uchar").webpsave_buffer(Q=80))
    info = imaging.probe(lossy, Settings(max_lossless_webp_pixels=1000).image_limits)
    assert (info.width, info.lossless) == (400, False)


# Every route that decodes ---------------------------------------------------------------------------------------------


def test_a_miss_on_each_hostile_original_is_a_422_naming_its_setting_with_nothing_stored(
    node: Node, stored: list[Hostile]
) -> None:
    pids = node.workers.pids
    baseline = {pid: rss_kib(pid) for pid in pids}
    if not all(reset_peak_rss(pid) for pid in pids):
        pytest.skip("this kernel does not let the peak RSS of a process be reset")
    paths = [format_path(hostile.key, "400x", "jpg", SECRET) for hostile in stored for _ in range(4)]

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(node.get, paths))

    for hostile, answer in zip([hostile for hostile in stored for _ in range(4)], answers, strict=True):
        assert answer.status_code == 422
        assert answer.text == f"Unprocessable Entity: {hostile.detail}\n"
        assert answer.headers["Cache-Control"] == "no-store"
    assert node.hostile_derivatives() == []
    for pid in pids:
        assert peak_rss_kib(pid) - baseline[pid] < REFUSAL_RSS_KIB
    assert_serves_legitimate(node)


def test_meta_refuses_each_hostile_original_from_its_header(node: Node, stored: list[Hostile]) -> None:
    for hostile in stored:
        answer = node.api("GET", f"images/{encode_key(hostile.key)}/meta")
        assert answer.status_code == 422
        assert answer.json() == {"error": "Unprocessable Entity", "detail": hostile.detail}
    assert_serves_legitimate(node)


def test_an_upload_of_each_hostile_original_is_a_413_naming_its_setting_and_stores_nothing(
    node: Node, hostiles: list[Hostile]
) -> None:
    before = [item.key for item in node.storage.list()]
    for hostile in hostiles:
        answer = node.api("POST", "images", data=hostile.data, headers={"Content-Type": "application/octet-stream"})
        assert answer.status_code == 413
        assert answer.json() == {"error": "Payload Too Large", "detail": hostile.detail}
    assert [item.key for item in node.storage.list()] == before
    assert_serves_legitimate(node)


def test_an_archive_of_derivatives_names_each_hostile_original_as_refused(node: Node, stored: list[Hostile]) -> None:
    keys = ",".join(hostile.key for hostile in stored)
    answer = node.api("GET", "archive", params={"keys": keys, "spec": "200x", "fmt": "jpg"})
    assert answer.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(answer.content))
    assert archive.namelist() == ["ERRORS.txt"]
    assert archive.read("ERRORS.txt").decode() == "".join(
        f"{hostile.key}.200x.jpg: Unprocessable Entity: {hostile.detail}\n" for hostile in stored
    )
    assert node.hostile_derivatives() == []


def test_the_cli_upload_refuses_each_hostile_original_and_stores_nothing(
    node: Node, hostiles: list[Hostile], tmp_path: Path
) -> None:
    for hostile in hostiles:
        (tmp_path / hostile.key.rpartition("/")[2]).write_bytes(hostile.data)
    report = upload(node.settings, node.storage, tmp_path, dest="cli-hostile/")
    assert sorted((outcome.item, outcome.status, outcome.detail) for outcome in report.outcomes) == sorted(
        (hostile.key.rpartition("/")[2], FAILED, hostile.detail) for hostile in hostiles
    )
    assert [item.key for item in node.storage.list("cli-hostile/") if not item.key.endswith(".json")] == []


def test_regenerate_reports_each_hostile_original_as_failed_and_keeps_its_old_derivative(
    node: Node, stored: list[Hostile]
) -> None:
    # Derivatives made before the limits were set (or lowered): regenerate decodes their originals again.
    old = photo(40, 30)
    keys = []
    for hostile in stored:
        path = parse_path(format_path(hostile.key, "200x", "jpg", SECRET))
        keys.append(path.storage_key("_r/"))
        node.storage.put(keys[-1], old, "image/jpeg", "no-cache")
    try:
        report = regenerate(node.settings, node.storage, prefix="hostile/")
        assert sorted((outcome.item, outcome.status, outcome.detail) for outcome in report.outcomes) == sorted(
            (key, FAILED, hostile.detail) for key, hostile in zip(keys, stored, strict=True)
        )
        assert [node.storage.get(key) for key in keys] == [old] * len(keys)
    finally:
        for key in keys:
            node.storage.delete(key)


# The machine's transform slots ----------------------------------------------------------------------------------------


def test_every_decode_waits_for_a_transform_slot_and_is_a_503_when_none_is_free(node: Node) -> None:
    key = f"slots/{uuid.uuid4().hex}.jpg"
    node.storage.put(key, photo(640, 480), "image/jpeg", "no-cache")
    miss = format_path(key, "300x", "jpg", SECRET)
    before = [item.key for item in node.storage.list()]
    busy = "all 1 transform slots of this machine are busy"

    with node.hold_slot():
        answers = {
            "miss": node.get(miss),
            "meta": node.api("GET", f"images/{encode_key(key)}/meta"),
            "upload": node.api("POST", "images", data=photo(320, 240), headers={"Content-Type": "image/jpeg"}),
        }
        archive = node.api("GET", "archive", params={"keys": key, "spec": "200x", "fmt": "jpg"})

    for name, answer in answers.items():
        assert answer.status_code == 503, name
        assert answer.headers["Retry-After"] == "2", name
    assert answers["miss"].text == f"Service Unavailable: {busy}\n"
    assert answers["meta"].json() == {"error": "Service Unavailable", "detail": busy}
    assert answers["upload"].json() == {"error": "Service Unavailable", "detail": busy}
    assert zipfile.ZipFile(io.BytesIO(archive.content)).read("ERRORS.txt").decode() == (
        f"{key}.200x.jpg: Service Unavailable: {busy}\n"
    )
    assert [item.key for item in node.storage.list()] == before
    # Once the slot is free, the same requests are served.
    assert node.api("GET", f"images/{encode_key(key)}/meta").status_code == 200
    assert node.get(miss).status_code == 200


def test_regenerate_waits_for_a_transform_slot(node: Node) -> None:
    key = f"regenerate/{uuid.uuid4().hex}.jpg"
    node.storage.put(key, photo(640, 480), "image/jpeg", "no-cache")
    assert node.get(format_path(key, "300x", "jpg", SECRET)).status_code == 200

    # Forced: the derivative's recipe is current, which regenerate would otherwise learn without rendering.
    with node.hold_slot():
        held = regenerate(node.settings, node.storage, prefix=key, force=True)
    free = regenerate(node.settings, node.storage, prefix=key, force=True)

    assert [(outcome.status, outcome.detail) for outcome in held.outcomes] == [
        (FAILED, "all 1 transform slots of this machine are busy")
    ]
    assert [outcome.status for outcome in free.outcomes] == ["current"]


# Memory of a decode within the limits ---------------------------------------------------------------------------------


def test_an_avif_at_its_pixel_limit_decodes_within_the_stated_memory(node: Node) -> None:
    key = f"heif/{uuid.uuid4().hex}.avif"
    node.storage.put(key, flat_avif(4000, 4000), "image/avif", "no-cache")
    pids = node.workers.pids
    baseline = {pid: rss_kib(pid) for pid in pids}
    if not all(reset_peak_rss(pid) for pid in pids):
        pytest.skip("this kernel does not let the peak RSS of a process be reset")

    answer = node.get(format_path(key, "400x", "jpg", SECRET))

    assert answer.status_code == 200
    grown = max(peak_rss_kib(pid) - baseline[pid] for pid in pids)
    # It was decoded (whole: more than any header refusal moves), and within the bound MAX_HEIF_PIXELS stands for.
    assert REFUSAL_RSS_KIB < grown < HEIF_AT_LIMIT_RSS_KIB
    assert node.workers.unchanged()
