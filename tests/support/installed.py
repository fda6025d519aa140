"""The packages as the wheel has them, laid out in a folder of symbolic links to the source files.

The folder middleware/ is installed as resize_sidecar.middleware (pyproject's package-dir), and tools that read
packages from folders (import-linter, mypy) cannot follow that mapping: they read this folder instead.

``python -m tests.support.installed FOLDER`` lays it out (make lint runs mypy there).
"""

from __future__ import annotations

import shutil
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
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
    """Fill ``target`` with one folder per package and a link per module; what was there before goes."""
    folders = package_folders()
    for top in {package.partition(".")[0] for package in folders}:
        shutil.rmtree(target / top, ignore_errors=True)
    for package, folder in folders.items():
        destination = target.joinpath(*package.split("."))
        destination.mkdir(parents=True, exist_ok=True)
        for module in folder.glob("*.py"):
            (destination / module.name).symlink_to(module)


if __name__ == "__main__":
    lay_out_as_installed(Path(sys.argv[1]))
