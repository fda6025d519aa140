"""N machines sharing a bulk run: ``resize-sidecar regenerate --shard K/N`` and ``upload --shard K/N`` as N
concurrent processes against one bucket on moto's S3 server, every request counted by the fault proxy in front of
it. Together the shards cover every object exactly once, none writes another's object, and a second run of them
renders and writes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from resize_sidecar.core.settings import load
from resize_sidecar.core.signing import format_path
from resize_sidecar.media.derive import Deriver
from resize_sidecar.media.s3 import S3Storage
from tests.support.commands import s3_env
from tests.support.faults import FaultProxy
from tests.support.images import image_size, photo
from tests.support.servers import REPO, SECRET

SHARDS = 4
ORIGINALS = [f"shots/{number:02}.jpg" for number in range(10)]
SPECS = [("thumb", "jpg"), ("thumb", "webp"), ("200x", "png")]


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto_endpoint) as proxy:
        yield proxy


def run_shards(*command: str, env: dict[str, str]) -> list[dict[str, Any]]:
    """``resize-sidecar COMMAND --shard K/N --json`` for every K at once, each in its own process; their reports."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "resize_sidecar.ops.cli", *command, "--shard", f"{index}/{SHARDS}", "--json"],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(SHARDS)
    ]
    reports = []
    for process in processes:
        out, err = process.communicate(timeout=180)
        assert process.returncode == 0, err
        reports.append(json.loads(out))
    return reports


def items(report: dict[str, Any]) -> list[str]:
    return [item["item"] for item in report["items"]]


def assert_partition(reports: list[dict[str, Any]], everything: list[str]) -> None:
    """Each item in exactly one report, and every item in one."""
    seen = Counter(key for report in reports for key in items(report))
    assert sorted(seen) == sorted(everything)
    assert set(seen.values()) == {1}


def written(proxy: FaultProxy, bucket: str) -> Counter[str]:
    """The keys PUT through the proxy, each with how many times."""
    return Counter(
        unquote(urlsplit(target).path).removeprefix(f"/{bucket}/")
        for method, target in list(proxy.requests)
        if method == "PUT"
    )


def object_reads(proxy: FaultProxy) -> int:
    """GETs of objects (listings are GETs of the bucket with a query)."""
    return sum(method == "GET" and "list-type" not in target for method, target in list(proxy.requests))


def test_regenerate_shards_cover_every_derivative_once_and_a_rerun_renders_and_writes_nothing(
    proxy: FaultProxy, moto_endpoint: str, s3_bucket: str
) -> None:
    env = s3_env(moto_endpoint, s3_bucket)
    settings = load(environ=env)
    storage = S3Storage(s3_bucket, endpoint_url=moto_endpoint)
    deriver = Deriver(settings, storage)
    made = {}
    for original in ORIGINALS:
        storage.put(original, photo(320, 240), "image/jpeg", "no-cache")
        for spec, fmt in SPECS:
            made[original, spec, fmt] = deriver.derive(format_path(original, spec, fmt, SECRET)).storage_key
    thumbs = sorted(key for (_, spec, _), key in made.items() if spec == "thumb")
    bigger = {**s3_env(proxy.url, s3_bucket), "RESIZE_SIDECAR_PRESETS": "thumb=120x90-fill"}
    shell = {name: value for name, value in os.environ.items() if not name.startswith("RESIZE_")}

    reports = run_shards("regenerate", env={**shell, **bigger})

    assert_partition(reports, list(made.values()))
    rebuilt = sorted(item["item"] for report in reports for item in report["items"] if item["status"] == "rebuilt")
    assert rebuilt == thumbs
    assert sum(report["counts"].get("current", 0) for report in reports) == len(ORIGINALS)  # the 200x.png
    assert written(proxy, s3_bucket) == Counter(thumbs)  # no object written twice, nor by two shards
    assert {image_size(storage.get(key)) for key in thumbs} == {(120, 90)}
    for report in reports:  # all derivatives of an original in one shard
        assert len({key.split("/")[2] for key in items(report)}) * len(SPECS) == len(items(report))

    proxy.clear()
    again = run_shards("regenerate", env={**shell, **bigger})

    assert_partition(again, list(made.values()))
    assert {(item["status"], item["detail"]) for report in again for item in report["items"]} == {("current", "")}
    assert (written(proxy, s3_bucket), object_reads(proxy)) == (Counter(), 0)  # nothing rendered, nothing written


def test_upload_shards_upload_every_file_once_and_a_rerun_uploads_nothing(
    proxy: FaultProxy, s3_bucket: str, tmp_path: Path
) -> None:
    folder = tmp_path / "originals"
    (folder / "more").mkdir(parents=True)
    names = [f"p{number:02}.jpg" for number in range(10)] + [f"more/q{number}.png" for number in range(4)]
    for number, name in enumerate(names):
        (folder / name).write_bytes(photo(40 + number, 30, name.rpartition(".")[2]))
    shell = {name: value for name, value in os.environ.items() if not name.startswith("RESIZE_")}
    env = {**shell, **s3_env(proxy.url, s3_bucket)}

    reports = run_shards("upload", str(folder), "--dest", "site/", env=env)

    assert_partition(reports, names)
    assert {item["status"] for report in reports for item in report["items"]} == {"uploaded"}
    parts = [f".resize-sidecar/upload/site/manifest.{index}-of-{SHARDS}.json" for index in range(SHARDS)]
    assert written(proxy, s3_bucket) == Counter([f"site/{name}" for name in names] + parts)
    storage = S3Storage(s3_bucket, endpoint_url=proxy.url)
    listed = [sorted(row["key"] for row in json.loads(storage.get(part) or b"")["files"]) for part in parts]
    assert listed == [sorted(f"site/{name}" for name in items(report)) for report in reports]

    proxy.clear()
    again = run_shards("upload", str(folder), "--dest", "site/", env=env)

    assert_partition(again, names)
    assert {item["status"] for report in again for item in report["items"]} == {"unchanged"}
    assert written(proxy, s3_bucket) == Counter()
