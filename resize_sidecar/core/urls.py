"""Public URLs of media: originals, signed derivatives, ``srcset`` lists and ``<picture>`` markup.

:class:`MediaURLs` is what templates call. Every derivative URL it returns is written by
:func:`resize_sidecar.core.signing.format_path`, so it is the one canonical spelling the sidecar accepts. URLs are
relative to ``MEDIA_URL`` (``/media/_r/…``), or absolute on ``PUBLIC_BASE_URL`` (a CDN host) when that is set;
the host of the current request is never used.

Standard library and the project's contract modules only: no pyvips, boto3 or webob.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, TypedDict

from resize_sidecar.core import private as private_urls
from resize_sidecar.core.auto import AUTO
from resize_sidecar.core.errors import MalformedPathError, PolicyError
from resize_sidecar.core.formats import CONTENT_TYPES, DEFAULT_FORMAT, FORMATS, format_of_key
from resize_sidecar.core.signing import (
    PER_MILLE,
    PRIVATE_DERIVED_PREFIX,
    DerivativeSpec,
    Flip,
    Gravity,
    Mode,
    Rotation,
    derivative_name,
    derivatives_prefix,
    encode_key,
    format_spec,
    resolve_spec,
    sign,
    validate_key,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from resize_sidecar.core.settings import Settings

#: The arguments of :meth:`MediaURLs.derivative` when none is given, which is all a preset may be combined with.
_NO_OPTIONS = (None, None, "fit", "c", None, False, None, None, False, None, None, 0, None)
#: The attribute the app's own markup carries when the middleware rewrites only marked elements.
REWRITE_MARKER = "data-resize"


class DerivativeOptions(TypedDict, total=False):
    """What :meth:`MediaURLs.derivative` accepts besides the key and the box."""

    fit: Mode
    gravity: Gravity
    format: str | None
    quality: int | None
    upscale: bool
    background: str | None
    blur: int | None
    sharpen: bool
    focal: tuple[float, float] | None
    crop: tuple[float, float, float, float] | None
    rotate: Rotation
    flip: Flip | None
    preset: str | None
    private: bool
    expires_in: int | None


class URLOptions(DerivativeOptions, total=False):
    """What :meth:`MediaURLs.__call__` accepts: the options of a derivative and its box."""

    width: int | None
    height: int | None


def _per_mille(value: object, option: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise MalformedPathError(f"{option} is given as fractions 0..1 of the original's sides, got {value!r}")
    return round(value * PER_MILLE)


def _focal_per_mille(focal: tuple[float, float] | None) -> tuple[int, int] | None:
    """A focal point's fractions as the spec's per mille; the centre is the default, and left out."""
    if focal is None:
        return None
    x, y = (_per_mille(value, "focal") for value in focal)
    return None if (x, y) == (PER_MILLE // 2, PER_MILLE // 2) else (x, y)


def _crop_per_mille(crop: tuple[float, float, float, float] | None) -> tuple[int, int, int, int] | None:
    """A crop's fractions as the spec's per mille, its edges rounded (so that it ends where the fractions do,
    inside the picture); the whole picture is the default, and left out."""
    if crop is None:
        return None
    x, y, width, height = crop
    left, top = _per_mille(x, "crop"), _per_mille(y, "crop")
    right, bottom = _per_mille(x + width, "crop"), _per_mille(y + height, "crop")
    per_mille = (left, top, right - left, bottom - top)
    return None if per_mille == (0, 0, PER_MILLE, PER_MILLE) else per_mille


class HTML(str):
    """Markup that is already escaped; Jinja2 (MarkupSafe) and Django print it as it is (``__html__``)."""

    __slots__ = ()

    def __html__(self) -> str:
        return self


def default_format(key: str) -> str:
    """The format of a derivative when none is asked for: the original's own (jpg, png, webp, avif, gif), else jpg."""
    return format_of_key(key) or DEFAULT_FORMAT


def _check_format(fmt: str, *, auto: bool) -> None:
    """Raises: MalformedPathError: ``fmt`` is no output format (nor ``auto``, where ``auto`` is allowed)."""
    if fmt not in FORMATS and not (auto and fmt == AUTO):
        expected = ", ".join(FORMATS) + (f" or {AUTO}" if auto else "")
        raise MalformedPathError(f"unknown format {fmt!r}; expected one of {expected}")


def attributes(values: Mapping[str, object]) -> str:
    """HTML attributes from a mapping: ``None`` and ``False`` are left out, ``True`` is a bare attribute."""
    parts = []
    for name, value in values.items():
        if value is None or value is False:
            continue
        name = html.escape(name.rstrip("_").replace("_", "-"))
        parts.append(f" {name}" if value is True else f' {name}="{html.escape(str(value))}"')
    return "".join(parts)


class MediaURLs:
    """Builds the public URLs of one media setup; cheap to call, safe to share between threads.

    ``fit`` is the contract's mode (``fit``, ``fill`` or ``pad``), ``format`` one of ``jpg png webp avif gif``
    (by default the original's format when it is one of those, else ``jpg``), ``quality`` 1–100 (by default the
    sidecar's per format). Widths and heights are pixels; an omitted side follows the aspect ratio.

    ``crop=(x, y, width, height)`` keeps that region of the upright original before anything else, and
    ``focal=(x, y)`` is the point a ``fill`` crop centres on, both as fractions 0..1 of the original's width and
    height (a cropper's relative values; the URL carries them to the per mille). ``rotate`` turns clockwise by 90,
    180 or 270 degrees after the crop, and ``flip`` then mirrors left-right (``"x"``) or top-bottom (``"y"``).
    """

    def __init__(self, settings: Settings) -> None:
        """Raises: SettingsError: no secret to sign with."""
        self.settings = settings
        self._secret = settings.require_secrets()[0]
        self._media_url = settings.media_url
        self._derived_prefix = settings.derived_prefix
        self._base = settings.public_base_url.rstrip("/")
        self._presets = settings.preset_specs
        self._max_side = settings.max_output_dimension
        self._private_signing_key = private_urls.signing_key(self._secret)
        # Bounded caches of the parts of a URL that do not depend on the format: per key, per box and options.
        self._key_path = lru_cache(maxsize=4096)(self._validated_key_path)
        self._spec_text = lru_cache(maxsize=1024)(self._validated_spec_text)

    def __call__(self, key: str, **options: Unpack[URLOptions]) -> str:
        """What templates call: the original's URL without options, the derivative's with them.

        Raises:
            MalformedPathError, PolicyError: as :meth:`url` and :meth:`derivative`.
        """
        return self.derivative(key, **options) if options else self.url(key)

    @property
    def marker(self) -> HTML:
        """The attribute that marks an element as the app's own for ``rewrite_scope="marked"`` (`` data-resize``)."""
        return HTML(f" {REWRITE_MARKER}")

    def url(self, key: str) -> str:
        """The public URL of an original (nginx exposes it only with ``SERVE_ORIGINALS``).

        Raises:
            MalformedPathError: the key breaks the contract's rules (``..``, empty segments, control characters…).
        """
        validate_key(key, self._derived_prefix)
        return f"{self._base}{self._media_url}{encode_key(key)}"

    def derivative(
        self,
        key: str,
        *,
        width: int | None = None,
        height: int | None = None,
        fit: Mode = "fit",
        gravity: Gravity = "c",
        format: str | None = None,
        quality: int | None = None,
        upscale: bool = False,
        background: str | None = None,
        blur: int | None = None,
        sharpen: bool = False,
        focal: tuple[float, float] | None = None,
        crop: tuple[float, float, float, float] | None = None,
        rotate: Rotation = 0,
        flip: Flip | None = None,
        preset: str | None = None,
        private: bool = False,
        expires_in: int | None = None,
    ) -> str:
        """The signed public URL of a derivative: a box and options, or a ``preset`` name from the settings.

        ``width`` and ``height`` both omitted means full size (a format conversion, say). ``format="auto"`` is one
        URL answered in AVIF, WebP or JPEG by what the browser accepts. ``private=True`` makes an expiring URL that
        nginx checks (:mod:`resize_sidecar.core.private`), valid for ``expires_in`` seconds (``PRIVATE_URL_LIFETIME``
        by default, rounded up by at most a tenth).

        Raises:
            MalformedPathError: invalid key, option or format; unknown preset; a preset combined with other options;
                a lifetime over a week; a private ``auto`` URL.
            PolicyError: a side over ``MAX_OUTPUT_DIMENSION``, which the sidecar would refuse.
        """
        fmt = format or default_format(key)
        _check_format(fmt, auto=True)
        geometry = (_focal_per_mille(focal), _crop_per_mille(crop), rotate, flip)
        spec = self._spec_text(
            width, height, fit, gravity, quality, upscale, background, blur, sharpen, *geometry, preset
        )
        if private:
            lifetime = self.settings.private_url_lifetime if expires_in is None else expires_in
            return self._private(key, spec, fmt, private_urls.expiry(time.time(), lifetime))
        return self._public(key, spec, fmt)

    def spec_url(self, key: str, spec: str, fmt: str) -> str:
        """A public derivative's URL from the text of its spec (``400x300-fill`` or a preset's name) and a format,
        ``auto`` included, as an operator types them.

        Raises:
            MalformedPathError: invalid key, spec or format; unknown preset.
            PolicyError: a side over ``MAX_OUTPUT_DIMENSION``.
        """
        _check_format(fmt, auto=True)
        self._check_side(resolve_spec(spec, self._presets))
        return self._public(key, spec, fmt)

    def private_url(self, key: str, spec: str, fmt: str, expires: int) -> str:
        """A private derivative's URL from the text of its spec (``400x300-fill`` or a preset's name), valid until
        ``expires`` (Unix seconds), as the media API issues one.

        Raises:
            MalformedPathError: invalid key, spec or format; unknown preset.
            PolicyError: a side over ``MAX_OUTPUT_DIMENSION``.
        """
        _check_format(fmt, auto=False)
        self._check_side(resolve_spec(spec, self._presets))
        return self._private(key, spec, fmt, expires)

    def _check_side(self, spec: DerivativeSpec) -> None:
        if max(spec.width or 0, spec.height or 0) > self._max_side:
            raise PolicyError(f"derivatives are at most {self._max_side} pixels on a side")

    def _public(self, key: str, spec: str, fmt: str) -> str:
        # DerivativePath.public_path from cached parts: a page asks for the same key and box many times.
        return self._key_path(key) + derivative_name(spec, sign(key, spec, fmt, self._secret), fmt)

    def _private(self, key: str, spec: str, fmt: str, expires: int) -> str:
        if fmt == AUTO:
            raise MalformedPathError("a private derivative has a format of its own, not auto")
        self._key_path(key)  # validates the key
        name = derivative_name(spec, sign(key, spec, fmt, self._private_signing_key), fmt)
        path = self._media_url + derivatives_prefix(encode_key(key), PRIVATE_DERIVED_PREFIX) + name
        return f"{self._base}{path}?{private_urls.query(path, expires, self._secret)}"

    def _validated_key_path(self, key: str) -> str:
        validate_key(key, self._derived_prefix)
        return self._base + self._media_url + derivatives_prefix(encode_key(key), self._derived_prefix)

    def _validated_spec_text(
        self,
        width: int | None,
        height: int | None,
        fit: Mode,
        gravity: Gravity,
        quality: int | None,
        upscale: bool,
        background: str | None,
        blur: int | None,
        sharpen: bool,
        focal: tuple[int, int] | None,
        crop: tuple[int, int, int, int] | None,
        rotate: Rotation,
        flip: Flip | None,
        preset: str | None,
    ) -> str:
        options = (width, height, fit, gravity, quality, upscale, background, blur, sharpen, focal, crop, rotate, flip)
        if preset is None:
            spec = DerivativeSpec(*options)
            text = format_spec(spec)
        elif options != _NO_OPTIONS:
            raise MalformedPathError("a preset cannot be combined with other options")
        elif preset not in self._presets:
            raise MalformedPathError(f"unknown preset {preset!r}")
        else:
            spec, text = self._presets[preset], preset
        self._check_side(spec)
        return text

    def srcset(
        self,
        key: str,
        widths: Iterable[int],
        *,
        aspect_ratio: float | None = None,
        **options: Unpack[DerivativeOptions],
    ) -> str:
        """A ``srcset`` value with a width descriptor per width (``… 400w, … 800w``), for use with ``sizes``.

        With ``aspect_ratio`` (width / height) every candidate also gets the matching height, so ``fit="fill"``
        crops keep one shape. Widths over ``MAX_OUTPUT_DIMENSION`` are left out: a srcset is a menu.

        Raises:
            MalformedPathError: as :meth:`derivative`; also when no width is given.
            PolicyError: every width is over ``MAX_OUTPUT_DIMENSION``.
        """
        candidates: list[tuple[int | None, int | None, str]] = []
        for width in widths:
            height = round(width / aspect_ratio) if aspect_ratio else None
            candidates.append((width, height, f"{width}w"))
        return self._candidates(key, candidates, options)

    def density_srcset(
        self,
        key: str,
        *,
        width: int | None,
        height: int | None,
        densities: Iterable[int] = (1, 2),
        **options: Unpack[DerivativeOptions],
    ) -> str:
        """A ``srcset`` value with a pixel-density descriptor per density (``… 1x, … 2x``) for a fixed CSS box.

        Raises:
            MalformedPathError: as :meth:`derivative`; also when no density is given.
            PolicyError: every density makes a side over ``MAX_OUTPUT_DIMENSION``.
        """
        candidates = [(width and width * density, height and height * density, f"{density}x") for density in densities]
        return self._candidates(key, candidates, options)

    def _candidates(
        self, key: str, candidates: list[tuple[int | None, int | None, str]], options: DerivativeOptions
    ) -> str:
        if not candidates:
            raise MalformedPathError("a srcset needs at least one width or density")
        items = []
        for width, height, descriptor in candidates:
            if max(width or 0, height or 0) <= self._max_side:
                items.append(f"{self.derivative(key, width=width, height=height, **options)} {descriptor}")
        if not items:
            raise PolicyError(f"derivatives are at most {self._max_side} pixels on a side")
        return ", ".join(items)

    def img(
        self,
        key: str,
        *,
        width: int | None = None,
        height: int | None = None,
        alt: str = "",
        widths: Iterable[int] | None = None,
        sizes: str | None = None,
        densities: Iterable[int] = (1, 2),
        attrs: Mapping[str, object] | None = None,
        **options: Unpack[DerivativeOptions],
    ) -> HTML:
        """An ``<img>`` of the derivative in a ``width`` × ``height`` box, with a ``srcset`` for the browser to pick.

        The ``srcset`` has width descriptors when ``widths`` is given (pass ``sizes`` too), density descriptors
        (``densities``, 1x and 2x by default) otherwise. ``width``/``height`` become attributes, which keeps the page
        from shifting while images load; ``attrs`` adds more (``loading``, ``class_``…). Values are HTML-escaped.

        Raises:
            MalformedPathError, PolicyError: as :meth:`derivative`.
        """
        src, srcset = self._sources(key, width, height, widths, densities, options)
        values = {"src": src, "srcset": srcset, "sizes": sizes, "width": width, "height": height, "alt": alt}
        return HTML(f"<img{attributes({**values, **(attrs or {})})}>")

    def picture(
        self,
        key: str,
        *,
        width: int | None = None,
        height: int | None = None,
        alt: str = "",
        formats: Iterable[str] = ("avif", "webp"),
        fallback: str = "jpg",
        widths: Iterable[int] | None = None,
        sizes: str | None = None,
        densities: Iterable[int] = (1, 2),
        attrs: Mapping[str, object] | None = None,
        **options: Unpack[DerivativeOptions],
    ) -> HTML:
        """A ``<picture>``: one ``<source>`` per modern format, then an ``<img>`` in the ``fallback`` format.

        Takes the arguments of :meth:`img`; ``format`` is ignored in favour of ``formats`` and ``fallback``.

        Raises:
            MalformedPathError, PolicyError: as :meth:`derivative`; also for an unknown format.
        """
        widths = tuple(widths) if widths is not None else None
        densities = tuple(densities)
        # The <img>'s size on each <source> too: a browser sizes the box from the source it picks.
        box = {"width": width, "height": height, **{k: v for k, v in (attrs or {}).items() if k in ("width", "height")}}
        sources = []
        for fmt in formats:
            src, srcset = self._sources(key, width, height, widths, densities, {**options, "format": fmt})
            source = {"type": CONTENT_TYPES[fmt], "srcset": srcset or src, "sizes": sizes, **box}
            sources.append(f"<source{attributes(source)}>")
        fallback_options: DerivativeOptions = {**options, "format": fallback}
        image = self.img(
            key,
            width=width,
            height=height,
            alt=alt,
            widths=widths,
            sizes=sizes,
            densities=densities,
            attrs=attrs,
            **fallback_options,
        )
        return HTML(f"<picture>{''.join(sources)}{image}</picture>")

    def _sources(
        self,
        key: str,
        width: int | None,
        height: int | None,
        widths: Iterable[int] | None,
        densities: Iterable[int],
        options: DerivativeOptions,
    ) -> tuple[str, str | None]:
        src = self.derivative(key, width=width, height=height, **options)
        if options.get("preset"):
            # A preset is one size, so there is nothing for the browser to choose from.
            return src, None
        if widths is not None:
            ratio = width / height if width and height else None
            return src, self.srcset(key, widths, aspect_ratio=ratio, **options)
        return src, self.density_srcset(key, width=width, height=height, densities=densities, **options)
