"""The import name: ``resize_sidecar.middleware`` from the wheel and the editable install, beside a project's own
``middleware`` module; the former name ``middleware`` still works for one release, with a DeprecationWarning.

Each check runs in a fresh interpreter whose working folder is not the repository, as in a user's project.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.dockerfile import source_tree
from tests.support.servers import REPO

REPORT = """
import json, sys, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import middleware
    from middleware.urls import MediaURLs as old
import resize_sidecar.middleware as new
from resize_sidecar.core.urls import MediaURLs
print(json.dumps({
    "middleware": middleware.__file__,
    "package": new.__file__,
    "same_class": old is MediaURLs and middleware.MediaMiddleware is new.MediaMiddleware,
    "warnings": [str(w.category.__name__) + ": " + str(w.message) for w in caught],
}))
"""


def report(folder: Path, path: list[Path]) -> dict[str, object]:
    environ = {name: value for name, value in os.environ.items() if not name.startswith("PYTHON")}
    environ["PYTHONPATH"] = os.pathsep.join(map(str, path))
    done = subprocess.run(
        [sys.executable, "-c", REPORT], cwd=folder, env=environ, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    found: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return found


def test_the_wheel_installs_the_package_and_the_former_name_warns(tmp_path: Path) -> None:
    tree = source_tree(tmp_path / "tree")
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(tmp_path / "site")]
    subprocess.run([*pip, str(tree)], check=True, capture_output=True)
    project = tmp_path / "project"
    project.mkdir()

    found = report(project, [tmp_path / "site"])

    assert Path(str(found["package"])) == tmp_path / "site" / "resize_sidecar" / "middleware" / "__init__.py"
    assert Path(str(found["middleware"])) == tmp_path / "site" / "middleware" / "__init__.py"
    assert found["same_class"] is True
    assert found["warnings"] == [
        "DeprecationWarning: the import name 'middleware' is deprecated and goes away in the next release: import "
        "resize_sidecar.middleware (and use 'resize_sidecar.middleware.django' in INSTALLED_APPS)"
    ]


def test_a_projects_own_middleware_module_stays_its_own(tmp_path: Path) -> None:
    (tmp_path / "middleware.py").write_text("class MediaMiddleware: ...\nclass urls:\n    MediaURLs = None\n")
    (tmp_path / "middleware_check.py").write_text(
        "import middleware, resize_sidecar.middleware\n"
        "assert middleware.MediaMiddleware is not resize_sidecar.middleware.MediaMiddleware\n"
        "print(middleware.__file__)\n"
    )
    environ = {name: value for name, value in os.environ.items() if not name.startswith("PYTHON")}
    done = subprocess.run(
        [sys.executable, "middleware_check.py"], cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == tmp_path / "middleware.py"


def test_the_editable_install_maps_both_names_like_the_wheel(tmp_path: Path) -> None:
    found = report(tmp_path, [])

    assert Path(str(found["package"])) == REPO / "middleware" / "__init__.py"
    assert Path(str(found["middleware"])) == REPO / "middleware" / "deprecated" / "__init__.py"
    assert found["same_class"] is True and len(found["warnings"]) == 1  # type: ignore[arg-type]


def test_the_former_app_name_still_loads_the_template_tags(tmp_path: Path) -> None:
    code = (
        "import json, django, warnings\n"
        "from django.conf import settings\n"
        "settings.configure(INSTALLED_APPS=['middleware'], TEMPLATES=[{'BACKEND': "
        "'django.template.backends.django.DjangoTemplates', 'APP_DIRS': True}])\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    django.setup()\n"
        "from django.template import engines\n"
        "page = engines['django'].from_string('{% load media_urls %}{% media_url \"a.jpg\" width=10 %}').render({})\n"
        "print(json.dumps([page, [w.category.__name__ for w in caught]]))\n"
    )
    environ = {name: value for name, value in os.environ.items() if not name.startswith("PYTHON")}
    environ["RESIZE_SIDECAR_SECRETS"] = "a-secret"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    page, warned = json.loads(done.stdout.splitlines()[-1])
    assert page.startswith("/media/_r/a.jpg/10x-") and "DeprecationWarning" in warned
