"""The import rule: the URL contract, the settings and the middleware never pull in pyvips or boto3.

Each check runs in a fresh interpreter, so modules imported by other tests cannot hide (or fake) an import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMAGE_AND_STORAGE_LIBRARIES = ("pyvips", "boto3", "botocore")


def modules_imported_by(statements: str) -> set[str]:
    """Top-level names of the modules that ``statements`` adds to sys.modules in a fresh interpreter."""
    code = (
        "import json, sys\n"
        "before = set(sys.modules)\n"
        f"{statements}\n"
        "import resize_sidecar\n"
        "print(json.dumps({'new': sorted(set(sys.modules) - before), 'package': resize_sidecar.__file__}))\n"
    )
    environ = {name: value for name, value in os.environ.items() if not name.startswith("PYTHON")}
    environ["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert Path(report["package"]).resolve().is_relative_to(ROOT), "imported another copy of resize_sidecar"
    return {name.partition(".")[0] for name in report["new"]}


def test_signing_and_settings_import_neither_image_storage_web_nor_yaml_libraries() -> None:
    imported = modules_imported_by("import resize_sidecar.core.signing, resize_sidecar.core.settings")

    assert {"resize_sidecar"} <= imported
    assert imported.isdisjoint({*IMAGE_AND_STORAGE_LIBRARIES, "webob", "yaml"}), sorted(imported)


def test_signing_and_settings_import_only_the_standard_library() -> None:
    imported = modules_imported_by("import resize_sidecar.core.signing, resize_sidecar.core.settings")

    assert imported - set(sys.stdlib_module_names) == {"resize_sidecar"}


def test_loading_settings_without_a_file_does_not_import_yaml() -> None:
    imported = modules_imported_by("import resize_sidecar.core.settings as s\ns.load(environ={})")

    assert "yaml" not in imported


def test_the_middleware_imports_neither_pyvips_nor_boto3() -> None:
    imported = modules_imported_by("import resize_sidecar.middleware, resize_sidecar.middleware.django")

    assert "resize_sidecar" in imported
    assert imported.isdisjoint({*IMAGE_AND_STORAGE_LIBRARIES, "django", "flask", "jinja2"}), sorted(imported)


def test_every_module_of_the_core_imports_only_the_standard_library() -> None:
    modules = ("errors", "formats", "objects", "settings", "signing", "urls")
    imported = modules_imported_by("\n".join(f"import resize_sidecar.core.{module}" for module in modules))

    assert imported - set(sys.stdlib_module_names) == {"resize_sidecar"}


def test_the_storage_protocol_and_local_storage_import_no_s3_library() -> None:
    imported = modules_imported_by(
        "import resize_sidecar.media.storage\n"
        "from resize_sidecar.core.settings import Settings\n"
        "from resize_sidecar.media.stores import open_storage\n"
        "open_storage(Settings(local_root='media'))"
    )

    assert "resize_sidecar" in imported
    assert imported.isdisjoint(IMAGE_AND_STORAGE_LIBRARIES), sorted(imported)
