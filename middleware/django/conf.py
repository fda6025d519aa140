"""The sidecar's settings in a Django project: what Django's own settings imply, under what is given explicitly.

Implied: ``MEDIA_URL`` (a path, or an absolute URL whose host becomes ``PUBLIC_BASE_URL``) and the default storage:
``FileSystemStorage`` means local storage at its location (``MEDIA_ROOT``); django-storages' ``S3Storage`` means S3
with its bucket, endpoint, region and ``location`` (the key prefix). Explicit: ``RESIZE_SIDECAR_*`` in the settings
module or the environment (:mod:`resize_sidecar.middleware.config`). ``manage.py check`` reports where the two
disagree (:mod:`.checks`).
"""

from __future__ import annotations

from functools import cache
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings as django_settings
from django.core.files.storage import FileSystemStorage, storages
from django.core.signals import setting_changed

from resize_sidecar.core.settings import ENV_PREFIX, Settings
from resize_sidecar.core.urls import MediaURLs
from resize_sidecar.middleware.config import settings_from
from resize_sidecar.middleware.images import MediaImages

#: The Django setting behind each implied value, for messages.
SOURCES = {
    "media_url": "MEDIA_URL",
    "public_base_url": "MEDIA_URL",
    "storage": 'STORAGES["default"]',
    "local_root": "MEDIA_ROOT",
    "s3_bucket": "AWS_STORAGE_BUCKET_NAME",
    "s3_endpoint_url": "AWS_S3_ENDPOINT_URL",
    "s3_region": "AWS_S3_REGION_NAME",
    "s3_prefix": "AWS_LOCATION (the storage's location)",
}


def explicit() -> dict[str, Any]:
    """The ``RESIZE_SIDECAR_*`` names of the settings module."""
    return {name: getattr(django_settings, name) for name in dir(django_settings) if name.startswith(ENV_PREFIX)}


def implied() -> dict[str, Any]:
    """The settings Django's own imply, by setting name; none for a storage the sidecar cannot read."""
    values: dict[str, Any] = {}
    storage = storages["default"]
    options = django_settings.STORAGES.get("default", {}).get("OPTIONS", {})
    media_url = options.get("base_url") or django_settings.MEDIA_URL
    if isinstance(storage, FileSystemStorage):
        values["storage"] = "local"
        # Without MEDIA_ROOT Django stores files in the working folder: nothing to imply from that.
        if options.get("location") or django_settings.MEDIA_ROOT:
            values["local_root"] = str(storage.location)
    elif getattr(storage, "bucket_name", None):
        location = str(getattr(storage, "location", "") or "").strip("/")
        values.update(storage="s3", s3_bucket=storage.bucket_name, s3_prefix=f"{location}/" if location else "")
        for name, attribute in (("s3_endpoint_url", "endpoint_url"), ("s3_region", "region_name")):
            if getattr(storage, attribute, None):
                values[name] = getattr(storage, attribute)
    parts = urlsplit(media_url)
    if parts.path.strip("/"):  # a MEDIA_URL of "/" would make every page a media request
        if parts.scheme:
            values["public_base_url"] = f"{parts.scheme}://{parts.netloc}"
        values["media_url"] = f"/{parts.path.strip('/')}/"
    return values


@cache
def sidecar_settings() -> Settings:
    """The settings of this project's sidecar URLs, read once (again after a test's ``override_settings``).

    Raises:
        SettingsError: an invalid setting, explicit or implied.
    """
    return settings_from(explicit(), implied())


@cache
def default_images() -> MediaImages:
    """What templates call outside a request that went through the middleware (an e-mail, a command)."""
    return MediaImages(MediaURLs(sidecar_settings()))


def forget(**_: Any) -> None:
    sidecar_settings.cache_clear()
    default_images.cache_clear()


def forget_on_setting_changes() -> None:
    setting_changed.connect(forget, dispatch_uid="resize_sidecar.core.settings")
