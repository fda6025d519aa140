"""regenerate tells a current derivative from its recorded recipe without rendering it, renders what changed, and
takes one shard of the work (``--shard K/N``); the Kubernetes Indexed Job example runs a command the CLI accepts.

Renders are counted by the originals the miss path reads (``resize_sidecar_original_reads``): regenerate reads an
original only to render one of its derivatives.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from resize_sidecar.core.errors import SettingsError
from resize_sidecar.core.settings import load
from resize_sidecar.core.signing import format_path
from resize_sidecar.media.derive import ORIGINAL_READS, Deriver
from resize_sidecar.media.local import LocalStorage
from resize_sidecar.ops.cli import build_parser
from resize_sidecar.ops.shards import INDEX_ENV, Shard
from tests.support.commands import Run, local_env
from tests.support.images import image_size, photo
from tests.support.in_process import counter
from tests.support.servers import REPO, SECRET

SPECS = [("thumb", "jpg"), ("thumb", "webp"), ("300x", "webp"), ("300x-q90", "webp"), ("200x", "png")]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return local_env(tmp_path / "media")


@pytest.fixture
def made(env: dict[str, str]) -> dict[str, str]:
    """Two originals and the derivatives of SPECS of each, made by the miss path; their keys, by original and spec."""
    settings = load(environ=env)
    storage = LocalStorage(settings.local_root)
    deriver = Deriver(settings, storage)
    keys = {}
    for original in ("a.jpg", "trips/b.jpg"):
        storage.put(original, photo(640, 480), "image/jpeg", "no-cache")
        for spec, fmt in SPECS:
            keys[f"{original} {spec}.{fmt}"] = deriver.derive(format_path(original, spec, fmt, SECRET)).storage_key
    return keys


def files(env: dict[str, str]) -> dict[str, int]:
    """Every file under the storage root (metadata files included), with its modification time."""
    root = Path(env["RESIZE_SIDECAR_LOCAL_ROOT"])
    return {path.relative_to(root).as_posix(): path.stat().st_mtime_ns for path in root.rglob("*") if path.is_file()}


def renders() -> float:
    return counter(ORIGINAL_READS)


def test_regenerate_of_an_unchanged_store_renders_nothing_and_writes_nothing(
    cli: Run, env: dict[str, str], made: dict[str, str]
) -> None:
    before, rendered = files(env), renders()
    result = cli("regenerate", "--json", env=env)
    assert result.code == 0, result.err
    report = result.json()
    assert report["counts"] == {"current": 10}
    assert sorted((item["item"], item["status"], item["detail"]) for item in report["items"]) == sorted(
        (key, "current", "") for key in made.values()
    )
    assert renders() == rendered
    assert files(env) == before


def test_derivatives_stored_without_a_recipe_are_rendered_once_recorded_and_then_skipped(
    cli: Run, env: dict[str, str], made: dict[str, str]
) -> None:
    storage = LocalStorage(env["RESIZE_SIDECAR_LOCAL_ROOT"])
    unrecorded = [made["a.jpg thumb.jpg"], made["trips/b.jpg 300x.webp"]]
    for key in unrecorded:
        storage.put(key, storage.get(key) or b"", "image/jpeg", "unused")  # as stored before recipes were
    kept = {key: storage.get(key) for key in unrecorded}

    rendered = renders()
    dry = cli("regenerate", "--dry-run", "--json", env=env).json()
    assert (dry["counts"], renders() - rendered) == ({"current": 10}, 2)
    assert [storage.head(key) for key in unrecorded] == [{}, {}]

    first = cli("regenerate", "--json", env=env).json()
    assert first["counts"] == {"current": 10}
    recorded = sorted(item["item"] for item in first["items"] if item["detail"] == "its recipe is recorded now")
    assert recorded == sorted(unrecorded)
    assert renders() - rendered == 4
    assert {key: storage.get(key) for key in unrecorded} == kept
    assert all((storage.head(key) or {}).get("recipe") for key in unrecorded)

    before = files(env)
    again = cli("regenerate", "--json", env=env).json()
    assert {(item["status"], item["detail"]) for item in again["items"]} == {("current", "")}
    assert (renders() - rendered, files(env)) == (4, before)


def test_a_quality_change_renders_only_the_derivatives_it_changes(
    cli: Run, env: dict[str, str], made: dict[str, str]
) -> None:
    rendered = renders()
    result = cli("regenerate", "--json", env={**env, "RESIZE_SIDECAR_QUALITY_WEBP": "40"}).json()
    # thumb.webp and 300x.webp of each original; 300x-q90.webp names its own quality.
    changed = sorted(made[f"{original} {spec}"] for original in ("a.jpg", "trips/b.jpg") for spec in
                     ("thumb.webp", "300x.webp"))  # fmt: skip
    assert sorted(item["item"] for item in result["items"] if item["status"] == "rebuilt") == changed
    assert (result["counts"], renders() - rendered) == ({"current": 6, "rebuilt": 4}, 4)


def test_an_original_replaced_behind_the_programs_back_has_its_derivatives_rebuilt(
    cli: Run, env: dict[str, str], made: dict[str, str]
) -> None:
    storage = LocalStorage(env["RESIZE_SIDECAR_LOCAL_ROOT"])
    storage.put("a.jpg", photo(480, 640), "image/jpeg", "no-cache")  # not through upload or the API
    result = cli("regenerate", "--json", env=env).json()
    rebuilt = sorted(item["item"] for item in result["items"] if item["status"] == "rebuilt")
    # The thumbnails are the same 100x100 crop size either way, but of other pixels.
    assert rebuilt == sorted(made[f"a.jpg {spec}.{fmt}"] for spec, fmt in SPECS)
    assert image_size(storage.get(made["a.jpg 300x.webp"])) == (300, 400)
    assert (storage.head(made["a.jpg 300x.webp"]) or {})["source"] == storage.version("a.jpg")


def test_force_renders_every_derivative_and_writes_none_that_is_current(
    cli: Run, env: dict[str, str], made: dict[str, str]
) -> None:
    before, rendered = files(env), renders()
    result = cli("regenerate", "--force", "--json", env=env).json()
    assert (result["counts"], renders() - rendered) == ({"current": 10}, 10)
    assert files(env) == before


def test_a_derivative_whose_original_is_gone_is_stale_without_a_render(
    cli: Run, env: dict[str, str], made: dict[str, str]
) -> None:
    LocalStorage(env["RESIZE_SIDECAR_LOCAL_ROOT"]).delete("a.jpg")
    rendered = renders()
    result = cli("regenerate", "--json", env=env).json()
    assert result["counts"] == {"current": 5, "stale": 5}
    assert {item["detail"] for item in result["items"] if item["status"] == "stale"} == {"its original is gone"}
    assert renders() == rendered


def test_shards_split_the_derivatives_by_original_each_exactly_once(
    cli: Run, env: dict[str, str], made: dict[str, str]
) -> None:
    LocalStorage(env["RESIZE_SIDECAR_LOCAL_ROOT"]).put("_r/a.jpg/not-a-derivative.txt", b"?", "text/plain", "x")
    shard_of_item: dict[str, int] = {}
    for index in range(3):
        report = cli("regenerate", "--shard", f"{index}/3", "--json", env=env).json()
        for item in report["items"]:
            assert item["item"] not in shard_of_item
            shard_of_item[item["item"]] = index
    assert sorted(shard_of_item) == sorted([*made.values(), "_r/a.jpg/not-a-derivative.txt"])
    for original in ("a.jpg", "trips/b.jpg"):
        shards = {shard_of_item[key] for name, key in made.items() if name.startswith(f"{original} ")}
        assert shards == {index for index in range(3) if Shard(index, 3).owns(original)}


def test_the_partition_is_stable_across_processes_and_total() -> None:
    # Pinned: a partition that changed between machines (Python's hash() does) would write some objects twice.
    assert [index for index in range(4) if Shard(index, 4).owns("photos/cat.jpg")] == [3]
    assert [index for index in range(7) if Shard(index, 7).owns("日本/写真.jpg")] == [4]
    keys = [f"photos/{number}.jpg" for number in range(2000)]
    counts = [sum(Shard(index, 4).owns(key) for key in keys) for index in range(4)]
    assert sum(counts) == 2000 and min(counts) > 400
    assert all(Shard().owns(key) for key in keys)


@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [("0/1", {}, Shard(0, 1)), ("3/4", {}, Shard(3, 4)), ("index/4", {INDEX_ENV: "2"}, Shard(2, 4))],
)
def test_a_shard_is_k_of_n_or_the_indexed_jobs_index(text: str, environ: dict[str, str], expected: Shard) -> None:
    assert Shard.parse(text, environ) == expected


@pytest.mark.parametrize(
    ("text", "environ"),
    [("4/4", {}), ("1/1", {}), ("0/0", {}), ("-1/3", {}), ("1", {}), ("a/b", {}), ("1/2/3", {}), ("", {}),
     ("index/4", {}), ("index/4", {INDEX_ENV: "4"}), ("index/4", {INDEX_ENV: ""})],
)  # fmt: skip
def test_anything_else_is_refused(text: str, environ: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match="--shard"):
        Shard.parse(text, environ)


@pytest.mark.parametrize("command", ["regenerate", "upload"])
def test_a_bad_shard_is_a_usage_mistake_with_exit_2_and_nothing_done(
    cli: Run, env: dict[str, str], tmp_path: Path, command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(INDEX_ENV, raising=False)
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "a.jpg").write_bytes(photo(40, 30))
    where = [str(tmp_path / "folder")] if command == "upload" else []
    for shard, message in [
        ("4/4", "resize-sidecar: --shard: expected K/N with 0 <= K < N (or index/N), got '4/4'\n"),
        ("index/4", f"resize-sidecar: --shard index/4: {INDEX_ENV} is not set (a Kubernetes Indexed Job sets it)\n"),
    ]:
        result = cli(command, *where, "--shard", shard, env=env)
        assert (result.code, result.out, result.err) == (2, "", message)
    assert files(env) == {}


def test_an_upload_shard_uploads_its_files_and_keeps_its_own_manifest(
    cli: Run, env: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    names = [f"p{number}.jpg" for number in range(8)]
    for name in names:
        (folder / name).write_bytes(photo(40, 30))
    uploaded = []
    for index in range(2):
        result = cli("upload", str(folder), "--shard", f"{index}/2", "--json", env=env)
        assert result.code == 0, result.err
        uploaded += [item["item"] for item in result.json()["items"] if item["status"] == "uploaded"]
        assert result.json()["notes"] == [f"wrote .resize-sidecar/upload/manifest.{index}-of-2.json"]
    assert sorted(uploaded) == names
    storage = LocalStorage(env["RESIZE_SIDECAR_LOCAL_ROOT"])
    assert storage.get(".resize-sidecar/upload/manifest.json") is None
    again = cli("upload", str(folder), "--shard", "1/2", "--json", env=env).json()
    assert {item["status"] for item in again["items"]} == {"unchanged"} and again["notes"] == []


def test_the_indexed_job_example_runs_a_command_the_cli_accepts_on_as_many_shards_as_pods(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    documents = list(yaml.safe_load_all((REPO / "deploy/k8s/regenerate-job.yaml").read_text()))
    (job,) = [document for document in documents if document["kind"] == "Job"]
    (config,) = [document for document in documents if document["kind"] == "ConfigMap"]
    spec = job["spec"]
    (container,) = spec["template"]["spec"]["containers"]
    command = container["command"]
    assert spec["completionMode"] == "Indexed"
    assert command[:2] == ["resize-sidecar", "regenerate"]
    shard = command[command.index("--shard") + 1]
    index, _, count = shard.partition("/")
    assert (index, int(count)) == ("index", spec["completions"]) and spec["parallelism"] == spec["completions"]
    for pod in range(spec["completions"]):
        monkeypatch.setenv(INDEX_ENV, str(pod))
        args = build_parser().parse_args(command[1:])
        assert Shard.parse(args.shard) == Shard(pod, spec["completions"])
    declared = {f"RESIZE_SIDECAR_{name.upper()}" for name in load(environ={}).__dataclass_fields__}
    assert set(config["data"]) <= declared
    assert {source["configMapRef"]["name"] for source in container["envFrom"] if "configMapRef" in source} == {
        config["metadata"]["name"]
    }
    assert any("secretRef" in source for source in container["envFrom"])
