from __future__ import annotations

from django.apps import AppConfig


class ResizeSidecarConfig(AppConfig):
    name = "resize_sidecar.middleware.django"
    label = "resize_sidecar"
    verbose_name = "resize-sidecar"

    def ready(self) -> None:
        from resize_sidecar.middleware.django import checks, conf

        checks.register()
        conf.forget_on_setting_changes()
