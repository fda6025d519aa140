"""The Dockerfile: the instructions it runs, and what it copies to build the package."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from tests.support.servers import REPO

#: What the Dockerfile copies to build the package (a copy also leaves out build/ and *.egg-info of a checkout).
SOURCES = ("pyproject.toml", "README.md", "resize_sidecar", "middleware", "deploy/nginx")


def source_tree(tree: Path) -> Path:
    """A copy of what the Dockerfile copies, at ``tree``, for pip to build from."""
    for name in SOURCES:
        source, copy = REPO / name, tree / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, copy, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copyfile(source, copy)
    return tree


def dockerfile_instruction(name: str) -> list[str]:
    """The JSON array of the Dockerfile's instruction ``name`` (``CMD``, or ``HEALTHCHECK``'s command)."""
    text = (REPO / "Dockerfile").read_text()
    match = re.search(rf"^{name}\s+(?:--\S+\s+)*\\?\s*(?:CMD\s+)?(\[.*\])\s*$", text, re.MULTILINE)
    assert match, f"no {name} in the Dockerfile"
    return list(json.loads(match[1]))
