"""``manage.py check`` messages: sidecar settings that cannot work, or that disagree with Django's own.

- ``resize_sidecar.E001``: invalid settings; ``E002``: no secret to sign URLs with.
- ``resize_sidecar.W001``: an explicit ``RESIZE_SIDECAR_*`` value differs from what Django's settings imply (the
  files' ``.url`` and the sidecar's URLs, or the uploads and the originals the sidecar reads, would not match).
- ``resize_sidecar.W002``: the default storage is neither a folder nor S3, so file fields cannot be resolved.
- ``resize_sidecar.I001``: an ``ImageField`` without ``width_field`` and ``height_field``: its ``fit`` images get
  no height, and the page shifts as they load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.apps import AppConfig, apps
from django.core import checks
from django.core.files.storage import storages
from django.db.models import ImageField

from resize_sidecar.core.errors import SettingsError
from resize_sidecar.core.settings import ENV_PREFIX
from resize_sidecar.middleware.django import conf


def register() -> None:
    checks.register(check_settings, "resize_sidecar")
    checks.register(check_image_fields, checks.Tags.models)


def check_settings(app_configs: list[AppConfig] | None = None, **_: Any) -> list[checks.CheckMessage]:
    try:
        settings = conf.sidecar_settings()
    except SettingsError as error:
        return [checks.Error(str(error), id="resize_sidecar.E001")]
    messages: list[checks.CheckMessage] = []
    try:
        settings.require_secrets()
    except SettingsError as error:
        messages.append(
            checks.Error(
                str(error),
                hint="set RESIZE_SIDECAR_SECRETS (the sidecar's own) in the environment or the settings module",
                id="resize_sidecar.E002",
            )
        )
    implied = conf.implied()
    if "storage" not in implied:
        backend = type(storages["default"]).__name__
        messages.append(
            checks.Warning(
                f"the default storage ({backend}) is neither a folder nor S3: the sidecar cannot read its files",
                hint="use FileSystemStorage or django-storages' S3Storage, or pass storage keys to the tags",
                id="resize_sidecar.W002",
            )
        )
    for name, value in implied.items():
        actual = getattr(settings, name)
        if name == "local_root":
            actual, value = Path(actual).resolve(), Path(value).resolve()
        if actual != value:
            messages.append(
                checks.Warning(
                    f"{ENV_PREFIX}{name.upper()} is {str(actual)!r} but {conf.SOURCES[name]} says {str(value)!r}",
                    hint="leave it out to follow Django's setting, or make the two the same",
                    id="resize_sidecar.W001",
                )
            )
    return messages


def check_image_fields(app_configs: list[AppConfig] | None = None, **_: Any) -> list[checks.CheckMessage]:
    models = [m for config in app_configs for m in config.get_models()] if app_configs else apps.get_models()
    return [
        checks.Info(
            f"{model._meta.label}.{field.name} stores no dimensions: images shown with fit get no height",
            hint="add width_field and height_field (two PositiveIntegerFields) so that pages do not shift",
            obj=field,
            id="resize_sidecar.I001",
        )
        for model in models
        for field in model._meta.get_fields()
        if isinstance(field, ImageField) and not (field.width_field and field.height_field)
    ]
