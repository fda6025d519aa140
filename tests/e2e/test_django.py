"""Django: a fresh ``startproject`` site built from the README's snippets, and the app's settings and checks.

The site has a model with an ``ImageField`` (on local storage, and on django-storages' S3 against moto's server),
its own ``middleware.py`` (the import name the package used to have), and a page rendered by the tags given the
field itself; it is served by gunicorn behind nginx with the sidecar, and loaded in headless Chromium.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fresh_projects import (
    VENV_BIN,
    assert_every_image_loads_in_its_box,
    assert_placeholders_load,
    images_in_chromium,
    page_of,
    run,
    served,
    snippet,
)
from tests.support.images import photo
from tests.support.pages import Page, signed
from tests.support.servers import SECRET, SidecarServer, public_derivatives_policy, world_readable_dir

#: The originals the site's users upload: a landscape and a portrait photo.
UPLOADS = {"harbour.jpg": (1600, 1000), "tower.jpg": (1000, 1500)}
#: Images per photo on the README's page: two <img>, a <picture> and a responsive <picture>.
IMAGES_PER_PHOTO = 4
#: A module of the project's own named like the package's former import name, used as Django middleware.
PROJECT_MIDDLEWARE = """
class ProjectMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response["X-Project-Middleware"] = "mine"
        return response
"""
UPLOAD = """
from django.core.files.base import ContentFile
from photos.models import Photo
for name in {names!r}:
    photo = Photo()
    photo.image.save(name, ContentFile(open({folder!r} + "/" + name, "rb").read()))
"""


def start_project(storage: str) -> Path:
    """``django-admin startproject mysite`` and ``startapp photos``, then the README's snippets, as a developer would
    follow them; plus the project's own ``middleware.py``."""
    base = world_readable_dir("resize-sidecar-django-")
    python = str(VENV_BIN / "python")
    run([python, "-m", "django", "startproject", "mysite", str(base)], base)
    run([python, "manage.py", "startapp", "photos"], base)
    settings = base / "mysite" / "settings.py"
    added = snippet("django-settings") + (snippet("django-settings-s3") if storage == "s3" else "")
    settings.write_text(settings.read_text() + "\n" + added + '\nMIDDLEWARE += ["middleware.ProjectMiddleware"]\n')
    (base / "middleware.py").write_text(PROJECT_MIDDLEWARE)
    (base / "photos" / "models.py").write_text(snippet("django-models"))
    (base / "photos" / "views.py").write_text(snippet("django-views"))
    (base / "mysite" / "wsgi.py").write_text(snippet("django-wsgi"))
    urls = base / "mysite" / "urls.py"
    urls.write_text(urls.read_text() + "\n" + snippet("django-urls"))
    template = base / "photos" / "templates" / "photos" / "list.html"
    template.parent.mkdir(parents=True)
    template.write_text(snippet("django-template"))
    return base


def upload(base: Path, env: dict[str, str]) -> None:
    """Photos saved through the model, as a form would: Django's storage puts them where it is configured to."""
    sources = base / "sources"
    sources.mkdir()
    for name, (width, height) in UPLOADS.items():
        (sources / name).write_bytes(photo(width, height))
    python = str(VENV_BIN / "python")
    run([python, "manage.py", "makemigrations", "photos"], base, env)
    run([python, "manage.py", "migrate", "--no-input"], base, env)
    run([python, "manage.py", "shell", "-c", UPLOAD.format(names=list(UPLOADS), folder=str(sources))], base, env)


@pytest.fixture
def site_env() -> dict[str, str]:
    """The environment of the site and its sidecar: the secret, and nothing else of resize-sidecar's."""
    return {**os.environ, "RESIZE_SIDECAR_SECRETS": SECRET}


@pytest.fixture
def local_site(site_env: dict[str, str]) -> Iterator[tuple[Path, dict[str, str]]]:
    base = start_project("local")
    upload(base, site_env)
    # The sidecar and nginx read the folder Django stores uploads in: MEDIA_ROOT.
    yield base, {**site_env, "RESIZE_SIDECAR_STORAGE": "local", "RESIZE_SIDECAR_LOCAL_ROOT": str(base / "media")}
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def s3_site(site_env: dict[str, str], moto_endpoint: str, s3_client: Any) -> Iterator[tuple[Path, dict[str, str]]]:
    bucket = f"django-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=bucket)
    s3_client.put_bucket_policy(Bucket=bucket, Policy=public_derivatives_policy(bucket))
    env = {**site_env, "MEDIA_BUCKET": bucket, "MEDIA_S3_ENDPOINT": moto_endpoint}
    base = start_project("s3")
    upload(base, env)
    stored = sorted(item["Key"] for item in s3_client.list_objects_v2(Bucket=bucket)["Contents"])
    assert stored == [f"uploads/photos/{name}" for name in sorted(UPLOADS)]
    sidecar = {
        "RESIZE_SIDECAR_STORAGE": "s3",
        "RESIZE_SIDECAR_S3_BUCKET": bucket,
        "RESIZE_SIDECAR_S3_ENDPOINT_URL": moto_endpoint,
        "RESIZE_SIDECAR_S3_PREFIX": "uploads/",
    }
    yield base, {**env, **sidecar}
    shutil.rmtree(base, ignore_errors=True)


def check_site(base: Path, env: dict[str, str], logs: Path) -> None:
    # Django's checks: the settings follow Django's, the secret is there, the field stores its size.
    python = str(VENV_BIN / "python")
    assert "System check identified no issues" in run([python, "manage.py", "check"], base, env)
    with served(base, "mysite.wsgi:application", env, logs) as nginx:
        page, images = page_of(nginx.url + "/photos/", IMAGES_PER_PHOTO * len(UPLOADS))
        keys = {f"photos/{name}" for name in UPLOADS}
        assert {signed(url).key for url in page.media_urls()} == keys
        # The fitted 400-wide image takes its height from the model's stored size: no file read, no shift.
        fitted = [(a["width"], a["height"]) for a in images if signed(a["src"]).spec == "400x"]
        assert fitted == [("400", "250"), ("400", "600")]
        assert assert_placeholders_load(nginx.url, images) == len(UPLOADS)
        # The project's own middleware.py is the one Django loaded, beside the package.
        with urllib.request.urlopen(nginx.url + "/photos/", timeout=30) as response:
            assert response.headers["X-Project-Middleware"] == "mine"
        seen = images_in_chromium(nginx.url, "/photos/")
    assert_every_image_loads_in_its_box(seen, IMAGES_PER_PHOTO * len(UPLOADS))


@pytest.mark.e2e
def test_a_fresh_project_on_local_storage_shows_its_image_fields_in_chromium(
    local_site: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    base, env = local_site
    assert sorted(path.name for path in (base / "media" / "photos").iterdir()) == sorted(UPLOADS)
    check_site(base, env, tmp_path)


@pytest.mark.e2e
def test_a_fresh_project_on_django_storages_s3_shows_its_image_fields_in_chromium(
    s3_site: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    base, env = s3_site
    check_site(base, env, tmp_path)


# --- settings and checks, each in a fresh interpreter (Django configures itself once per process) -------------------


def django_says(settings: dict[str, Any], code: str, env: dict[str, str] | None = None) -> Any:
    """What ``code`` (which sets ``result``) finds in a Django configured with ``settings``."""
    program = textwrap.dedent(
        f"""
        import json, django
        from django.conf import settings
        settings.configure(**{settings!r})
        django.setup()
        {textwrap.indent(textwrap.dedent(code), "        ").strip()}
        print(json.dumps(result))
        """
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RESIZE_SIDECAR_")} | (env or {})
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=environ, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


APP = ["resize_sidecar.middleware.django"]
SETTINGS_OF = """
from resize_sidecar.middleware.django.conf import sidecar_settings
s = sidecar_settings()
result = [s.storage, s.local_root, s.media_url, s.public_base_url, s.s3_bucket, s.s3_prefix, s.s3_endpoint_url]
"""
CHECKS = """
from django.core import checks
result = sorted([m.id, m.msg] for m in checks.run_checks() if m.id.startswith("resize_sidecar"))
"""


def test_settings_follow_media_url_and_media_root(tmp_path: Path) -> None:
    settings = {
        "INSTALLED_APPS": APP,
        "MEDIA_URL": "/uploads/",
        "MEDIA_ROOT": str(tmp_path),
        "RESIZE_SIDECAR_SECRETS": "s",
    }

    assert django_says(settings, SETTINGS_OF) == ["local", str(tmp_path), "/uploads/", "", "", "", ""]


GEOMETRY_TAGS = """
from django.template import Context, Template
shown = Template(
    '{% load media_urls %}{% media_url "a.jpg" width=128 height=128 fit="fill" focal="0.7,0.4" crop="0.5,0,0.5,1" %} '
    '{% media_img row width=300 crop="0.25,0.25,0.5,0.5" rotate="90" flip="x" alt="" %}'
).render(Context({"row": {"key": "b.jpg", "width": 1200, "height": 800}}))
result = shown
"""


def test_the_tags_read_crop_focal_point_rotate_and_flip_written_as_text(tmp_path: Path) -> None:
    settings = {
        "INSTALLED_APPS": APP,
        "MEDIA_ROOT": str(tmp_path),
        "TEMPLATES": [{"BACKEND": "django.template.backends.django.DjangoTemplates"}],
    }

    url, img = django_says(settings, GEOMETRY_TAGS, {"RESIZE_SIDECAR_SECRETS": SECRET}).split(" ", 1)

    assert signed(url).spec == "128x128-fill-fp700.400-crop500.0.500.1000"
    attributes = Page(img).tags[0][1]
    assert (attributes["width"], attributes["height"]) == ("300", "450")
    assert signed(attributes["src"]).spec == "300x-crop250.250.500.500-r90-flipx"


def test_an_absolute_media_url_becomes_the_public_base_url(tmp_path: Path) -> None:
    settings = {"INSTALLED_APPS": APP, "MEDIA_URL": "https://cdn.example.com/m/", "MEDIA_ROOT": str(tmp_path)}

    found = django_says(settings, SETTINGS_OF, {"RESIZE_SIDECAR_SECRETS": "s"})

    assert found[2:4] == ["/m/", "https://cdn.example.com"]


def test_settings_follow_django_storages_bucket_location_and_endpoint() -> None:
    options = {"bucket_name": "photos-bucket", "location": "site/media", "endpoint_url": "http://127.0.0.1:9000"}
    storages = {"default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options}}
    settings = {"INSTALLED_APPS": APP, "MEDIA_URL": "/media/", "STORAGES": storages, "RESIZE_SIDECAR_SECRETS": "s"}

    found = django_says(settings, SETTINGS_OF)

    assert found[0] == "s3" and found[4:] == ["photos-bucket", "site/media/", "http://127.0.0.1:9000"]


def test_explicit_settings_win_and_the_check_names_the_disagreement(tmp_path: Path) -> None:
    settings = {
        "INSTALLED_APPS": APP,
        "MEDIA_URL": "/media/",
        "MEDIA_ROOT": str(tmp_path),
        "RESIZE_SIDECAR_SECRETS": "s",
    }
    env = {"RESIZE_SIDECAR_MEDIA_URL": "/files/"}

    assert django_says(settings, SETTINGS_OF, env)[2] == "/files/"
    assert django_says(settings, CHECKS, env) == [
        ["resize_sidecar.W001", "RESIZE_SIDECAR_MEDIA_URL is '/files/' but MEDIA_URL says '/media/'"]
    ]
    elsewhere = {"RESIZE_SIDECAR_LOCAL_ROOT": str(tmp_path / "other")}
    assert django_says(settings, CHECKS, elsewhere) == [
        ["resize_sidecar.W001", f"RESIZE_SIDECAR_LOCAL_ROOT is '{tmp_path / 'other'}' but MEDIA_ROOT says '{tmp_path}'"]
    ]


def test_the_check_reports_a_missing_secret_and_invalid_settings(tmp_path: Path) -> None:
    settings = {"INSTALLED_APPS": APP, "MEDIA_URL": "/media/", "MEDIA_ROOT": str(tmp_path)}

    assert [m[0] for m in django_says(settings, CHECKS)] == ["resize_sidecar.E002"]
    invalid = django_says({**settings, "RESIZE_SIDECAR_MAX_FRAMES": "many"}, CHECKS)
    assert [m[0] for m in invalid] == ["resize_sidecar.E001"] and "RESIZE_SIDECAR_MAX_FRAMES" in invalid[0][1]


def test_the_check_reports_a_storage_the_sidecar_cannot_read_and_image_fields_without_their_size(
    tmp_path: Path,
) -> None:
    (tmp_path / "gallery").mkdir()
    (tmp_path / "gallery" / "__init__.py").write_text("")
    (tmp_path / "gallery" / "models.py").write_text(
        "from django.db import models\n\nclass Picture(models.Model):\n    image = models.ImageField()\n"
    )
    storages = {"default": {"BACKEND": "django.core.files.storage.InMemoryStorage"}}
    settings = {"INSTALLED_APPS": [*APP, "gallery"], "STORAGES": storages, "RESIZE_SIDECAR_SECRETS": "s"}
    found = django_says(settings, CHECKS, {"PYTHONPATH": str(tmp_path)})

    assert [m[0] for m in found] == ["resize_sidecar.I001", "resize_sidecar.W002"]
    assert found[0][1] == "gallery.Picture.image stores no dimensions: images shown with fit get no height"


# --- the media API's storage ----------------------------------------------------------------------------------------

API_TOKEN = "django-api-token-0123456789"
GALLERY_MODELS = """
from django.db import models


class Photo(models.Model):
    image = models.ImageField(upload_to="photos/", width_field="width", height_field="height")
    width = models.PositiveIntegerField(null=True)
    height = models.PositiveIntegerField(null=True)
"""
SAVE_AND_SHOW = """
from django.core.files.base import ContentFile
from django.db import connection
from django.template import Context, Template
from gallery.models import Photo

with connection.schema_editor() as editor:
    editor.create_model(Photo)
photo = Photo()
photo.image.save("phone.jpg", ContentFile(open({source!r}, "rb").read()))
shown = Template('{{% load media_urls %}}{{% media_img photo.image width=200 alt="" %}}').render(
    Context({{"photo": photo}})
)
result = [photo.image.name, photo.width, photo.height, photo.image.url, shown]
"""
DELETE = """
from django.core.files.storage import storages
storage = storages["default"]
result = [storage.exists({key!r}), storage.delete({key!r}), storage.exists({key!r})]
"""


@pytest.mark.e2e
def test_image_fields_on_the_media_api_storage_are_stored_upright_and_measured_upright(tmp_path: Path) -> None:
    import pyvips

    # A phone photo: 600x400 pixels stored, to be shown turned a quarter (EXIF orientation 6), so 400x600 upright.
    image = pyvips.Image.new_from_buffer(photo(600, 400), "").copy()
    image.set_type(pyvips.GValue.gint_type, "orientation", 6)
    (tmp_path / "phone.jpg").write_bytes(image.write_to_buffer(".jpg"))
    (tmp_path / "gallery").mkdir()
    (tmp_path / "gallery" / "__init__.py").write_text("")
    (tmp_path / "gallery" / "models.py").write_text(GALLERY_MODELS)
    root = world_readable_dir("resize-sidecar-api-storage-")
    env = {"RESIZE_SIDECAR_SECRETS": SECRET, "RESIZE_SIDECAR_API_SECRET": API_TOKEN}
    try:
        with SidecarServer({**env, "RESIZE_SIDECAR_LOCAL_ROOT": str(root)}, tmp_path) as sidecar:
            storage = {"BACKEND": "resize_sidecar.middleware.django.storage.MediaAPIStorage"}
            settings = {
                "INSTALLED_APPS": [*APP, "gallery"],
                "DATABASES": {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
                "STORAGES": {"default": {**storage, "OPTIONS": {"api_url": f"{sidecar.url}/api/"}}},
                "TEMPLATES": [{"BACKEND": "django.template.backends.django.DjangoTemplates"}],
            }
            django_env = {**env, "PYTHONPATH": str(tmp_path)}
            key, width, height, url, shown = django_says(
                settings, SAVE_AND_SHOW.format(source=str(tmp_path / "phone.jpg")), django_env
            )
            stored = pyvips.Image.new_from_file(str(root / key))
            assert key.startswith("uploads/") and key.endswith(".jpg")
            assert (width, height) == (400, 600) == (stored.width, stored.height)
            assert stored.get_typeof("orientation") == 0 or stored.get("orientation") == 1
            assert url == f"/media/{key}"
            img = Page(shown).tags[0][1]
            assert (img["width"], img["height"]) == ("200", "300")
            assert signed(img["src"]).key == key
            assert django_says(settings, DELETE.format(key=key), django_env) == [True, None, False]
            assert not (root / key).exists()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_djangos_jinja2_backend_gets_media_url_from_the_environment_factory(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_text("{{ media_url.img('/media/a%20b.jpg', width=40, height=30, fit='fill') }}")
    backend = {
        "BACKEND": "django.template.backends.jinja2.Jinja2",
        "DIRS": [str(tmp_path)],
        "OPTIONS": {"environment": "resize_sidecar.middleware.django.jinja2.environment"},
    }
    settings = {"INSTALLED_APPS": APP, "TEMPLATES": [backend], "MEDIA_URL": "/media/", "MEDIA_ROOT": str(tmp_path)}
    code = "from django.template.loader import render_to_string\nresult = render_to_string('page.html')"

    img = Page(django_says(settings, code, {"RESIZE_SIDECAR_SECRETS": SECRET})).tags[0][1]

    assert (img["width"], img["height"], signed(img["src"]).key, signed(img["src"]).spec) == (
        "40",
        "30",
        "a b.jpg",
        "40x30-fill",
    )
