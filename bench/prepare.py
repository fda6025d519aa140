"""What a run needs besides the main virtualenv: wrk, thumbor in a virtualenv of its own, and ipx from npm.

thumbor pins ``Pillow<13`` and an old tornado, so it never shares the sidecar's environment. Both are installed once
and reused (``bench/work/`` is not committed); what cannot be installed is reported, and the run goes on without it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from common import log

#: The thumbor measured against; bump deliberately (its numbers are only comparable at one version).
THUMBOR_REQUIREMENT = "thumbor==7.8.0"


def ensure_wrk() -> str | None:
    """``None`` when wrk is there (installed now if missing and we are root), else why not."""
    if shutil.which("wrk"):
        return None
    if os.geteuid() != 0:
        return "wrk is not installed and this is not root (apt-get install wrk)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        finished = subprocess.run(command, env=env, capture_output=True, text=True)
        if finished.returncode != 0:
            return f"{' '.join(command)} failed: {finished.stderr.strip()[-300:]}"
    return None if shutil.which("wrk") else "apt-get installed wrk but it is not on PATH"


def peer(
    name: str,
    measured: bool,
    install: Callable[[], tuple[Path | None, str]],
    versions: dict[str, str],
    notes: list[str],
) -> Path | None:
    """A peer's installation from ``install`` (``None`` when not measured, with a note why); its version noted."""
    if not measured:
        versions[name] = "not measured in this mode"
        return None
    log(f"{name}: checking its installation")
    found, said = install()
    versions[name] = said
    if found is None:
        notes.append(f"{name} was not measured: {said}")
    return found


def ensure_thumbor(venv: Path) -> tuple[Path | None, str]:
    """thumbor's virtualenv and its version, or ``None`` and why it could not be installed."""
    marker = venv / ".bench-installed"
    if not (marker.exists() and marker.read_text() == THUMBOR_REQUIREMENT):
        shutil.rmtree(venv, ignore_errors=True)
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", THUMBOR_REQUIREMENT],
        ]
        for command in steps:
            finished = subprocess.run(command, capture_output=True, text=True)
            if finished.returncode != 0:
                return None, f"`{' '.join(command[-2:])}` failed: {finished.stderr.strip()[-400:]}"
        marker.write_text(THUMBOR_REQUIREMENT)
    check = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import thumbor, PIL, PIL.features as f; print(thumbor.__version__, PIL.__version__, f.check('avif'))",
        ],
        capture_output=True,
        text=True,
    )
    if check.returncode != 0:
        return None, f"thumbor does not import: {check.stderr.strip()[-400:]}"
    thumbor_version, pillow_version, avif = check.stdout.split()
    return venv, f"thumbor {thumbor_version} (Pillow {pillow_version}, AVIF {'yes' if avif == 'True' else 'no'})"


def thumbor_config(media_root: Path) -> str:
    """thumbor at its best for this comparison: file loader, nothing stored or cached, unsafe URLs."""
    return f"""# thumbor's configuration in the benchmark (written by bench/prepare.py).
LOADER = "thumbor.loaders.file_loader"
FILE_LOADER_ROOT_PATH = {str(media_root)!r}
# Nothing kept between requests: every request loads and transforms, as a sidecar miss does.
STORAGE = "thumbor.storages.no_storage"
RESULT_STORAGE = None
ALLOW_UNSAFE_URL = True
ENGINE = "thumbor.engines.pil"
QUALITY = 80
# libvips' AVIF effort 2 (the sidecar's) is aom speed 7; Pillow's default would be speed 6, slower.
AVIF_SPEED = 7
"""


def thumbor_workload_config(result_root: Path) -> str:
    """thumbor as a site runs it for the workload: originals over HTTP from the bucket, every result stored."""
    return f"""# thumbor's configuration in the workload benchmark (written by bench/prepare.py).
LOADER = "thumbor.loaders.http_loader"
STORAGE = "thumbor.storages.no_storage"
# Each result is stored once and served from storage afterwards, as the sidecar's derivatives are.
RESULT_STORAGE = "thumbor.result_storages.file_storage"
RESULT_STORAGE_FILE_STORAGE_ROOT_PATH = {str(result_root)!r}
RESULT_STORAGE_STORES_UNSAFE = True
RESULT_STORAGE_EXPIRATION_SECONDS = 0
ALLOW_UNSAFE_URL = True
ENGINE = "thumbor.engines.pil"
QUALITY = 80
"""


#: ipx's package.json and server script, copied to the folder where npm installs them.
IPX_SOURCES = Path(__file__).resolve().parent / "ipx"

#: Prints what ensure_ipx reports: the installed ipx, its sharp and libvips.
IPX_VERSIONS = """
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
const sharp = createRequire(import.meta.url + "/")("sharp");
const ipx = JSON.parse(readFileSync("node_modules/ipx/package.json", "utf8"));
const { sharp: sharpVersion, vips } = sharp.versions;
console.log(`ipx ${ipx.version} (sharp ${sharpVersion}, libvips ${vips}, node ${process.version})`);
"""


def ensure_ipx(folder: Path) -> tuple[Path | None, str]:
    """ipx (sharp) installed from the npm registry into ``folder`` and its versions, or ``None`` and why not."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        return None, "node and npm are not installed (apt-get install nodejs npm)"
    manifest = (IPX_SOURCES / "package.json").read_text()
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(IPX_SOURCES / "server.mjs", folder / "server.mjs")
    marker = folder / ".bench-installed"
    if not (marker.exists() and marker.read_text() == manifest):
        (folder / "package.json").write_text(manifest)
        command = ["npm", "install", "--no-audit", "--no-fund", "--loglevel", "error"]
        finished = subprocess.run(command, cwd=folder, capture_output=True, text=True)
        if finished.returncode != 0:
            return None, f"`{' '.join(command)}` failed: {finished.stderr.strip()[-400:]}"
        marker.write_text(manifest)
    check = subprocess.run(
        ["node", "--input-type=module", "-e", IPX_VERSIONS], cwd=folder, capture_output=True, text=True
    )
    if check.returncode != 0:
        return None, f"ipx does not load: {check.stderr.strip()[-400:]}"
    return folder, check.stdout.strip()

