"""The tags of :mod:`resize_sidecar.middleware.django.templatetags.media_urls`, under the former app name."""

from resize_sidecar.middleware.django.templatetags.media_urls import register

__all__ = ["register"]
