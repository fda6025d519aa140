"""Opening the storage the settings describe: the one module that knows both backends."""

from __future__ import annotations

from resize_sidecar.core.settings import Settings
from resize_sidecar.media.local import LocalStorage
from resize_sidecar.media.storage import Storage


def open_storage(settings: Settings) -> Storage:
    """The storage the settings describe."""
    if settings.storage == "s3":
        from resize_sidecar.media.s3 import S3Storage  # boto3 takes a while to import; local storage never needs it

        return S3Storage.from_settings(settings)
    return LocalStorage(settings.local_root, file_mode=settings.file_mode, dir_mode=settings.dir_mode)
