"""The operator's subcommands: upload, setup-bucket, regenerate and check, against moto's S3 server over HTTP and
against local storage; and the compose example.

Commands run in-process through ``cli.main`` (exit code, stdout and stderr as a user sees them), or as a
subprocess where a terminal or a signal is involved. Writes are counted, and storage made to stop answering, by
the fault proxy (``tests/support/faults.py``) in front of moto.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pty
import re
import shlex
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from resize_sidecar.core.errors import MalformedPathError
from resize_sidecar.core.settings import Settings, load
from resize_sidecar.core.signing import format_path, parse_path, verify
from resize_sidecar.media.derive import Deriver
from resize_sidecar.media.local import LocalStorage
from resize_sidecar.media.s3 import S3Storage
from resize_sidecar.media.storage import Storage
from resize_sidecar.ops.check import check
from resize_sidecar.ops.cli import build_parser
from resize_sidecar.ops.upload import upload
from tests.support.commands import Run, local_env, s3_env
from tests.support.faults import Fault, FaultProxy
from tests.support.images import image_size, photo
from tests.support.pictures import bmp, heic, picture, tiff, to_pyvips
from tests.support.servers import REPO, SECRET


def storage_of(env: dict[str, str]) -> Storage:
    settings = settings_of(env)
    if settings.storage == "s3":
        return S3Storage(settings.s3_bucket, endpoint_url=settings.s3_endpoint_url)
    return LocalStorage(settings.local_root)


def settings_of(env: dict[str, str]) -> Settings:
    return load(environ=env)


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto_endpoint) as proxy:
        yield proxy


@pytest.fixture
def folder(tmp_path: Path, testdata: Path) -> Path:
    """Originals to upload: JPEG, PNG in a subfolder, an AVIF, and a WebP whose EXIF turns it upright."""
    root = tmp_path / "originals"
    (root / "trips" / "alps").mkdir(parents=True)
    (root / "cat.jpg").write_bytes(photo(640, 480))
    (root / "trips" / "alps" / "summit café.png").write_bytes(photo(300, 200, "png"))
    (root / "fox.avif").write_bytes((testdata / "formats/fox.profile0.8bpc.yuv420.avif").read_bytes())
    (root / "portrait.webp").write_bytes((testdata / "orientation/Exif6.webp").read_bytes())
    return root


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


#: Where upload keeps the manifest of an upload without --dest: under the prefix nginx never serves.
MANIFEST_KEY = ".resize-sidecar/upload/manifest.json"


# upload


def test_upload_stores_each_image_at_its_path_with_its_type_and_writes_a_manifest_of_urls(
    cli: Run, folder: Path, moto_endpoint: str, s3_bucket: str, s3_client: Any
) -> None:
    result = cli("upload", str(folder), "--dest", "photos", "--json", env=s3_env(moto_endpoint, s3_bucket))

    assert result.code == 0, result.err
    report = result.json()
    assert report["counts"] == {"uploaded": 4}
    urls = sorted(item["url"] for item in report["items"])
    assert urls[0] == "https://cdn.example.com/media/photos/cat.jpg"
    assert "https://cdn.example.com/media/photos/trips/alps/summit%20caf%C3%A9.png" in urls
    types = {"photos/cat.jpg": "image/jpeg", "photos/fox.avif": "image/avif", "photos/portrait.webp": "image/webp"}
    for key, content_type in types.items():
        head = s3_client.head_object(Bucket=s3_bucket, Key=key)
        # The API's policy for originals: they can be replaced, so caches ask again.
        assert (head["ContentType"], head["CacheControl"]) == (content_type, "no-cache")
    manifest_key = ".resize-sidecar/upload/photos/manifest.json"
    manifest = json.loads(s3_client.get_object(Bucket=s3_bucket, Key=manifest_key)["Body"].read())
    rows = {row["key"]: row for row in manifest["files"]}
    assert sorted(rows) == [
        "photos/cat.jpg",
        "photos/fox.avif",
        "photos/portrait.webp",
        "photos/trips/alps/summit café.png",
    ]
    assert rows["photos/cat.jpg"]["md5"] == md5((folder / "cat.jpg").read_bytes())
    assert (rows["photos/portrait.webp"]["width"], rows["photos/portrait.webp"]["height"]) == (640, 427)  # upright
    thumb = rows["photos/fox.avif"]["derivatives"]["thumb"]
    assert thumb.startswith("https://cdn.example.com/media/_r/photos/fox.avif/thumb-") and thumb.endswith(".avif")
    verify(parse_path(thumb.removeprefix("https://cdn.example.com")), [SECRET])


def test_upload_stores_heic_tiff_and_bmp_as_sent_with_the_type_their_bytes_name(
    cli: Run, tmp_path: Path, moto_endpoint: str, s3_bucket: str, s3_client: Any
) -> None:
    """The API converts these; the bulk upload keeps the photographer's file, typed by what it is."""
    folder = tmp_path / "scans"
    folder.mkdir()
    files = {
        "phone.heic": ("image/heic", heic(picture(64, 48))),
        "scan.tiff": ("image/tiff", tiff(to_pyvips(picture(64, 48)))),
        "paint.bmp": ("image/bmp", bmp(picture(64, 48))),
    }
    for name, (_, data) in files.items():
        (folder / name).write_bytes(data)

    result = cli("upload", str(folder), "--json", env=s3_env(moto_endpoint, s3_bucket))

    assert (result.code, result.json()["counts"]) == (0, {"uploaded": 3}), result.err
    stored = {name: s3_client.get_object(Bucket=s3_bucket, Key=name) for name in files}
    assert {name: (got["ContentType"], got["Body"].read()) for name, got in stored.items()} == files
    manifest = json.loads(s3_client.get_object(Bucket=s3_bucket, Key=MANIFEST_KEY)["Body"].read())
    assert {row["key"]: row["content_type"] for row in manifest["files"]} == {
        name: content_type for name, (content_type, _) in files.items()
    }


@pytest.mark.parametrize("kind", ["s3", "local"])
def test_a_second_upload_writes_nothing_and_a_changed_file_is_the_only_one_sent_again(
    kind: str, cli: Run, folder: Path, proxy: FaultProxy, s3_bucket: str, tmp_path: Path
) -> None:
    env = s3_env(proxy.url, s3_bucket) if kind == "s3" else local_env(tmp_path / "media")
    assert cli("upload", str(folder), "--quiet", env=env).code == 0

    def writes() -> object:
        if kind == "s3":
            return proxy.count("PUT")
        return sorted((path, path.stat().st_mtime_ns) for path in (tmp_path / "media").rglob("*"))

    before = writes()
    again = cli("upload", str(folder), env=env)
    assert again.code == 0, again.err
    assert writes() == before
    assert len(again.items("unchanged")) == 4
    assert again.out.splitlines()[-1] == "upload: 4 unchanged"

    (folder / "cat.jpg").write_bytes(photo(320, 240))
    sent = proxy.count("PUT")
    changed = cli("upload", str(folder), "--json", env=env).json()
    assert changed["counts"] == {"unchanged": 3, "uploaded": 1}
    assert [item["item"] for item in changed["items"] if item["status"] == "uploaded"] == ["cat.jpg"]
    if kind == "s3":
        assert proxy.count("PUT") == sent + 2  # the file and the manifest
    manifest = json.loads(storage_of(env).get(MANIFEST_KEY) or b"")
    assert [row["width"] for row in manifest["files"] if row["key"] == "cat.jpg"] == [320]


@pytest.mark.parametrize("kind", ["s3", "local"])
def test_a_manifest_left_among_the_originals_is_moved_out_of_them_and_its_files_stay_unchanged(
    kind: str, cli: Run, folder: Path, s3_bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    """Earlier versions wrote PREFIX/manifest.json, which nginx served with the originals."""
    env = s3_env(moto_endpoint, s3_bucket) if kind == "s3" else local_env(tmp_path / "media")
    storage = storage_of(env)
    assert cli("upload", str(folder), "--dest", "photos/", "--quiet", env=env).code == 0
    private = ".resize-sidecar/upload/photos/manifest.json"
    manifest = storage.get(private) or b""
    storage.put("photos/manifest.json", manifest, "application/json", "no-cache")
    storage.delete(private)

    again = cli("upload", str(folder), "--dest", "photos/", env=env)

    assert again.code == 0, again.err
    assert again.out.splitlines()[-1] == "upload: 4 unchanged"
    assert "photos/manifest.json was public: it moves to .resize-sidecar/upload/photos/manifest.json" in again.err
    assert storage.get("photos/manifest.json") is None
    assert storage.get(private) == manifest


def test_an_object_of_another_kind_at_the_old_manifest_key_is_left_alone(
    cli: Run, folder: Path, s3_bucket: str, moto_endpoint: str
) -> None:
    env = s3_env(moto_endpoint, s3_bucket)
    storage = storage_of(env)
    storage.put("photos/manifest.json", b'{"name": "an app of its own"}', "application/json", "no-cache")
    other = {"prefix": "elsewhere/", "files": []}
    storage.put("manifest.json", json.dumps(other).encode(), "application/json", "no-cache")
    assert cli("upload", str(folder), "--dest", "photos/", "--quiet", env=env).code == 0
    assert cli("upload", str(folder), "--quiet", env=env).code == 0
    assert storage.get("photos/manifest.json") == b'{"name": "an app of its own"}'
    assert json.loads(storage.get("manifest.json") or b"") == other


def test_files_that_cannot_be_uploaded_are_reported_the_others_uploaded_and_the_exit_code_is_1(
    cli: Run, folder: Path, moto_endpoint: str, s3_bucket: str, testdata: Path
) -> None:
    (folder / "notes.jpg").write_text("a text file with an image's name\n")
    (folder / "cut.jpg").write_bytes((testdata / "malformed/truncated.jpg").read_bytes())
    (folder / "gone.jpg").symlink_to(folder / "nowhere.jpg")
    (folder / "trips" / "manifest.json").write_bytes(photo(10, 10))
    (folder / "profile.html").write_bytes(photo(10, 10))
    (folder / "noextension").write_bytes(photo(10, 10, "png"))
    (folder / "png").write_bytes(photo(10, 10, "png"))  # the extension's letters, without the dot
    (folder / "cat.png").write_bytes(photo(10, 10))
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    if os.geteuid() != 0:  # root reads any file
        (folder / "locked.jpg").write_bytes(photo(10, 10))
        (folder / "locked.jpg").chmod(0)

    result = cli("upload", str(folder), env=s3_env(moto_endpoint, s3_bucket))

    assert result.code == 1
    failures = {}
    for line in result.err.splitlines():
        status, rest = line.split(maxsplit=1)
        if status == "failed":
            name, _, why = rest.partition(": ")
            failures[name] = why
    assert failures["notes.jpg"] == "not an image format libvips knows"
    # Decoded, not only sniffed. libvips keeps one error buffer per process, which the other upload threads may
    # clear before its words are read: the loader is named either way.
    assert failures["cut.jpg"].startswith("jpegload: ")
    assert failures["gone.jpg"].startswith("cannot read it")
    assert failures["profile.html"] == "it is image/jpeg, and its name must end in .jpg, .jpeg to be served as one"
    assert failures["trips/manifest.json"] == failures["profile.html"]
    assert failures["cat.png"] == failures["profile.html"]
    assert failures["noextension"] == "it is image/png, and its name must end in .png to be served as one"
    assert failures["png"] == failures["noextension"]
    assert len(result.items("uploaded")) == 4
    assert result.out.splitlines()[-1].endswith("4 uploaded, " + f"{len(failures)} failed")
    keys = [item.key for item in storage_of(s3_env(moto_endpoint, s3_bucket)).list()]
    assert sorted(keys) == sorted(["cat.jpg", "fox.avif", "portrait.webp", "trips/alps/summit café.png", MANIFEST_KEY])
    assert len(json.loads(storage_of(s3_env(moto_endpoint, s3_bucket)).get(MANIFEST_KEY) or b"")["files"]) == 4


def test_a_file_local_storage_cannot_hold_beside_a_stored_one_fails_alone(tmp_path: Path) -> None:
    folder = tmp_path / "originals"
    (folder / "trips").mkdir(parents=True)
    (folder / "cat.jpg").write_bytes(photo(40, 30))
    (folder / "trips" / "alps.jpg").write_bytes(photo(40, 30))
    media = tmp_path / "media"
    media.mkdir()
    (media / "trips").write_bytes(photo(10, 10))  # an image stored at "trips": no folder can be made there
    done, report = upload_in_a_process(folder, media)
    assert (done.returncode, report["counts"]) == (1, {"uploaded": 1, "failed": 1}), done.stderr
    assert failed(report) == [("trips/alps.jpg", "local storage holds a file at 'trips', not a folder")]
    assert (media / "cat.jpg").is_file()


def test_a_destination_local_storage_cannot_hold_is_exit_2_naming_it_and_stores_nothing(
    cli: Run, tmp_path: Path
) -> None:
    folder, media = tmp_path / "originals", tmp_path / "media"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(photo(40, 30))
    done = cli("upload", str(folder), "--json", "--dest", "photos/" + "é" * 128 + "/", env=local_env(media))
    too_long = "local storage takes names of at most 255 bytes in a key, not 256 (" + "é" * 20 + "…)"
    assert (done.code, done.out, done.err) == (2, "", f"resize-sidecar: {too_long}\n")
    assert not any(path.is_file() for path in media.rglob("*"))


def test_a_file_whose_key_storage_cannot_name_fails_alone(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    class ShortNames(LocalStorage):
        """A file system whose names end at 143 bytes, as eCryptfs's do."""

        def put(self, key: str, *args: Any, **kwargs: Any) -> None:
            if max(len(name.encode()) for name in key.split("/")) > 143:
                raise MalformedPathError("local storage takes names of at most 143 bytes in a key")
            super().put(key, *args, **kwargs)

    folder = tmp_path / "originals"
    folder.mkdir()
    for name in ("cat.jpg", "é" * 70 + ".jpg"):
        (folder / name).write_bytes(photo(40, 30))
    (tmp_path / "media").mkdir()
    storage = ShortNames(tmp_path / "media")

    report = upload(make_settings(), storage, folder)

    assert sorted((outcome.item, outcome.status) for outcome in report.outcomes) == [
        ("cat.jpg", "uploaded"),
        ("é" * 70 + ".jpg", "failed"),
    ]
    assert [item.key for item in storage.list()] == [".resize-sidecar/upload/manifest.json", "cat.jpg"]


def test_a_named_pipe_in_the_folder_is_reported_failed_without_waiting_for_a_writer(tmp_path: Path) -> None:
    folder = tmp_path / "originals"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(photo(40, 30))
    os.mkfifo(folder / "pipe.jpg")
    # In a process of its own: opening the pipe would wait for a writer that never comes.
    done, report = upload_in_a_process(folder, tmp_path / "media")
    assert (done.returncode, report["counts"]) == (1, {"uploaded": 1, "failed": 1}), done.stderr
    assert failed(report) == [("pipe.jpg", "cannot read it: pipe.jpg is not a regular file")]


def upload_in_a_process(
    folder: Path, media: Path, *options: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """``resize-sidecar upload FOLDER --json`` into local storage at ``media``, run as its own process, and its
    report."""
    clean = {name: value for name, value in os.environ.items() if not name.startswith("RESIZE_SIDECAR_")}
    done = subprocess.run(
        [sys.executable, "-m", "resize_sidecar.ops.cli", "upload", str(folder), "--json", *options],
        env={**clean, **local_env(media)},
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    return done, json.loads(done.stdout)


def failed(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The items a JSON report says failed, with why."""
    return [(item["item"], item["detail"]) for item in report["items"] if item["status"] == "failed"]


def test_a_file_whose_object_is_gone_is_uploaded_again_though_the_manifest_lists_it(cli: Run, tmp_path: Path) -> None:
    folder = tmp_path / "originals"
    folder.mkdir()
    for name in ("kept.jpg", "lost.jpg"):
        (folder / name).write_bytes(photo(40, 30))
    env = local_env(tmp_path / "media")
    assert cli("upload", str(folder), "--quiet", env=env).code == 0
    storage = storage_of(env)
    storage.delete("lost.jpg")

    again = cli("upload", str(folder), "--json", env=env).json()

    statuses = {item["item"]: item["status"] for item in again["items"]}
    assert statuses == {"kept.jpg": "unchanged", "lost.jpg": "uploaded"}
    assert storage.get("lost.jpg") == (folder / "lost.jpg").read_bytes()


def test_a_dry_run_says_what_it_would_upload_and_writes_nothing(
    cli: Run, folder: Path, proxy: FaultProxy, s3_bucket: str
) -> None:
    result = cli("upload", str(folder), "--dry-run", env=s3_env(proxy.url, s3_bucket))
    assert result.code == 0
    assert len(result.items("would upload")) == 4
    assert proxy.count("PUT") == proxy.count("DELETE") == 0


@pytest.mark.parametrize("command", [("upload", "."), ("regenerate",), ("check",)])
def test_a_bucket_that_does_not_exist_fails_at_once_with_exit_1_and_says_so(
    cli: Run, command: tuple[str, ...], moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, folder: Path
) -> None:
    monkeypatch.chdir(folder)
    result = cli(*command, env=s3_env(moto_endpoint, "no-such-bucket-here"))
    assert result.code == 1
    assert "S3 bucket 'no-such-bucket-here' does not exist" in result.err + result.out


def test_an_upload_cut_off_by_a_silent_store_exits_1_leaves_only_whole_objects_and_a_rerun_completes(
    cli: Run, folder: Path, proxy: FaultProxy, moto_endpoint: str, s3_bucket: str
) -> None:
    for number in range(6):
        (folder / f"extra-{number}.jpg").write_bytes(photo(200 + number, 150))
    proxy.fault = Fault.blackhole(path=r"/extra-3\.jpg$")

    started = time.monotonic()
    cut = cli("upload", str(folder), "--jobs", "2", env=s3_env(proxy.url, s3_bucket))

    assert cut.code == 1
    assert time.monotonic() - started < 10, "the run went on waiting for a store that had stopped answering"
    assert "stopped: S3 " in cut.out and "timed out" in cut.out and "run it again to finish" in cut.out
    storage = storage_of(s3_env(moto_endpoint, s3_bucket))
    local = {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    stored = [item.key for item in storage.list()]
    assert 0 < len(stored) < len(local)
    for key in stored:
        assert storage.get(key) == local[key], f"{key} is not the whole file"

    rerun = cli("upload", str(folder), "--jobs", "2", env=s3_env(moto_endpoint, s3_bucket))
    assert rerun.code == 0, rerun.err
    assert sorted(item.key for item in storage.list()) == sorted([*local, MANIFEST_KEY])
    assert len(json.loads(storage.get(MANIFEST_KEY) or b"")["files"]) == len(local)


def test_an_interrupted_upload_saves_its_manifest_and_a_rerun_finishes_without_sending_those_again(
    cli: Run, folder: Path, proxy: FaultProxy, moto_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    for number in range(8):
        (folder / f"extra-{number}.jpg").write_bytes(photo(200 + number, 150))
    proxy.fault = Fault.delay(300, methods=["PUT"])
    env = {**os.environ, **s3_env(proxy.url, s3_bucket)}
    command = [sys.executable, "-m", "resize_sidecar.ops.cli", "upload", str(folder), "--jobs", "1"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    storage = storage_of(s3_env(moto_endpoint, s3_bucket))
    deadline = time.monotonic() + 20
    while len(storage.list()) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=20)

    assert process.returncode == 130
    assert "interrupted; run the same command again to finish" in err
    saved = json.loads(storage.get(MANIFEST_KEY) or b"")["files"]
    assert 2 <= len(saved) < 12

    proxy.clear()
    rerun = cli("upload", str(folder), "--json", env=s3_env(proxy.url, s3_bucket))
    assert rerun.code == 0, rerun.err
    counts = rerun.json()["counts"]
    assert counts["unchanged"] >= len(saved) and counts["unchanged"] + counts["uploaded"] == 12
    assert proxy.count("PUT") == counts["uploaded"] + 1  # and the manifest
    assert len([item for item in storage.list() if item.key != MANIFEST_KEY]) == 12


def test_the_progress_bar_shows_on_a_terminal_and_never_in_a_pipe_or_with_quiet(folder: Path, tmp_path: Path) -> None:
    env = {**os.environ, **local_env(tmp_path / "media")}
    command = [sys.executable, "-m", "resize_sidecar.ops.cli", "upload", str(folder), "--dest"]

    def stderr_on_a_terminal(*args: str) -> str:
        controller, terminal = pty.openpty()
        # A new pseudo-terminal is 0 columns wide, into which tqdm fits no bar.
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        process = subprocess.Popen([*command, *args], env=env, stdout=subprocess.PIPE, stderr=terminal)
        os.close(terminal)
        seen = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            seen += chunk
        process.wait(timeout=30)
        os.close(controller)
        assert process.returncode == 0
        return seen.decode(errors="replace")

    assert re.search(r"\d+/4 .*file", stderr_on_a_terminal("bar/"))
    assert stderr_on_a_terminal("quiet/", "--quiet") == ""
    piped = subprocess.run([*command, "piped/"], env=env, capture_output=True, text=True, timeout=30)
    assert piped.returncode == 0 and piped.stderr == "wrote .resize-sidecar/upload/piped/manifest.json\n"


# regenerate


def make_derivatives(env: dict[str, str], key: str, specs: list[tuple[str, str]]) -> dict[str, str]:
    """Have the sidecar's miss path make derivatives of ``key``; their storage keys, by spec and format."""
    settings = settings_of(env)
    deriver = Deriver(settings, storage_of(env))
    made = {}
    for spec, fmt in specs:
        made[f"{spec}.{fmt}"] = deriver.derive(format_path(key, spec, fmt, SECRET)).storage_key
    return made


def test_regenerate_rebuilds_a_changed_preset_in_place_and_a_second_run_writes_nothing(
    cli: Run, proxy: FaultProxy, s3_bucket: str
) -> None:
    env = s3_env(proxy.url, s3_bucket)
    storage = storage_of(env)
    for key in ("a.jpg", "b/c.jpg"):
        storage.put(key, photo(640, 480), "image/jpeg", "no-cache")
    made = make_derivatives(env, "a.jpg", [("thumb", "jpg"), ("thumb", "webp"), ("200x", "jpg")])
    make_derivatives(env, "b/c.jpg", [("thumb", "png")])
    untouched = storage.get(made["200x.jpg"])

    bigger = {**env, "RESIZE_SIDECAR_PRESETS": "thumb=150x120-fill"}
    result = cli("regenerate", "--preset", "thumb", "--json", env=bigger)

    assert result.code == 0, result.err
    report = result.json()
    assert report["counts"] == {"rebuilt": 3}
    assert image_size(storage.get(made["thumb.webp"])) == (150, 120)
    assert storage.get(made["200x.jpg"]) == untouched
    writes = proxy.count("PUT")
    again = cli("regenerate", "--prefix", "a.jpg/", env=bigger)
    assert again.code == 0
    assert again.out.splitlines()[-1] == "regenerate: 3 current"
    assert proxy.count("PUT") == writes


def test_regenerate_after_a_quality_change_rewrites_only_the_selected_spec(cli: Run, tmp_path: Path) -> None:
    env = local_env(tmp_path / "media")
    storage = storage_of(env)
    storage.put("a.jpg", photo(640, 480), "image/jpeg", "no-cache")
    made = make_derivatives(env, "a.jpg", [("300x", "webp"), ("300x", "jpg"), ("300x-q90", "webp")])
    before = {spec: storage.get(key) for spec, key in made.items()}

    lower = {**env, "RESIZE_SIDECAR_QUALITY_WEBP": "40"}
    dry = cli("regenerate", "--spec", "300x.webp", "--dry-run", env=lower)
    assert dry.out.splitlines()[-1] == "regenerate: 1 would rebuild"
    assert {spec: storage.get(key) for spec, key in made.items()} == before

    result = cli("regenerate", "--spec", "300x.webp", env=lower)
    assert result.code == 0
    assert result.lines() == [f"rebuilt {made['300x.webp']}", "regenerate: 1 rebuilt"]
    after = storage.get(made["300x.webp"]) or b""
    assert len(after) < len(before["300x.webp"] or b"")
    assert storage.get(made["300x.jpg"]) == before["300x.jpg"]
    assert storage.get(made["300x-q90.webp"]) == before["300x-q90.webp"]


def test_derivatives_that_cannot_be_made_any_more_are_reported_and_deleted_only_when_asked(
    cli: Run, tmp_path: Path
) -> None:
    env = local_env(tmp_path / "media", RESIZE_SIDECAR_PRESETS="thumb=100x100-fill,card=300x")
    storage = storage_of(env)
    for key in ("kept.jpg", "gone.jpg"):
        storage.put(key, photo(640, 480), "image/jpeg", "no-cache")
    kept = make_derivatives(env, "kept.jpg", [("thumb", "jpg"), ("card", "jpg")])
    gone = make_derivatives(env, "gone.jpg", [("thumb", "jpg")])
    storage.delete("gone.jpg")
    signed_layout = format_path("kept.jpg", "50x", "jpg", "an-older-secret").removeprefix("/media/")
    storage.put(signed_layout, photo(50, 37), "image/jpeg", "no-cache")
    storage.put("_r/kept.jpg/not-a-derivative.txt", b"?", "text/plain", "no-cache")
    without_card = {**env, "RESIZE_SIDECAR_PRESETS": "thumb=100x100-fill"}

    report = cli("regenerate", "--json", env=without_card).json()
    statuses = {item["item"]: (item["status"], item["detail"]) for item in report["items"]}
    assert statuses[kept["card.jpg"]] == ("stale", "preset 'card' no longer exists")
    assert statuses[gone["thumb.jpg"]] == ("stale", "its original is gone")
    assert statuses[kept["thumb.jpg"]] == ("current", "")
    assert statuses[signed_layout] == ("skipped", "stored in the layout before: `resize-sidecar migrate` moves it")
    assert statuses["_r/kept.jpg/not-a-derivative.txt"] == ("skipped", "not a derivative's key")
    assert report["ok"] is True
    assert len(cli("regenerate", "--delete-stale", "--dry-run", env=without_card).items("would delete")) == 2
    assert storage.exists(kept["card.jpg"]) and storage.exists(gone["thumb.jpg"])

    deleted = cli("regenerate", "--delete-stale", env=without_card)
    assert deleted.code == 0
    assert "2 deleted" in deleted.out
    assert not storage.exists(kept["card.jpg"]) and not storage.exists(gone["thumb.jpg"])
    assert storage.exists(kept["thumb.jpg"]) and storage.exists(signed_layout)


def test_a_regenerate_cut_off_by_a_silent_store_exits_1_and_a_rerun_completes(
    cli: Run, proxy: FaultProxy, moto_endpoint: str, s3_bucket: str
) -> None:
    env = s3_env(moto_endpoint, s3_bucket)
    storage = storage_of(env)
    made = []
    for number in range(5):
        storage.put(f"p{number}.jpg", photo(400 + number, 300), "image/jpeg", "no-cache")
        made.append(make_derivatives(env, f"p{number}.jpg", [("thumb", "jpg")])["thumb.jpg"])
    bigger = {"RESIZE_SIDECAR_PRESETS": "thumb=120x90-fill"}
    proxy.fault = Fault.blackhole(methods=["PUT"], path=r"/_r/p2\.jpg/")

    cut = cli("regenerate", "--jobs", "2", env={**s3_env(proxy.url, s3_bucket), **bigger})
    assert cut.code == 1
    assert "stopped: S3 " in cut.out
    sizes = {image_size(storage.get(key)) for key in made}
    assert sizes <= {(100, 100), (120, 90)}, "a derivative was left half-written"

    rerun = cli("regenerate", "--json", env={**env, **bigger})
    assert rerun.code == 0
    assert sum(rerun.json()["counts"].values()) == 5
    assert {image_size(storage.get(key)) for key in made} == {(120, 90)}


def test_regenerate_refuses_a_spec_that_is_not_canonical_with_exit_2(cli: Run, tmp_path: Path) -> None:
    result = cli("regenerate", "--spec", "300x-fit.webp", env=local_env(tmp_path))
    assert result.code == 2
    assert "300x" in result.err and len(result.err.splitlines()) == 1


# setup-bucket


def test_setup_bucket_creates_and_configures_a_bucket_and_a_second_run_changes_nothing(
    cli: Run, moto_endpoint: str, s3_client: Any
) -> None:
    bucket = f"setup-{os.urandom(4).hex()}"
    env = s3_env(moto_endpoint, bucket, RESIZE_SIDECAR_S3_PREFIX="site/")
    options = [
        "--public-read",
        "--website",
        "--redirect-host",
        "resize.example.com",
        "--incoming-expiry",
        "3",
        "--cors",
        "https://app.example.com",
    ]

    first = cli("setup-bucket", bucket, *options, env=env)

    assert first.code == 0, first.err
    assert first.lines()[0] == f"created bucket: {bucket} (us-east-1)"
    assert first.out.splitlines()[-1] == "setup-bucket: 6 changed, 0 unchanged"
    access = s3_client.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert access == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": False,
        "RestrictPublicBuckets": False,
    }
    (statement,) = json.loads(s3_client.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
    assert (statement["Action"], statement["Resource"]) == ("s3:GetObject", f"arn:aws:s3:::{bucket}/site/_r/*")
    rules = s3_client.get_bucket_website(Bucket=bucket)["RoutingRules"]
    assert [rule["Condition"] for rule in rules] == [
        {"KeyPrefixEquals": "site/_r/", "HttpErrorCodeReturnedEquals": "404"},
        {"KeyPrefixEquals": "site/_r/", "HttpErrorCodeReturnedEquals": "403"},
    ]
    assert rules[0]["Redirect"] == {
        "HostName": "resize.example.com",
        "Protocol": "https",
        "HttpRedirectCode": "302",
        "ReplaceKeyPrefixWith": "media/_r/",
    }
    lifecycle = s3_client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert [(rule["Filter"], rule["Expiration"]) for rule in lifecycle] == [
        ({"Prefix": "site/incoming/"}, {"Days": 3}),
        ({"Prefix": "site/_r/incoming/"}, {"Days": 3}),
    ]
    (cors,) = s3_client.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert (cors["AllowedOrigins"], cors["AllowedMethods"]) == (["https://app.example.com"], ["GET", "HEAD"])

    second = cli("setup-bucket", bucket, *options, env=env)
    assert second.code == 0
    assert len(second.items("unchanged")) == 6
    assert second.out.splitlines()[-1] == "setup-bucket: 0 changed, 6 unchanged"


def test_setup_bucket_keeps_what_others_configured_and_replaces_only_its_own_rules(
    cli: Run, moto_endpoint: str, s3_bucket: str, s3_client: Any
) -> None:
    theirs = {
        "Sid": "Theirs",
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{s3_bucket}/public/*",
    }
    s3_client.put_bucket_policy(Bucket=s3_bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [theirs]}))
    logs = {"ID": "logs", "Filter": {"Prefix": "logs/"}, "Status": "Enabled", "Expiration": {"Days": 30}}
    s3_client.put_bucket_lifecycle_configuration(Bucket=s3_bucket, LifecycleConfiguration={"Rules": [logs]})
    env = s3_env(moto_endpoint, s3_bucket)

    assert cli("setup-bucket", s3_bucket, "--public-read", "--incoming-expiry", "2", env=env).code == 0
    changed = cli("setup-bucket", s3_bucket, "--incoming-expiry", "5", "--json", env=env).json()

    statements = json.loads(s3_client.get_bucket_policy(Bucket=s3_bucket)["Policy"])["Statement"]
    assert [statement["Sid"] for statement in statements] == ["Theirs", "ResizeSidecarReadDerivatives"]
    rules = s3_client.get_bucket_lifecycle_configuration(Bucket=s3_bucket)["Rules"]
    assert {rule["ID"]: rule["Expiration"]["Days"] for rule in rules} == {
        "logs": 30,
        "resize-sidecar-incoming": 5,
        "resize-sidecar-incoming-derivatives": 5,
    }
    assert [(change["part"], change["status"]) for change in changed["changes"]] == [
        ("bucket", "unchanged"),
        ("lifecycle", "set"),
    ]


def test_setup_bucket_configures_only_what_is_asked_and_a_dry_run_creates_nothing(
    cli: Run, moto_endpoint: str, s3_client: Any
) -> None:
    bucket = f"plain-{os.urandom(4).hex()}"
    env = s3_env(moto_endpoint, bucket)
    dry = cli("setup-bucket", bucket, "--public-read", "--dry-run", env=env)
    assert dry.lines()[:3] == [
        f"would create bucket: {bucket} (us-east-1)",
        "would set public access block: public ACLs blocked, public bucket policies allowed",
        f"would set bucket policy: anyone may read arn:aws:s3:::{bucket}/_r/* (originals stay private)",
    ]
    assert bucket not in [item["Name"] for item in s3_client.list_buckets()["Buckets"]]

    assert cli("setup-bucket", bucket, env=env).lines() == [
        f"created bucket: {bucket} (us-east-1)",
        "setup-bucket: 1 changed, 0 unchanged",
    ]
    with pytest.raises(s3_client.exceptions.ClientError, match="NoSuchBucketPolicy"):
        s3_client.get_bucket_policy(Bucket=bucket)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(("--redirect-host", "resize.example.com"), "add --website", id="redirect without website"),
        pytest.param(("--website", "--redirect-host", "https://h/path"), "--redirect-host", id="redirect with a path"),
        pytest.param(("--cors", "app.example.com"), "--cors", id="cors origin without scheme"),
    ],
)
def test_setup_bucket_refuses_options_that_do_not_fit_with_exit_2(
    cli: Run, options: tuple[str, ...], message: str, moto_endpoint: str, s3_bucket: str
) -> None:
    result = cli("setup-bucket", s3_bucket, *options, env=s3_env(moto_endpoint, s3_bucket))
    assert result.code == 2
    assert message in result.err


def test_setup_bucket_against_a_store_that_does_not_answer_exits_1_with_one_line(cli: Run) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{closed.getsockname()[1]}"
    result = cli("setup-bucket", "media", "--public-read", env=s3_env(endpoint, "media"))
    assert result.code == 1
    assert result.out == ""
    assert len(result.err.splitlines()) == 1 and "S3 bucket 'media'" in result.err


# check


def test_check_reports_a_healthy_local_setup_format_by_format_and_exits_0(cli: Run, tmp_path: Path) -> None:
    result = cli("check", "--json", env=local_env(tmp_path / "media"))
    assert result.code == 0, result.out
    report = result.json()
    findings = {finding["name"]: finding for finding in report["findings"]}
    assert report["healthy"] is True
    assert findings["storage"]["status"] == "ok" and "written, read back and deleted" in findings["storage"]["detail"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", findings["libvips"]["detail"])
    assert findings["format avif"] == {
        "name": "format avif",
        "status": "ok",
        "detail": "written and read back (heifload)",
    }
    assert findings["nginx"]["status"] == "ok"
    assert findings["secrets"]["status"] == "warn"  # the test secret has 28 characters
    assert [path for path in (tmp_path / "media").rglob("*") if path.is_file()] == []  # the test object is gone


@pytest.mark.parametrize(
    ("secrets", "status"),
    [
        pytest.param("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "fail", id="one letter repeated"),
        pytest.param("short-secret", "fail", id="under 16 characters"),
        pytest.param("8f3c2a91d0b7e6f54c3b2a190d8e7f6a5b4c3d2e1f0a9b8c", "ok", id="48 hex digits"),
    ],
)
def test_check_judges_the_strength_of_every_secret(cli: Run, tmp_path: Path, secrets: str, status: str) -> None:
    result = cli("check", env={**local_env(tmp_path / "media"), "RESIZE_SIDECAR_SECRETS": secrets})
    line = next(line for line in result.out.splitlines() if " secrets " in line)
    assert line.startswith(status)
    assert result.code == (1 if status == "fail" else 0)
    assert secrets not in result.out


def test_check_without_a_secret_fails_in_the_words_of_every_command_that_needs_one(cli: Run, tmp_path: Path) -> None:
    env = {**local_env(tmp_path / "media"), "RESIZE_SIDECAR_SECRETS": ""}
    checked = cli("check", env=env)
    signed = cli("url", "cat.jpg", "200x.webp", env=env)
    words = "RESIZE_SIDECAR_SECRETS (secrets): a secret is required to sign and verify derivative URLs"
    assert (checked.code, checked.lines()[1]) == (1, f"fail secrets {words}")
    assert (signed.code, signed.out, signed.err) == (2, "", f"resize-sidecar: {words}\n")


def test_check_fails_a_storage_that_reads_back_other_bytes_than_it_was_given(tmp_path: Path) -> None:
    class Garbling(LocalStorage):
        def get(self, key: str, max_bytes: int | None = None) -> bytes | None:
            data = super().get(key, max_bytes)
            return None if data is None else data[::-1]

    storage = Garbling(tmp_path)
    findings = {finding.name: finding for finding in check(settings_of(local_env(tmp_path)), storage)}
    assert (findings["storage"].status, findings["storage"].detail) == (
        "fail",
        f"{storage!r}: a test object read back different bytes",
    )
    assert [path for path in tmp_path.rglob("*") if path.is_file()] == []  # deleted all the same


def test_check_fails_with_exit_1_when_local_storage_is_not_a_folder(cli: Run, tmp_path: Path) -> None:
    result = cli("check", env={**local_env(tmp_path), "RESIZE_SIDECAR_LOCAL_ROOT": str(tmp_path / "missing")})
    assert result.code == 1
    assert re.search(r"^fail  storage .* is not a folder$", result.out, re.MULTILINE)
    assert result.out.splitlines()[-1].startswith("check: NOT healthy")


# the commands' help and the compose example


@pytest.mark.parametrize("command", ["upload", "setup-bucket", "regenerate", "migrate", "check"])
def test_every_operations_command_explains_itself_with_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([command, "--help"])
    assert exit_.value.code == 0
    assert "--json" in capsys.readouterr().out


def test_the_compose_example_runs_commands_the_cli_accepts_with_settings_the_code_declares() -> None:
    compose = yaml.safe_load((REPO / "deploy/compose.yaml").read_text())
    services = compose["services"]
    declared = {f"RESIZE_SIDECAR_{name.upper()}" for name in Settings.__dataclass_fields__}
    commands = []
    for service in services.values():
        command = service.get("command", [])
        if command[:2] == ["sh", "-c"]:
            command = shlex.split(command[2].partition(">")[0])
        if command[:1] == ["resize-sidecar"]:
            build_parser().parse_args(command[1:])
            commands.append(command[1])
        for name in service.get("environment", {}):
            assert not name.startswith("RESIZE_SIDECAR_") or name in declared, f"{name} is not a setting"
        if "build" in service:
            assert (REPO / "deploy" / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    assert sorted(commands) == ["nginx", "serve", "setup-bucket"]
    render, _, rest = services["nginx-config"]["command"][2].partition("> ")
    rendered = rest.split()[0]
    assert services["nginx"]["command"][:5] == ["nginx", "-p", str(Path(rendered).parent) + "/", "-c", rendered]
    # The njs scripts the configuration imports are copied beside it, into the volume the nginx service reads.
    assert f"--scripts {Path(rendered).parent} --copy-scripts" in render
    assert services["sidecar"]["command"] == json.loads(
        re.search(r"^CMD (\[.*\])$", (REPO / "Dockerfile").read_text(), re.MULTILINE)[1]  # type: ignore[index]
    )
