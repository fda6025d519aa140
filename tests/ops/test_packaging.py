"""What an installed package carries: the nginx configuration renders from files inside it, not from a checkout."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.support.dockerfile import source_tree
from tests.support.servers import REPO


def test_the_wheel_carries_every_nginx_template_and_the_signing_script(tmp_path: Path) -> None:
    # The Dockerfile installs the package (not editable): a file left out of the wheel is missing from the image.
    tree = source_tree(tmp_path / "tree")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(tmp_path), str(tree)],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("resize_sidecar-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        packaged = {Path(name).name for name in archive.namelist() if "/nginx_templates/" in name}
    assert packaged == {path.name for path in (REPO / "deploy" / "nginx").iterdir() if path.is_file()}
