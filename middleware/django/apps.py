"""The Django app: its label, and its checks and settings cache wired up when Django is ready."""

from __future__ import annotations

from django.apps import AppConfig


class ResizeSidecarConfig(AppConfig):  # type: ignore[misc]  # Django has no type hints
    name = "resize_sidecar.middleware.django"
    label = "resize_sidecar"
    verbose_name = "resize-sidecar"

    def ready(self) -> None:
        from resize_sidecar.middleware.django import checks, conf

        checks.register()
        conf.forget_on_setting_changes()
