"""Importing a module changes nothing in the process; the commands and the server set libvips' threads when they start.

Each case runs in a fresh interpreter: libvips reads ``VIPS_CONCURRENCY`` once, when it starts, and keeps what
``concurrency_set`` was given for the life of the process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import REPO, SECRET

#: Variables the server's start sets for its workers: absent from every fresh interpreter here.
SERVER_VARIABLES = ("VIPS_CONCURRENCY", "PROMETHEUS_MULTIPROC_DIR", "MALLOC_ARENA_MAX")


def run_python(code: str, **env: str) -> str:
    clean = {name: value for name, value in os.environ.items() if name not in SERVER_VARIABLES}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env={**clean, **env}, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_importing_every_ops_and_media_module_leaves_libvips_threads_and_the_environment_as_they_were() -> None:
    code = """
import importlib, json, os, pkgutil
import pyvips
import resize_sidecar.media, resize_sidecar.ops

pyvips.concurrency_set(3)  # a count no module of the project chooses
environment = dict(os.environ)
names = [
    module.name
    for package in (resize_sidecar.media, resize_sidecar.ops)
    for module in pkgutil.iter_modules(package.__path__, package.__name__ + ".")
]
for name in names:
    importlib.import_module(name)
# The one deliberate exception: imaging blocks libvips' untrusted loaders before any code can use pyvips.
environment["VIPS_BLOCK_UNTRUSTED"] = "1"
changed = sorted(name for name in {*environment, *os.environ} if environment.get(name) != os.environ.get(name))
print(json.dumps({"modules": names, "threads": pyvips.concurrency_get(), "changed": changed}))
"""
    state = json.loads(run_python(code))
    assert {"resize_sidecar.ops.cli", "resize_sidecar.ops.gunicorn_conf", "resize_sidecar.media.imaging"} <= set(
        state["modules"]
    )
    assert (state["threads"], state["changed"]) == (3, [])


@pytest.mark.parametrize("command", ["upload", "regenerate", "check"])
def test_the_operations_render_with_one_libvips_thread_as_the_workers_do(command: str, tmp_path: Path) -> None:
    # AVIF output differs with the thread count, and regenerate compares its renders with the workers' byte for byte.
    (tmp_path / "folder").mkdir()
    arguments = {"upload": [str(tmp_path / "folder")], "regenerate": [], "check": []}[command]
    code = f"""
import contextlib, io, pyvips
from resize_sidecar.ops.cli import main

pyvips.concurrency_set(3)
with contextlib.redirect_stdout(io.StringIO()):
    code = main({[command, "--json", *arguments]!r})
print(code, pyvips.concurrency_get())
"""
    media = tmp_path / "media"
    media.mkdir()
    out = run_python(code, RESIZE_SIDECAR_SECRETS=SECRET, RESIZE_SIDECAR_LOCAL_ROOT=str(media))
    assert out == "0 1"


def test_the_server_gives_its_workers_one_libvips_thread_and_a_metrics_folder_it_removes_at_exit() -> None:
    code = """
import json, os
from resize_sidecar.ops import gunicorn_conf

before = {name: os.environ.get(name) for name in ("VIPS_CONCURRENCY", "PROMETHEUS_MULTIPROC_DIR")}
gunicorn_conf.on_starting(None)
started = {name: os.environ.get(name) for name in before}
folder = started["PROMETHEUS_MULTIPROC_DIR"]
made = os.path.isdir(folder)
gunicorn_conf.on_exit(None)
print(json.dumps({"before": before, "threads": started["VIPS_CONCURRENCY"], "made": made,
                  "removed": not os.path.exists(folder)}))
"""
    state = json.loads(run_python(code))
    expected = {"VIPS_CONCURRENCY": None, "PROMETHEUS_MULTIPROC_DIR": None}
    assert state == {"before": expected, "threads": "1", "made": True, "removed": True}


def test_the_server_starts_from_empty_metric_files_in_a_metrics_folder_it_was_given_and_leaves_that_folder(
    tmp_path: Path,
) -> None:
    (tmp_path / "counter_1234.db").write_bytes(b"left by an earlier run")
    (tmp_path / "notes.txt").write_text("not a metric file\n")
    code = """
from resize_sidecar.ops import gunicorn_conf

gunicorn_conf.on_starting(None)
gunicorn_conf.on_exit(None)
print("done")
"""
    assert run_python(code, PROMETHEUS_MULTIPROC_DIR=str(tmp_path)) == "done"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]
