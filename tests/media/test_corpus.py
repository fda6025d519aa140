"""The shared corpus of real images, and a few synthetic bombs, through a real sidecar (gunicorn, local storage).

Every file is stored and asked for as a few derivatives, one request at a time, by one worker, so that each answer's
time and the worker's memory peak can be told apart. Each answer must be in the class the corpus' MANIFEST.tsv gives
(a valid image of an allowed format: 200; malformed, refused or a bomb: 422), never a 5xx, and the worker must live
through all of them. Outputs carry no metadata, are upright, and never carry the PHP code some originals hide.

Timings and memory are recorded, not asserted: with ``RELIABILITY_RESULTS_DIR`` set (``bench/reliability.py``
sets it to ``bench/results``), the run is written to ``corpus.json`` and ``corpus.md`` there.
"""

from __future__ import annotations

import csv
import http.client
import json
import os
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
import pyvips

from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import format_path
from resize_sidecar.media.local import LocalStorage
from tests.support.faults import (
    Workers,
    gif_frame_flood,
    interlaced_png,
    jpeg_claiming,
    peak_rss_kib,
    png_header_only,
    progressive_jpeg,
    reset_peak_rss,
    rss_kib,
)
from tests.support.images import TESTDATA, photo
from tests.support.servers import REPO, SECRET, SidecarServer, raw_get

pytestmark = pytest.mark.e2e

#: One of each kind of output: a shrink to JPEG, a crop to WebP (animated when the source is), full size to PNG.
SPECS = (("300x", "jpg"), ("200x200-fill", "webp"), ("0x0", "png"))
CONTENT_TYPES = {"jpg": "image/jpeg", "webp": "image/webp", "png": "image/png"}
#: Metadata that must never reach a derivative (pixels are converted to sRGB, so no profile either).
FORBIDDEN_FIELDS = ("exif-", "xmp-", "iptc-", "gps", "icc-profile-data", "orientation")
#: Same answers for one original in the corpus, whatever the spec; the corpus' own keys live under this folder.
CORPUS_PREFIX = "corpus/"
SYNTHETIC_PREFIX = "synthetic/"


@dataclass(frozen=True)
class Entry:
    """One row of MANIFEST.tsv, as far as the answers depend on it."""

    path: str
    expected: str
    loader: str
    displayed: tuple[int, int] | None  # upright size of one frame

    def statuses(self, settings: Settings) -> frozenset[int]:
        """The answers the contract allows for every derivative of this file."""
        if not self.expected.startswith("valid"):
            return frozenset({422})  # malformed, empty, polyglot, pixel bomb
        if self.loader not in settings.allowed_loaders:
            return frozenset({422})  # a valid TIFF, say: a loader the settings refuse
        return frozenset({200})


def with_orientation(jpeg: bytes, value: int) -> bytes:
    """The JPEG with the value of its EXIF Orientation tag replaced (by bytes: libvips would refuse to write 0 or 9)."""
    big_endian = b"Exif\x00\x00MM" in jpeg[:64]
    entry = b"\x01\x12\x00\x03\x00\x00\x00\x01" if big_endian else b"\x12\x01\x03\x00\x01\x00\x00\x00"
    at = jpeg.index(entry) + len(entry)
    packed = struct.pack(">H" if big_endian else "<H", value)
    return jpeg[:at] + packed + jpeg[at + 2 :]


#: EXIF orientations no camera writes: ignored, the stored pixels are upright as they are (FAULTS row 14).
INVALID_ORIENTATIONS = (9, 65535)


def read_manifest(folder: Path) -> list[Entry]:
    if not (folder / "MANIFEST.tsv").is_file():
        return []
    with open(folder / "MANIFEST.tsv", newline="") as file:
        rows = list(csv.DictReader(file, delimiter="\t"))
    entries = []
    for row in rows:
        size = row["displayed_wxh"].split("x")
        entries.append(
            Entry(
                path=row["path"],
                expected=row["expected"],
                loader=row["vips_loader"],
                displayed=(int(size[0]), int(size[1])) if len(size) == 2 and all(s.isdigit() for s in size) else None,
            )
        )
    return entries


MANIFEST = read_manifest(TESTDATA)


@dataclass(frozen=True)
class Synthetic:
    name: str
    make: Callable[[], bytes]
    statuses: frozenset[int]
    bomb: bool  # refused or reduced without decoding its whole claim: also checked under a memory limit


SYNTHETIC = [
    Synthetic("ihdr-100000x100000.png", lambda: png_header_only(100_000, 100_000), frozenset({422}), True),
    Synthetic("sof2-8000x8000.jpg", lambda: jpeg_claiming(8000, 8000), frozenset({422}), True),
    # A frame flood is answered with its first frame (libvips reports 10,000 or more frames as one page).
    Synthetic("frames-10000.gif", lambda: gif_frame_flood(10_000, 2000, 2000), frozenset({200}), True),
    # 12 MP, within the interlaced limit (FAULTS row 9): what phone editors and web exports make.
    Synthetic("progressive-4000x3000.jpg", lambda: progressive_jpeg(4000, 3000), frozenset({200}), False),
    Synthetic("adam7-4000x3000.png", lambda: interlaced_png(4000, 3000), frozenset({200}), False),
]


# The run: every original, every spec, one request at a time -------------------------------------------------------


@dataclass
class Reply:
    key: str
    spec: str
    fmt: str
    status: int
    content_type: str
    seconds: float
    peak_growth_kib: int  # worker's resident memory peak during the request, over its resident memory before it
    body: bytes


@dataclass
class CorpusRun:
    replies: list[Reply]
    workers: Workers
    peak_measured: bool  # the peak was reset before each request (else it is the peak since the worker started)
    synthetic_dir: Path
    storage: LocalStorage
    sidecar: SidecarServer  # still running while the tests read the run

    def of(self, key: str) -> list[Reply]:
        return [reply for reply in self.replies if reply.key == key]

    def images(self) -> Iterator[Reply]:
        return (reply for reply in self.replies if reply.status == 200)


def ask(sidecar: SidecarServer, worker: int, key: str, spec: str, fmt: str) -> Reply:
    measured = reset_peak_rss(worker)
    before = rss_kib(worker) if measured else peak_rss_kib(worker)
    started = time.perf_counter()
    try:
        status, headers, body = raw_get(sidecar.url, format_path(key, spec, fmt, SECRET))
    except OSError:  # the worker died under the request: the connection was dropped
        status, headers, body = 0, {}, b""
    seconds = time.perf_counter() - started
    try:
        growth = max(0, peak_rss_kib(worker) - before)
    except OSError:
        growth = -1
    return Reply(key, spec, fmt, status, headers.get("content-type", ""), seconds, growth, body)


@pytest.fixture(scope="module")
def corpus(testdata: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorpusRun]:
    root = tmp_path_factory.mktemp("corpus-media")
    storage = LocalStorage(root)
    keys = []
    for entry in MANIFEST:
        storage.put(CORPUS_PREFIX + entry.path, (testdata / entry.path).read_bytes(), "", "")
        keys.append(CORPUS_PREFIX + entry.path)
    upright = (testdata / "orientation/Landscape_1.jpg").read_bytes()
    for value in INVALID_ORIENTATIONS:
        storage.put(f"{SYNTHETIC_PREFIX}orientation-{value}.jpg", with_orientation(upright, value), "", "")
        keys.append(f"{SYNTHETIC_PREFIX}orientation-{value}.jpg")
    synthetic_dir = tmp_path_factory.mktemp("synthetic")
    for item in SYNTHETIC:
        data = item.make()
        (synthetic_dir / item.name).write_bytes(data)
        storage.put(SYNTHETIC_PREFIX + item.name, data, "", "")
        keys.append(SYNTHETIC_PREFIX + item.name)

    env = {
        "RESIZE_SIDECAR_SECRETS": SECRET,
        "RESIZE_SIDECAR_STORAGE": "local",
        "RESIZE_SIDECAR_LOCAL_ROOT": str(root),
        # Transform slots are shared by every sidecar using one lock folder: keep other test runs out of ours.
        "RESIZE_SIDECAR_LOCK_DIR": str(tmp_path_factory.mktemp("corpus-locks")),
    }
    logs = tmp_path_factory.mktemp("corpus-logs")
    # One worker: every request's time and memory peak are that worker's alone.
    sidecar = SidecarServer(env, logs, workers=1)
    with sidecar:
        assert sidecar.process is not None
        workers = Workers.of(sidecar.process.pid, 1)
        worker = workers.pids[0]
        peak_measured = reset_peak_rss(worker)
        replies = [ask(sidecar, worker, key, spec, fmt) for key in keys for spec, fmt in SPECS]
        run = CorpusRun(replies, workers, peak_measured, synthetic_dir, storage, sidecar)
        record(run)
        yield run


def record(run: CorpusRun) -> None:
    """Write the per-file figures where ``RELIABILITY_RESULTS_DIR`` says; nothing without it."""
    folder = os.environ.get("RELIABILITY_RESULTS_DIR")
    if not folder:
        return
    rows = [{k: v for k, v in asdict(reply).items() if k != "body"} for reply in run.replies]
    bomb_keys = {SYNTHETIC_PREFIX + item.name for item in SYNTHETIC}
    bombs = [r for r in run.replies if r.key.startswith(CORPUS_PREFIX + "bombs/") or r.key in bomb_keys]
    summary = {
        "requests": len(run.replies),
        "server_errors": sum(1 for r in run.replies if r.status >= 500 or r.status == 0),
        "worker_replaced": not run.workers.unchanged(),
        "peak_reset_per_request": run.peak_measured,
        "slowest_seconds": max(r.seconds for r in run.replies),
        "over_2_seconds": sorted({f"{r.key} {r.spec}.{r.fmt}" for r in run.replies if r.seconds > 2}),
        "bombs_p99_seconds": percentile([r.seconds for r in bombs], 99),
        "bombs_max_peak_growth_mib": max(r.peak_growth_kib for r in bombs) / 1024,
        "all_max_peak_growth_mib": max(r.peak_growth_kib for r in run.replies) / 1024,
    }
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / "corpus.json").write_text(json.dumps({"summary": summary, "replies": rows}, indent=1) + "\n")
    lines = [
        "# Corpus replay through gunicorn (1 sync worker, local storage)",
        "",
        "Written by `tests/media/test_corpus.py` (run by `python bench/reliability.py`). Each original of the shared",
        "corpus and each synthetic bomb is asked for as `300x.jpg`, `200x200-fill.webp` and `0x0.png`, one request at",
        "a time. *Peak* is the worker's resident-memory peak during the request over its resident memory before it.",
        "",
        "| summary | value |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in summary.items()),
        "",
        "| original | statuses | slowest (s) | peak growth (MiB) |",
        "|---|---|---|---|",
    ]
    for key in dict.fromkeys(r.key for r in run.replies):
        mine = run.of(key)
        statuses = " ".join(str(r.status) for r in mine)
        slowest = max(r.seconds for r in mine)
        peak = max(r.peak_growth_kib for r in mine) / 1024
        lines.append(f"| `{key}` | {statuses} | {slowest:.3f} | {peak:.1f} |")
    (out / "corpus.md").write_text("\n".join(lines) + "\n")


def percentile(values: list[float], pct: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def decode(body: bytes) -> pyvips.Image:
    return pyvips.Image.new_from_buffer(body, "")


# What every answer must be ----------------------------------------------------------------------------------------


def test_no_original_gets_a_5xx_and_the_worker_lives_through_them_all(corpus: CorpusRun) -> None:
    failed = [(r.key, f"{r.spec}.{r.fmt}", r.status) for r in corpus.replies if r.status >= 500 or r.status == 0]
    assert failed == []
    assert corpus.workers.unchanged(), "a gunicorn worker died or was replaced during the corpus"


def test_refused_originals_leave_nothing_in_storage(corpus: CorpusRun) -> None:
    refused = {r.key for r in corpus.replies if r.status != 200}
    assert refused  # the corpus has bombs and broken files: the check below is not vacuous
    assert {key: stored for key in refused if (stored := corpus.storage.list(f"_r/{key}/"))} == {}


@pytest.mark.parametrize("entry", MANIFEST, ids=[entry.path for entry in MANIFEST])
def test_each_original_is_answered_as_its_manifest_class(corpus: CorpusRun, entry: Entry) -> None:
    allowed = entry.statuses(Settings())
    replies = corpus.of(CORPUS_PREFIX + entry.path)
    assert [(r.spec, r.fmt, r.status) for r in replies if r.status not in allowed] == [], entry.expected
    # One spec is not answered differently from another: the original is usable or it is not.
    assert len({r.status for r in replies}) == 1
    for reply in replies:
        if reply.status == 200:
            assert reply.content_type == CONTENT_TYPES[reply.fmt]


@pytest.mark.parametrize("item", SYNTHETIC, ids=[item.name for item in SYNTHETIC])
def test_each_synthetic_bomb_is_refused_or_reduced(corpus: CorpusRun, item: Synthetic) -> None:
    assert {r.status for r in corpus.of(SYNTHETIC_PREFIX + item.name)} <= item.statuses


def test_a_frame_flood_is_answered_with_its_first_frame_only(corpus: CorpusRun) -> None:
    for reply in corpus.of(SYNTHETIC_PREFIX + "frames-10000.gif"):
        assert reply.status == 200
        image = pyvips.Image.new_from_buffer(reply.body, "", **({"n": -1} if reply.fmt == "webp" else {}))
        assert image.get_page_height() == image.height


def test_no_output_carries_exif_xmp_iptc_gps_a_profile_or_an_orientation(corpus: CorpusRun) -> None:
    carried = {
        (r.key, r.fmt): found
        for r in corpus.images()
        if (found := [f for f in decode(r.body).get_fields() if f.startswith(FORBIDDEN_FIELDS)])
    }
    assert carried == {}


def test_no_output_carries_the_php_code_hidden_in_some_originals(corpus: CorpusRun) -> None:
    assert [(r.key, r.fmt) for r in corpus.images() if b"<?php" in r.body] == []
    # The corpus does hide some, in metadata: the check above is not vacuous.
    assert any(b"<?php" in (TESTDATA / r.key.removeprefix(CORPUS_PREFIX)).read_bytes() for r in corpus.images())


def test_full_size_outputs_have_the_upright_size_the_manifest_gives(corpus: CorpusRun) -> None:
    displayed = {CORPUS_PREFIX + entry.path: entry.displayed for entry in MANIFEST}
    wrong = {}
    for reply in corpus.images():
        expected = displayed.get(reply.key)
        if reply.spec == "0x0" and expected is not None:
            image = decode(reply.body)
            if (image.width, image.height) != expected:
                wrong[reply.key] = ((image.width, image.height), expected)
    assert wrong == {}


@pytest.mark.parametrize("orientation", range(9))
def test_every_exif_orientation_comes_out_upright(corpus: CorpusRun, orientation: int) -> None:
    """Landscape_0..8 hold one picture stored in each of the eight EXIF orientations (0: an invalid value)."""
    upright = {(r.spec, r.fmt): decode(r.body) for r in corpus.of(CORPUS_PREFIX + "orientation/Landscape_1.jpg")}
    for reply in corpus.of(CORPUS_PREFIX + f"orientation/Landscape_{orientation}.jpg"):
        assert reply.status == 200
        image, reference = decode(reply.body), upright[(reply.spec, reply.fmt)]
        assert (image.width, image.height) == (reference.width, reference.height)
        # Mean difference of small copies, where compression noise averages out; a mirror is far above 30.
        difference = (image.thumbnail_image(90) - reference.thumbnail_image(90)).abs().avg()
        assert difference < 5, f"{reply.spec}.{reply.fmt} differs from the upright picture by {difference:.1f}"


@pytest.mark.parametrize("value", INVALID_ORIENTATIONS)
def test_an_invalid_exif_orientation_is_ignored(corpus: CorpusRun, value: int) -> None:
    reference = {(r.spec, r.fmt): r.body for r in corpus.of(CORPUS_PREFIX + "orientation/Landscape_1.jpg")}
    replies = corpus.of(f"{SYNTHETIC_PREFIX}orientation-{value}.jpg")
    assert [r.status for r in replies] == [200] * len(SPECS)
    # The original differs from Landscape_1.jpg by the tag's value only: the derivatives are the same bytes.
    assert {(r.spec, r.fmt): r.body for r in replies} == reference


def test_an_icc_profile_that_makes_libvips_report_bytes_that_are_not_utf8_leaves_the_worker_healthy(
    testdata: Path, corpus: CorpusRun
) -> None:
    jpeg = (testdata / "formats/sample-xyb.jpg").read_bytes()
    at = jpeg.index(b"para")  # the type of one of the profile's curve tags
    key = SYNTHETIC_PREFIX + "icc-tag-type-not-utf8.jpg"
    corpus.storage.put(key, jpeg[:at] + b"\xea\xff\xfe\x80" + jpeg[at + 4 :], "", "")
    status = raw_get(corpus.sidecar.url, format_path(key, "64x", "jpg", SECRET))[0]
    # The same worker then makes a derivative of a healthy original, not asked for before.
    after = raw_get(
        corpus.sidecar.url, format_path(CORPUS_PREFIX + "orientation/Landscape_1.jpg", "64x", "jpg", SECRET)
    )[0]
    # libvips refuses the profile: 422, and the worker goes on.
    assert (status, after) == (422, 200)


# Bombs under a hard memory limit ----------------------------------------------------------------------------------

#: Run in a fresh process whose address space is capped: a bomb whose pixels were decoded would fail the process
#: (MemoryError, or killed) instead of slowing the machine down. Prints one JSON line per file.
_UNDER_LIMIT = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]), int(sys.argv[1])))
from resize_sidecar.media import imaging
from resize_sidecar.core.errors import SidecarError
from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import parse_spec
settings = Settings()
for path in sys.argv[2:]:
    data = open(path, "rb").read()
    try:
        info = imaging.probe(data, settings.image_limits)
        rendered = imaging.render(data, parse_spec("300x"), "jpg", settings.image_limits, info)
        outcome = f"rendered {rendered.width}x{rendered.height}"
    except SidecarError as error:
        outcome = f"{error.status} {type(error).__name__}"
    print(json.dumps({"path": path, "outcome": outcome}), flush=True)
"""
ADDRESS_SPACE_LIMIT = 1 << 30


def test_bombs_are_refused_without_decoding_within_1_gib_of_address_space(testdata: Path, corpus: CorpusRun) -> None:
    bombs = sorted(str(path) for path in (testdata / "bombs").iterdir())
    bombs += [str(corpus.synthetic_dir / item.name) for item in SYNTHETIC if item.bomb]
    # A legitimate 8 MP original must render under the same limit, or the limit proves nothing.
    control = str(testdata / "formats/ultra-hdr.jpg")
    env = {**os.environ, "VIPS_CONCURRENCY": "1", "MALLOC_ARENA_MAX": "2"}
    done = subprocess.run(
        [sys.executable, "-c", _UNDER_LIMIT, str(ADDRESS_SPACE_LIMIT), control, *bombs],
        capture_output=True, text=True, timeout=120, cwd=REPO, env=env,
    )  # fmt: skip
    assert done.returncode == 0, f"the process died under the limit (status {done.returncode}):\n{done.stderr[-2000:]}"
    outcomes = {Path(line["path"]).name: line["outcome"] for line in map(json.loads, done.stdout.splitlines())}
    assert outcomes.pop("ultra-hdr.jpg") == "rendered 300x169"
    may_render = {"png_decompression_dos.png", "frames-10000.gif"}  # a 1x1 image with a text bomb; a frame flood
    assert len(outcomes) == len(bombs)
    assert {n: o for n, o in outcomes.items() if not (o.startswith("422 ") or n in may_render)} == {}


# F8: uploads through the API -------------------------------------------------------------------------------------

API_TOKEN = "corpus-api-token-0123456789"
UPLOAD_WORKERS = 4
#: The type a stored original must be answered with, from the loader libvips picks for its bytes.
CONTENT_TYPE_OF_LOADER = {
    "jpegload": "image/jpeg",
    "uhdrload": "image/jpeg",
    "pngload": "image/png",
    "webpload": "image/webp",
    "gifload": "image/gif",
    "heifload": "image/avif",
}
#: Metadata an uploaded original must not keep (camera and date may stay; location and editing history may not).
UPLOAD_FORBIDDEN = ("exif-ifd3-", "xmp-", "iptc-")


@dataclass
class Uploads:
    sidecar: SidecarServer
    root: Path
    answers: dict[str, tuple[int, dict[str, object]]]  # corpus path -> status, JSON body

    def post(self, body: bytes, key: str | None = None) -> tuple[int, dict[str, object]]:
        path = "/api/images" + (f"?key={key}" if key else "")
        connection = http.client.HTTPConnection("127.0.0.1", self.sidecar.port, timeout=60)
        try:
            connection.request("POST", path, body=body, headers={"Authorization": f"Bearer {API_TOKEN}"})
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        finally:
            connection.close()

    def stored(self, answer: dict[str, object]) -> bytes:
        return (self.root / str(answer["incoming_key"])).read_bytes()


@pytest.fixture(scope="module")
def uploads(testdata: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Uploads]:
    root = tmp_path_factory.mktemp("upload-media")
    env = {
        "RESIZE_SIDECAR_SECRETS": SECRET,
        "RESIZE_SIDECAR_STORAGE": "local",
        "RESIZE_SIDECAR_LOCAL_ROOT": str(root),
        "RESIZE_SIDECAR_API_SECRET": API_TOKEN,
        "RESIZE_SIDECAR_UPLOAD_CUSTOM_KEYS": "true",
        "RESIZE_SIDECAR_LOCK_DIR": str(tmp_path_factory.mktemp("upload-locks")),
        # A slot per worker: these tests are about what is stored, not about overload (503) answers.
        "RESIZE_SIDECAR_MAX_CONCURRENT_TRANSFORMS": str(UPLOAD_WORKERS),
    }
    sidecar = SidecarServer(env, tmp_path_factory.mktemp("upload-logs"), workers=UPLOAD_WORKERS)
    with sidecar:
        run = Uploads(sidecar, root, {})
        with ThreadPoolExecutor(max_workers=UPLOAD_WORKERS) as pool:
            bodies = {entry.path: (testdata / entry.path).read_bytes() for entry in MANIFEST}
            run.answers = dict(zip(bodies, pool.map(run.post, bodies.values()), strict=True))
        yield run


def upload_statuses(entry: Entry) -> frozenset[int]:
    """An original that makes derivatives is accepted (201); one that cannot is refused as too large (413),
    not an image of an allowed format (415) or corrupt (422)."""
    refusals = {413, 415, 422}
    allowed = entry.statuses(Settings())
    return frozenset(({201} if 200 in allowed else set()) | (refusals if 422 in allowed else set()))


def test_each_upload_is_accepted_or_refused_as_its_manifest_class(uploads: Uploads) -> None:
    wrong = {
        entry.path: status
        for entry in MANIFEST
        if (status := uploads.answers[entry.path][0]) not in upload_statuses(entry)
    }
    assert wrong == {}


def test_stored_uploads_keep_no_location_xmp_or_iptc_and_are_upright(uploads: Uploads) -> None:
    kept, crooked = {}, {}
    for entry in MANIFEST:
        status, answer = uploads.answers[entry.path]
        if status != 201:
            continue
        image = decode(uploads.stored(answer))
        if found := [f for f in image.get_fields() if f.startswith(UPLOAD_FORBIDDEN) or "GPS" in f]:
            kept[entry.path] = found
        orientation = image.get("orientation") if image.get_typeof("orientation") else 1
        if orientation != 1 or (entry.displayed and (image.width, image.get_page_height()) != entry.displayed):
            crooked[entry.path] = (orientation, image.width, image.get_page_height(), entry.displayed)
    assert kept == {}
    assert crooked == {}


def test_stored_uploads_are_answered_with_the_type_sniffed_from_their_bytes(uploads: Uploads) -> None:
    mismatched = {}
    for path, (status, answer) in uploads.answers.items():
        if status == 201:
            loader = str(decode(uploads.stored(answer)).get("vips-loader")).removesuffix("_buffer")
            if CONTENT_TYPE_OF_LOADER[loader] != answer["content_type"]:
                mismatched[path] = (loader, answer["content_type"])
    assert mismatched == {}


def test_stored_uploads_keep_no_iptc_block_inside_their_exif_either(uploads: Uploads) -> None:
    kept = {
        path: "exif-ifd0-IPTC/NAA"
        for path, (status, answer) in uploads.answers.items()
        if status == 201 and decode(uploads.stored(answer)).get_typeof("exif-ifd0-IPTC/NAA")
    }
    assert kept == {}


def test_100_concurrent_uploads_of_one_file_get_100_distinct_keys(testdata: Path, uploads: Uploads) -> None:
    body = (testdata / "exif/exif_gps.jpg").read_bytes()
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda _: uploads.post(body), range(100)))
    assert [status for status, _ in answers] == [201] * 100
    assert len({answer["key"] for _, answer in answers}) == 100
    assert all(b"GPS" not in uploads.stored(answer) for _, answer in answers)


def test_100_concurrent_uploads_to_one_chosen_key_store_one_and_overwrite_nothing(uploads: Uploads) -> None:
    """Each upload is a different image (its width tells which): the one stored is the one answered 201."""
    bodies = [photo(64 + n, 48) for n in range(100)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda body: uploads.post(body, key="race/same.jpg"), bodies))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [201] + [409] * 99
    (winner,) = [answer for status, answer in answers if status == 201]
    assert decode(uploads.stored(winner)).width == winner["width"]
