"""One verdict for one file on every path: a signed URL's miss, an API upload and ``resize-sidecar upload``, through a
real sidecar (gunicorn) on local storage and on moto's S3 server, over the shared corpus and the photos people upload
(iPhone HEIC, TIFF, BMP, a 12 MP progressive JPEG). The demo shows what the signed URLs of its gallery answer.

A file is accepted on one path exactly when it is on the others; a valid image of an allowed format is accepted, a
malformed, refused or too large one is not, and what is refused leaves nothing stored.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from resize_sidecar import operations
from resize_sidecar.settings import load
from resize_sidecar.signing import format_path
from resize_sidecar.storage import Storage, open_storage
from tests.conftest import SECRET, TESTDATA
from tests.faults import progressive_jpeg
from tests.pictures import bmp, display_p3_profile, heic, multipage_tiff, picture, tiff, to_pyvips

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


def signed_url(sidecar_url: str, key: str) -> tuple[str, str]:
    connection = http.client.HTTPConnection(*sidecar_url.removeprefix("http://").split(":"), timeout=60)
    try:
        connection.request("GET", format_path(key, "300x", "jpg", SECRET))
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    accepted = response.status == 200
    return (ACCEPTED, "200") if accepted else (REFUSED, f"{response.status} {body.decode(errors='replace')}")


def api_upload(sidecar_url: str, body: bytes) -> tuple[str, str]:
    connection = http.client.HTTPConnection(*sidecar_url.removeprefix("http://").split(":"), timeout=60)
    try:
        connection.request("POST", "/api/images", body=body, headers={"Authorization": f"Bearer {API_TOKEN}"})
        response = connection.getresponse()
        answer = json.loads(response.read() or b"{}")
    finally:
        connection.close()
    return (ACCEPTED if response.status == 201 else REFUSED), f"{response.status} {answer.get('detail', '')}"


@pytest.fixture(scope="module", params=["local", "moto"])
def verdicts(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str
) -> Iterator[Verdicts]:
    from tests.servers import SidecarServer

    files = {name: (body, REFUSED if name.startswith("cut-short") else ACCEPTED) for name, body in photos().items()}
    files.update({f"corpus/{name}": item for name, item in corpus().items()})
    env = {
        "RESIZE_SIDECAR_SECRETS": SECRET,
        "RESIZE_SIDECAR_API_SECRET": API_TOKEN,
        "RESIZE_SIDECAR_LOCK_DIR": str(tmp_path_factory.mktemp("verdict-locks")),
    }
    if request.param == "local":
        root = tmp_path_factory.mktemp("verdict-media")
        env |= {"RESIZE_SIDECAR_STORAGE": "local", "RESIZE_SIDECAR_LOCAL_ROOT": str(root)}
    else:
        import boto3

        bucket = f"verdicts-{tmp_path_factory.mktemp('bucket').name.lower().replace('_', '-')}"
        client = boto3.client(
            "s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="test",
            aws_secret_access_key="test",
        )  # fmt: skip
        client.create_bucket(Bucket=bucket)
        env |= {"RESIZE_SIDECAR_STORAGE": "s3", "RESIZE_SIDECAR_S3_BUCKET": bucket,
                "RESIZE_SIDECAR_S3_ENDPOINT_URL": moto_endpoint}  # fmt: skip
    settings = load(environ=env)
    storage = open_storage(settings)
    folder = tmp_path_factory.mktemp("verdict-upload")
    for name, (body, _) in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(body)
    run = Verdicts(
        {name: body for name, (body, _) in files.items()},
        {name: verdict for name, (_, verdict) in files.items()},
        {},
        {},
        storage,
    )
    # Files put in storage by other means, then asked for through signed URLs.
    for name, (body, _) in files.items():
        storage.put(f"direct/{name}", body, "application/octet-stream", "no-cache")
    with SidecarServer(env, tmp_path_factory.mktemp("verdict-logs")) as sidecar:
        for path, ask in (
            ("signed URL", lambda name, body: signed_url(sidecar.url, f"direct/{name}")),
            ("API upload", lambda name, body: api_upload(sidecar.url, body)),
        ):
            answers = {name: ask(name, body) for name, (body, _) in files.items()}
            run.by_path[path] = {name: verdict for name, (verdict, _) in answers.items()}
            run.details[path] = {name: detail for name, (_, detail) in answers.items()}
    report = operations.upload(settings, storage, folder, dest="cli/")
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
