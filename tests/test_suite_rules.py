"""The suite's own rules: test modules import no other test module and no conftest (what they share is in
tests/support), and importing a conftest or any of tests/support changes nothing in the environment."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from tests.support.servers import REPO

TESTS = REPO / "tests"


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_no_module_of_the_suite_imports_a_test_module_or_a_conftest() -> None:
    offending = {
        f"{path.relative_to(REPO)}: {name}"
        for path in TESTS.rglob("*.py")
        for name in imported_modules(path)
        if name.startswith("tests.")
        and any(part.startswith("test_") or part == "conftest" for part in name.split(".")[1:])
        and not name.startswith("tests.fuzz.")  # the fuzz targets are scripts the fuzz tests run
    }
    assert offending == set()


def test_importing_the_conftests_and_the_support_package_changes_no_environment_variable() -> None:
    modules = sorted(
        ".".join(path.relative_to(REPO).with_suffix("").parts)
        for path in [*TESTS.rglob("conftest.py"), *(TESTS / "support").glob("*.py")]
        if path.name != "rewrite_app.py"  # the WSGI app of a test's gunicorn: it reads its pages' file when imported
    )
    # The program's own modules go first: what they set when imported (libvips' untrusted loaders blocked) is theirs.
    script = (
        "import importlib, json, os, sys\n"
        "import resize_sidecar.middleware, resize_sidecar.ops.cli, resize_sidecar.web.app\n"
        "before = dict(os.environ)\n"
        "for name in sys.argv[1:]:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps({name: [before.get(name), os.environ.get(name)] for name in before.keys() ^ os.environ.keys()"
        " | {name for name in before if before[name] != os.environ.get(name)}}))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "RESIZE_SIDECAR_SECRETS": "a-shell-setting", "HOME": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", script, *modules], capture_output=True, text=True, cwd=REPO, env=env, check=True
    )
    assert len(modules) > 10
    assert json.loads(done.stdout) == {}
