"""One verdict for one file on every path: a signed URL's miss, an API upload and ``resize-sidecar upload``, through
nginx and a real sidecar (gunicorn) on local storage and on moto's S3 server, over the shared corpus and the photos
people upload (iPhone HEIC, TIFF, BMP, a 12 MP progressive JPEG). The demo asks for a signed URL through nginx of
each file its gallery leaves out, as the first path does.

A file is accepted on one path exactly when it is on the others; a valid image of an allowed format is accepted, a
malformed, refused or too large one is not, and what is refused leaves nothing stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest

from resize_sidecar.core.signing import format_path
from resize_sidecar.media.storage import Storage
from resize_sidecar.ops.upload import upload
from tests.support.faults import progressive_jpeg
from tests.support.images import TESTDATA
from tests.support.pictures import bmp, display_p3_profile, heic, multipage_tiff, picture, tiff, to_pyvips
from tests.support.servers import SECRET, Stack, media_stack

pytestmark = pytest.mark.e2e

API_TOKEN = "verdicts-api-token-0123456789"
ACCEPTED = "accepted"
REFUSED = "refused"


def photos() -> dict[str, bytes]:
    """Synthetic photos of the formats the corpus has few of, each named with the extension its type needs."""
    landscape = picture(640, 480)
    cmyk = to_pyvips(landscape).icc_transform("cmyk", intent="relative")  # libvips' own CMYK profile
    sixteen = (to_pyvips(landscape).cast("ushort") * 257).cast("ushort")
    whole = heic(landscape, orientation=6, icc=display_p3_profile(), gps=True)
    return {
        "iphone-orientation-6-p3-gps.heic": whole,
        "ten-bit-alpha.heic": heic(picture(320, 240, alpha=True), ten_bit=True),
        "cut-short.heic": whole[: len(whole) * 2 // 3],
        "two-pages.tiff": multipage_tiff(to_pyvips(landscape), to_pyvips(landscape).flip("horizontal")),
        "sixteen-bit.tiff": tiff(sixteen.copy(interpretation="rgb16"), compression="lzw"),
        "cmyk.tif": tiff(cmyk, compression="deflate"),
        "alpha.bmp": bmp(picture(320, 240, alpha=True)),
        "rle8.bmp": bmp(landscape, rle=True),
        "cut-short.bmp": bmp(landscape)[:50_000],
        "progressive-12mp.jpg": progressive_jpeg(4000, 3000),
    }


def corpus() -> dict[str, tuple[bytes, str]]:
    """The shared corpus (MANIFEST.tsv), each file with the verdict its class gives, under a name with the extension
    its type needs (an animated PNG is a .png to nginx)."""
    import csv

    manifest = TESTDATA / "MANIFEST.tsv"
    if not manifest.is_file():
        return {}
    with open(manifest, newline="") as file:
        rows = list(csv.DictReader(file, delimiter="\t"))
    return {
        row["path"].removesuffix(".apng") + (".png" if row["path"].endswith(".apng") else ""): (
            (TESTDATA / row["path"]).read_bytes(),
            ACCEPTED if row["expected"].startswith("valid") else REFUSED,
        )
        for row in rows
    }


@dataclass
class Verdicts:
    bodies: dict[str, bytes]
    expected: dict[str, str]
    by_path: dict[str, dict[str, str]]  # path name -> file name -> verdict
    details: dict[str, dict[str, str]]  # path name -> file name -> status or reason
    storage: Storage


def signed_url(stack: Stack, key: str) -> tuple[str, str]:
    status, _, body = stack.get(format_path(key, "300x", "jpg", SECRET))
    return (ACCEPTED, "200") if status == 200 else (REFUSED, f"{status} {body.decode(errors='replace')}")


def api_upload(stack: Stack, body: bytes) -> tuple[str, str]:
    status, _, answer = stack.get_with("POST", "/api/images", body, {"Authorization": f"Bearer {API_TOKEN}"})
    detail = json.loads(answer or b"{}").get("detail", "")
    return (ACCEPTED if status == 201 else REFUSED), f"{status} {detail}"


@pytest.fixture(scope="module", params=["local", "s3"])
def verdicts(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str
) -> Iterator[Verdicts]:
    files = {name: (body, REFUSED if name.startswith("cut-short") else ACCEPTED) for name, body in photos().items()}
    files.update({f"corpus/{name}": item for name, item in corpus().items()})
    # The bulk upload takes the same machine's transform slots as the sidecar.
    lock_dir = str(tmp_path_factory.mktemp("verdict-locks"))
    env = {"RESIZE_SIDECAR_API_SECRET": API_TOKEN, "RESIZE_SIDECAR_LOCK_DIR": lock_dir}
    folder = tmp_path_factory.mktemp("verdict-upload")
    for name, (body, _) in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(body)
    with media_stack(request.param, moto_endpoint, tmp_path_factory.mktemp("verdict-logs"), env) as stack:
        run = Verdicts(
            {name: body for name, (body, _) in files.items()},
            {name: verdict for name, (_, verdict) in files.items()},
            {},
            {},
            stack.storage,
        )
        # Files put in storage by other means, then asked for through nginx as the demo's gallery does.
        for name, (body, _) in files.items():
            stack.storage.put(f"direct/{name}", body, "application/octet-stream", "no-cache")
        for path, ask in (
            ("signed URL", lambda name, body: signed_url(stack, f"direct/{name}")),
            ("API upload", lambda name, body: api_upload(stack, body)),
        ):
            answers = {name: ask(name, body) for name, (body, _) in files.items()}
            run.by_path[path] = {name: verdict for name, (verdict, _) in answers.items()}
            run.details[path] = {name: detail for name, (_, detail) in answers.items()}
        settings = replace(stack.settings, lock_dir=lock_dir)
        report = upload(settings, stack.storage, folder, dest="cli/")
        run.by_path["CLI upload"] = {
            outcome.item: ACCEPTED if outcome.status == "uploaded" else REFUSED for outcome in report.outcomes
        }
        run.details["CLI upload"] = {outcome.item: outcome.detail for outcome in report.outcomes}
        yield run


def test_every_path_gives_each_file_the_verdict_its_class_gives(verdicts: Verdicts) -> None:
    wrong = {
        (path, name): (found.get(name), verdicts.details[path].get(name))
        for path, found in verdicts.by_path.items()
        for name, verdict in verdicts.expected.items()
        if found.get(name) != verdict
    }
    assert wrong == {}


def test_a_file_refused_by_the_cli_upload_is_not_stored(verdicts: Verdicts) -> None:
    refused = [name for name, verdict in verdicts.by_path["CLI upload"].items() if verdict == REFUSED]
    assert refused
    assert [name for name in refused if verdicts.storage.exists(f"cli/{name}")] == []


def test_the_cli_upload_stores_accepted_files_as_they_are(verdicts: Verdicts) -> None:
    accepted = [name for name, verdict in verdicts.by_path["CLI upload"].items() if verdict == ACCEPTED]
    assert [name for name in accepted if verdicts.storage.get(f"cli/{name}") != verdicts.bodies[name]] == []


def test_a_refusal_for_size_names_the_setting_that_governs_it(verdicts: Verdicts) -> None:
    if "corpus/bombs/lottapixel.jpg" not in verdicts.expected:
        pytest.skip(f"the shared corpus is not at {TESTDATA}")
    for details in verdicts.details.values():
        for name in ("corpus/bombs/lottapixel.jpg", "corpus/bombs/17000x17000.avif"):
            assert "(MAX_SOURCE_PIXELS)" in details[name]
