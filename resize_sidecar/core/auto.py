"""``.auto`` derivatives: one signed URL whose format is chosen by the request's ``Accept`` header.

``{media_url}{derived_prefix}{key}/{spec}-{sig}.auto`` is signed over the format ``auto``. nginx (a ``map`` rendered
from :data:`CHOICES`) and the sidecar choose the same format from ``Accept`` and read or make the derivative stored at
``{derived_prefix}{key}/{spec}.{chosen}``, the object of the explicit-format URL of the same spec.

Standard library only: the middleware and the nginx renderer read the table.
"""

from __future__ import annotations

from resize_sidecar.core.formats import FormatName

#: The format name that stands in an ``.auto`` URL and is signed.
AUTO = "auto"
#: In this order, the first type ``Accept`` names is chosen (a type's q-value is not read: browsers that list AVIF
#: or WebP decode it); with none of them, :data:`FALLBACK`.
CHOICES: tuple[tuple[str, FormatName], ...] = (("image/avif", "avif"), ("image/webp", "webp"))
FALLBACK: FormatName = "jpg"
#: Every format an ``.auto`` URL may be answered, and stored, in.
FORMATS: tuple[FormatName, ...] = (*(fmt for _, fmt in CHOICES), FALLBACK)
#: What an ``.auto`` answer, and only that, varies on.
VARY = "Accept"


def choose_format(accept: str) -> FormatName:
    """The format an ``.auto`` derivative is answered in for this ``Accept`` header."""
    accept = accept.lower()
    return next((fmt for content_type, fmt in CHOICES if content_type in accept), FALLBACK)


def is_auto(raw_path: str) -> bool:
    return raw_path.endswith("." + AUTO)


def concrete_path(raw_path: str, fmt: FormatName) -> str:
    """An ``.auto`` path with the chosen format in place of ``auto``: the path of the object to read or make."""
    return raw_path.removesuffix(AUTO) + fmt
