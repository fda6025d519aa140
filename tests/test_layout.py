"""The rooms' import rules (pyproject's [tool.importlinter] contracts): the core imports nothing of the other rooms,
media imports only the core, web never imports ops, the middleware imports only the core, no import cycles.

import-linter reads packages from their folders, and the folder middleware/ is installed as resize_sidecar.middleware
(package-dir). So the packages are laid out as the wheel has them, in a temporary folder, and import-linter runs
there in a fresh interpreter: a broken rule fails with import-linter's report, which names each offending import and
its line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"


def package_folders() -> dict[str, Path]:
    """Each package the wheel carries, by import name, with the folder its modules come from."""
    setuptools = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]
    mapped: dict[str, str] = setuptools.get("package-dir", {})
    folders = {}
    for package in setuptools["packages"]:
        parts = package.split(".")
        # package-dir's rule: the longest mapped start of the name gives a folder, the rest of the name folders in it.
        cut = next(cut for cut in range(len(parts), -1, -1) if cut == 0 or ".".join(parts[:cut]) in mapped)
        folders[package] = ROOT.joinpath(mapped.get(".".join(parts[:cut]), ""), *parts[cut:])
    return folders


def lay_out_as_installed(target: Path) -> None:
    for package, folder in package_folders().items():
        destination = target.joinpath(*package.split("."))
        destination.mkdir(parents=True, exist_ok=True)
        for module in folder.glob("*.py"):
            shutil.copyfile(module, destination / module.name)


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
