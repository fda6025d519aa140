"""A private answer's Cache-Control, checked against the seconds its URL had left while the request was served."""

from __future__ import annotations

import re


def assert_private_cache_control(value: str, expires: int, asked: float, answered: float) -> None:
    """The sidecar and nginx both count whole seconds, ``expires - floor(now)``, at a moment between ``asked`` and
    ``answered``: so the bound is exact, whatever second boundary the request straddles."""
    found = re.fullmatch(r"private, max-age=([0-9]+)", value)
    assert found, value
    assert expires - int(answered) <= int(found[1]) <= expires - int(asked)
