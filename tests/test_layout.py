"""The rooms' import rules (pyproject's [tool.importlinter] contracts): the core imports nothing of the other rooms,
media imports only the core, web never imports ops, the middleware imports only the core, no import cycles.

import-linter reads packages from their folders, so it runs, in a fresh interpreter, in a folder laid out as the wheel
has them (tests.support.installed): a broken rule fails with import-linter's report, which names each offending
import and its line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.installed import PYPROJECT, ROOT, lay_out_as_installed, package_folders


def test_every_package_folder_is_one_the_wheel_carries() -> None:
    listed = {folder.resolve() for folder in package_folders().values()}
    on_disk = {
        init.parent.resolve()
        for top in ("resize_sidecar", "middleware")
        for init in (ROOT / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }

    assert on_disk - listed == set(), "package folders missing from pyproject's [tool.setuptools] packages"


def test_the_rooms_import_only_downward_and_without_cycles(tmp_path: Path) -> None:
    lay_out_as_installed(tmp_path)
    environ = {name: value for name, value in os.environ.items() if not name.startswith("PYTHON")}
    environ["COLUMNS"] = "200"  # one import chain a line
    lint_imports = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"]
    finished = subprocess.run(
        [*lint_imports, str(PYPROJECT), "--no-cache", "--no-logo"],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert finished.returncode == 0, f"import rules broken:\n{finished.stdout}{finished.stderr}"
    assert "Contracts: 4 kept, 0 broken." in finished.stdout
