"""Settings of the middleware inside a web framework: the framework's own values, then what is given explicitly.

Explicit means a ``RESIZE_SIDECAR_*`` environment variable, a value in ``RESIZE_SIDECAR_CONFIG``'s file, or a
``RESIZE_SIDECAR_*`` key of the framework's configuration (Flask's ``app.config``, Django's settings module), which
wins over the environment. Values the framework implies (Django's ``MEDIA_URL``, ``MEDIA_ROOT``, its storage's
bucket) fill in only what is not explicit.

Standard library and the project's settings only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import fields, replace
from typing import Any

from resize_sidecar.core.settings import ENV_PREFIX, Settings, load

_DEFAULTS = Settings()


def explicit_values(configuration: Mapping[str, Any]) -> dict[str, str]:
    """The environment's ``RESIZE_SIDECAR_*`` variables with the configuration's on top, as environment strings."""
    given = {name: value for name, value in os.environ.items() if name.startswith(ENV_PREFIX)}
    for name, value in configuration.items():
        if name.startswith(ENV_PREFIX):
            given[name] = _as_text(value)
    return given


def settings_from(configuration: Mapping[str, Any], implied: Mapping[str, Any] | None = None) -> Settings:
    """Validated settings: ``implied`` values (by setting name) under the explicit ones.

    Raises:
        SettingsError: an unknown or invalid setting, explicit or implied.
    """
    given = explicit_values(configuration)
    explicit = load(environ=given)
    named = {name.removeprefix(ENV_PREFIX).lower() for name in given}
    # A value that differs from its default was given too, in the settings file.
    chosen = named | {f.name for f in fields(Settings) if getattr(explicit, f.name) != getattr(_DEFAULTS, f.name)}
    return replace(
        explicit, **{name: value for name, value in (implied or {}).items() if name not in chosen}
    ).validate()


def development_serving(debug: bool, settings: Settings) -> bool:
    """Whether a framework's development server answers ``MEDIA_URL`` itself by default: in debug mode, with local
    storage (against S3 it would read and write the real bucket)."""
    return debug and settings.storage == "local"


def _as_text(value: Any) -> str:
    """A configuration value as its environment variable would spell it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return ",".join(f"{key}={item}" for key, item in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(str(item) for item in value)
    return str(value)
