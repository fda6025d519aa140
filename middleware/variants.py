"""What HTML rewriting may sign: the finite set of variants a page can cause, whoever wrote its markup.

A page the middleware rewrites may carry HTML its app did not author (comments, profiles, CMS content). Whatever
that markup says, rewriting only ever signs derivatives from this set:

- sides snap up to a width ladder (``ALLOWED_WIDTHS``, else :data:`DEFAULT_WIDTHS`) and never exceed its largest
  step or ``MAX_OUTPUT_DIMENSION``; the other side of a box keeps the box's aspect ratio;
- never full size (``0x0``), never enlarged (``up``), never a free background colour (``bg``);
- qualities and blur radii snap to the nearest of ``ALLOWED_QUALITIES`` / ``ALLOWED_BLURS`` (else the defaults
  below); presets are the operator's own and are allowed as they are;
- only originals under ``REWRITE_KEY_PREFIXES`` when that is set.

Standard library and the project's contract modules only.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from resize_sidecar.core.errors import MalformedPathError
from resize_sidecar.core.settings import Settings

#: The ladder when ``ALLOWED_WIDTHS`` is empty: Next.js's default ``imageSizes`` and ``deviceSizes`` together.
DEFAULT_WIDTHS = (16, 32, 48, 64, 96, 128, 256, 384, 640, 750, 828, 1080, 1200, 1920, 2048, 3840)
#: Qualities and blur radii a page may ask for when the sidecar's settings do not list them.
DEFAULT_QUALITIES = (50, 75, 90)
DEFAULT_BLURS = (5, 20)


@dataclass(frozen=True)
class Variant:
    """The arguments of :meth:`~resize_sidecar.core.urls.MediaURLs.derivative` for one rewritten URL."""

    width: int | None = None
    height: int | None = None
    fit: str = "fit"
    gravity: str = "c"
    format: str | None = None
    quality: int | None = None
    blur: int | None = None
    sharpen: bool = False
    preset: str | None = None


def _whole(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or len(value) > 5 or int(value) == 0:
        raise ValueError(f"not a positive whole number: {value!r}")
    return int(value)


def _flag(value: str) -> bool:
    if value not in ("", "1", "true"):
        raise ValueError(f"not a flag: {value!r}")
    return True


# Query parameter -> (field of Variant, how to read its value). "up" and "bg" are deliberately absent.
_PARAMETERS: dict[str, tuple[str, Callable[[str], object]]] = {
    "w": ("width", _whole),
    "h": ("height", _whole),
    "fit": ("fit", str),
    "g": ("gravity", str),
    "fmt": ("format", str),
    "q": ("quality", _whole),
    "blur": ("blur", _whole),
    "sharp": ("sharpen", _flag),
    "preset": ("preset", str),
}


class VariantPolicy:
    """Snaps what markup asks for to the configured variant set; build once per settings, thread-safe."""

    def __init__(self, settings: Settings) -> None:
        limit = settings.max_output_dimension
        ladder = sorted(width for width in (settings.widths or DEFAULT_WIDTHS) if width <= limit)
        self.widths = tuple(ladder) or (limit,)
        self.qualities = tuple(sorted(settings.qualities or DEFAULT_QUALITIES))
        self.blurs = tuple(sorted(settings.blurs or DEFAULT_BLURS))
        self.key_prefixes = settings.rewrite_key_prefixes

    def may_sign(self, key: str) -> bool:
        return not self.key_prefixes or key.startswith(self.key_prefixes)

    def side(self, pixels: int) -> int:
        """The smallest ladder step at least ``pixels`` wide, else the largest step."""
        return self.widths[min(bisect_left(self.widths, pixels), len(self.widths) - 1)]

    def box(self, width: int | None, height: int | None) -> tuple[int | None, int | None]:
        """A box on the ladder with the aspect ratio of ``width`` × ``height`` (either may be ``None``)."""
        if width is not None:
            snapped = self.side(width)
            return snapped, max(1, round(height * snapped / width)) if height is not None else None
        return None, self.side(height) if height is not None else None

    def from_query(self, query: str) -> Variant:
        """The variant a media URL's query asks for, snapped to the set.

        Raises:
            ValueError: a parameter that is not ours or given twice, a value that is not a number or flag, or a
                request for full size (MalformedPathError is a ValueError).
        """
        values: dict[str, object] = {}
        for name, text in parse_qsl(query, keep_blank_values=True):
            if name not in _PARAMETERS or _PARAMETERS[name][0] in values:
                raise ValueError(f"query parameter {name!r} is not one rewriting reads, or is repeated")
            field, read = _PARAMETERS[name]
            values[field] = read(text)
        if "preset" in values:
            return Variant(**values)  # type: ignore[arg-type]
        width, height = values.pop("width", None), values.pop("height", None)
        if width is None and height is None:
            raise MalformedPathError("rewriting never signs a full-size derivative")
        width, height = self.box(width, height)  # type: ignore[arg-type]
        for field, allowed in (("quality", self.qualities), ("blur", self.blurs)):
            if field in values:
                values[field] = _nearest(allowed, values[field])  # type: ignore[arg-type]
        return Variant(width=width, height=height, **values)  # type: ignore[arg-type]

    def for_box(self, width: int | None, height: int | None, densities: Iterable[int]) -> list[tuple[Variant, int]]:
        """One variant per distinct density of an ``<img>`` shown in a ``width`` × ``height`` CSS box.

        Both sides: a fill crop of exactly the box's aspect ratio, so the picture is never stretched. One side: the
        other follows the original's aspect ratio.
        """
        variants: list[tuple[Variant, int]] = []
        for density in densities:
            box = self.box(width and width * density, height and height * density)
            variant = Variant(*box, fit="fill" if width and height else "fit")
            if all(existing != variant for existing, _ in variants):
                variants.append((variant, density))
        return variants


def _nearest(allowed: tuple[int, ...], value: int) -> int:
    return min(allowed, key=lambda candidate: (abs(candidate - value), candidate))
