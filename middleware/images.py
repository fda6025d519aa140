"""Images as templates name them: a model's file field, a storage key or a media URL, shown without layout shift.

:class:`MediaImages` is what Django's tags and the Jinja2 ``media_url`` global call. It takes any of:

- a Django ``FieldFile`` / ``ImageFieldFile`` (``photo.image``): its key is the file's name in the storage the
  sidecar reads (``MEDIA_ROOT`` or the bucket and ``location``), and its size the one the model stored in the
  field's ``width_field`` / ``height_field``;
- a media URL (``photo.image.url``, ``/media/photos/cat.jpg``, or one on ``PUBLIC_BASE_URL``);
- a storage key (``photos/cat.jpg``);
- a mapping with ``key``, ``width`` and ``height``, such as the media API's answer to an upload, kept by the app.

Every ``<img>`` it writes carries ``width`` and ``height`` so that the browser reserves the box before the image
arrives: the box itself for ``fill`` and ``pad``, the fitted size for ``fit`` when the original's size is known
(from the model), and only the sides the spec fixes otherwise. Nothing here reads a file or calls a storage: a page
renders from what the database row already holds.

Standard library and the project's contract modules only; Django is duck-typed, never imported.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from resize_sidecar.core.errors import MalformedPathError
from resize_sidecar.core.signing import PER_MILLE, Mode
from resize_sidecar.core.urls import HTML, MediaURLs
from resize_sidecar.middleware.variants import VariantPolicy

if TYPE_CHECKING:
    from resize_sidecar.core.settings import Settings

Size = tuple[int | None, int | None]
#: The width of a responsive image's ``src``, for the browsers that do not read ``srcset``.
_FALLBACK_WIDTH = 1080


@dataclass(frozen=True)
class Original:
    """An original as the sidecar reads it: its key, and its upright size when the app stored it."""

    key: str
    width: int | None = None
    height: int | None = None


def original(image: object, settings: Settings) -> Original:
    """The original that ``image`` (a file field, a media URL or a key) names.

    Raises:
        MalformedPathError: an empty file field, a URL outside ``MEDIA_URL``, or a file the sidecar cannot read
            (another folder, bucket or prefix than its settings').
        TypeError: anything else.
    """
    if isinstance(image, Original):
        return image
    if isinstance(image, str):
        return Original(_key_of_text(image, settings))
    if isinstance(image, Mapping) and isinstance(image.get("key"), str):
        # A row the app kept from the media API's upload answer: key, width and height.
        return Original(image["key"], *_positive_size(image.get("width"), image.get("height")))
    name, storage = getattr(image, "name", None), getattr(image, "storage", None)
    if storage is None or not (name is None or isinstance(name, str)):
        raise TypeError(f"expected a file field, a media URL, a storage key or a mapping, got {type(image).__name__}")
    if not name:
        raise MalformedPathError("the file field holds no file")
    return Original(_key_in_storage(storage, name, settings), *_stored_size(image))


def _key_of_text(text: str, settings: Settings) -> str:
    """A key as given, or the key a media URL (percent-encoded, as ``FieldFile.url`` writes it) points at."""
    base = settings.public_base_url.rstrip("/")
    for prefix in ([base + settings.media_url] if base else []) + [settings.media_url]:
        if text.startswith(prefix):
            key = unquote(text[len(prefix) :].partition("?")[0])
            if key.startswith(settings.derived_prefix):
                raise MalformedPathError(f"{text!r} is a derivative's URL, not an original's")
            return key
    if text.startswith("/") or "://" in text:
        raise MalformedPathError(f"{text!r} is not under MEDIA_URL {settings.media_url!r}")
    return text


def _key_in_storage(storage: Any, name: str, settings: Settings) -> str:
    """The sidecar's key of a file a Django storage holds under ``name``, from names alone (no storage call)."""
    if getattr(storage, "names_are_keys", False):  # the media API's storage
        return name
    if settings.storage == "local":
        try:
            # abspath, not resolve(): names only, no filesystem call while a page renders.
            path = os.path.abspath(str(storage.path(name)))
        except (AttributeError, NotImplementedError):  # Django's remote storages raise NotImplementedError
            raise MalformedPathError(
                f"{name!r} is in {type(storage).__name__}, not a folder: the sidecar reads local storage"
            ) from None
        root = os.path.join(os.path.abspath(settings.local_root), "")
        if not path.startswith(root):
            raise MalformedPathError(f"{name!r} is stored at {path}, outside LOCAL_ROOT {root}")
        return path[len(root) :].replace(os.sep, "/")
    bucket = getattr(storage, "bucket_name", None)
    if bucket != settings.s3_bucket:
        raise MalformedPathError(f"{name!r} is in bucket {bucket!r}, not S3_BUCKET {settings.s3_bucket!r}")
    location = str(getattr(storage, "location", "") or "").strip("/")
    full = str(PurePosixPath(location, name)) if location else name
    if not full.startswith(settings.s3_prefix):
        raise MalformedPathError(f"{full!r} is outside S3_PREFIX {settings.s3_prefix!r}")
    return full[len(settings.s3_prefix) :]


def _stored_size(field_file: object) -> Size:
    """The size an ``ImageField`` keeps in its model's ``width_field`` and ``height_field`` columns, if it does.

    ``ImageFieldFile.width`` would open the file to measure it: never read here.
    """
    field, instance = getattr(field_file, "field", None), getattr(field_file, "instance", None)
    width_column, height_column = getattr(field, "width_field", None), getattr(field, "height_field", None)
    if instance is None or not (isinstance(width_column, str) and isinstance(height_column, str)):
        return None, None
    return _positive_size(getattr(instance, width_column, None), getattr(instance, height_column, None))


def _positive_size(width: object, height: object) -> Size:
    if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
        return width, height
    return None, None


def shown_size(
    source: Original, width: int | None, height: int | None, fit: str = "fit", upscale: bool = False
) -> Size:
    """The size of the derivative of ``source`` in a ``width`` × ``height`` box, as far as it can be known.

    ``fill`` and ``pad`` are the box; ``fit`` is the original scaled into the box (never enlarged without
    ``upscale``), which needs the original's size: without it, only a single given side is known.
    """
    if fit != "fit" and width and height:
        return width, height
    if source.width and source.height:
        scale = min(width / source.width if width else float("inf"), height / source.height if height else float("inf"))
        if scale == float("inf") or (scale > 1 and not upscale):
            scale = 1.0
        return max(1, round(source.width * scale)), max(1, round(source.height * scale))
    return (width, None) if height is None else (None, height) if width is None else (None, None)


def framed(source: Original, crop: Iterable[float] | None = None, rotate: int = 0) -> Original:
    """The original as a derivative frames it: its stored size cut to ``crop`` (fractions of its sides, as
    ``MediaURLs`` takes it) and turned by ``rotate`` degrees, so that sizes shown follow the crop's shape."""
    width, height = source.width, source.height
    if width and height and crop is not None:
        _, _, crop_width, crop_height = crop
        width, height = max(1, round(width * crop_width)), max(1, round(height * crop_height))
    if rotate in (90, 270):
        width, height = height, width
    return replace(source, width=width, height=height)


#: Options that choose which part of the original is shown and which way up: a placeholder shows the same.
_GEOMETRY = ("crop", "rotate", "flip")


class MediaImages:
    """The template helpers: :class:`~resize_sidecar.core.urls.MediaURLs` taking file fields and media URLs
    as well as keys, and writing the size of every ``<img>``. Cheap to build, safe to share between threads."""

    def __init__(self, urls: MediaURLs) -> None:
        self.urls = urls
        self.settings = urls.settings

    @property
    def marker(self) -> HTML:
        """The attribute that marks the app's own elements for ``rewrite_scope="marked"``."""
        return self.urls.marker

    @cached_property
    def policy(self) -> VariantPolicy:
        """The HTML rewriter's variant set (ALLOWED_WIDTHS, else 16-3840; ALLOWED_BLURS), which the helpers keep to
        where they choose sizes themselves: responsive ladders and placeholders."""
        return VariantPolicy(self.settings)

    def original(self, image: object) -> Original:
        """See :func:`original`."""
        return original(image, self.settings)

    def __call__(self, image: object, **options: Any) -> str:
        """The original's URL, or with options the signed derivative's (as ``MediaURLs.__call__``)."""
        return self.urls(self.original(image).key, **options)

    def url(self, image: object) -> str:
        return self.urls.url(self.original(image).key)

    def derivative(self, image: object, **options: Any) -> str:
        return self.urls.derivative(self.original(image).key, **options)

    def srcset(self, image: object, widths: Iterable[int], **options: Any) -> str:
        return self.urls.srcset(self.original(image).key, widths, **options)

    def img(self, image: object, **options: Any) -> HTML:
        """``MediaURLs.img`` with ``width`` and ``height`` attributes of the size shown (:func:`shown_size`).

        Takes ``MediaURLs.img``'s arguments, and ``placeholder=True``: a tiny blurred derivative of the same shape
        behind the image until it arrives.
        """
        return self._markup(self.urls.img, image, **options)

    def picture(self, image: object, **options: Any) -> HTML:
        """``MediaURLs.picture`` (AVIF and WebP sources, a fallback ``<img>``), sized and placeheld as :meth:`img`."""
        return self._markup(self.urls.picture, image, **options)

    def responsive(
        self,
        image: object,
        *,
        sizes: str = "100vw",
        aspect_ratio: float | None = None,
        widths: Iterable[int] | None = None,
        attrs: Mapping[str, object] | None = None,
        placeholder: bool = False,
        **options: Any,
    ) -> HTML:
        """A ``<picture>`` whose sources offer every width of the ladder up to the original's, for ``sizes``.

        ``aspect_ratio`` (width / height) crops every candidate to that shape; without it they keep the original's.
        ``width`` and ``height`` are the largest candidate's, which gives the browser the box's aspect ratio (style it
        ``max-width: 100%; height: auto``); with neither ``aspect_ratio`` nor a stored size they are left out.

        Raises:
            MalformedPathError, PolicyError: as ``MediaURLs.derivative``.
        """
        source = framed(self.original(image), options.get("crop"), options.get("rotate", 0))
        ladder = tuple(widths) if widths is not None else self.policy.widths
        if source.width:
            ladder = tuple(step for step in ladder if step < source.width) + (min(source.width, max(ladder)),)
        largest = max(ladder)
        fit: Mode = "fill" if aspect_ratio else options.pop("fit", "fit")
        size: Size = (largest, round(largest / aspect_ratio)) if aspect_ratio else (None, None)
        if source.width and not aspect_ratio:
            size = shown_size(source, largest, None)
        # The src of browsers without srcset: the step nearest a common content width, not the largest.
        src_width = min(ladder, key=lambda step: abs(step - _FALLBACK_WIDTH))
        src_height = round(src_width / aspect_ratio) if aspect_ratio else None
        sized = self._attributes(source, size, attrs, placeholder, options)
        return self.urls.picture(
            source.key, width=src_width, height=src_height, fit=fit, widths=ladder, sizes=sizes, attrs=sized, **options
        )

    def _markup(
        self,
        build: Callable[..., HTML],
        image: object,
        *,
        width: int | None = None,
        height: int | None = None,
        attrs: Mapping[str, object] | None = None,
        placeholder: bool = False,
        **options: Any,
    ) -> HTML:
        source = self.original(image)
        sized = self._attributes(source, self._shown(source, width, height, options), attrs, placeholder, options)
        return build(source.key, width=width, height=height, attrs=sized, **options)

    def _attributes(
        self,
        source: Original,
        size: Size,
        attrs: Mapping[str, object] | None,
        placeholder: bool,
        options: Mapping[str, Any],
    ) -> dict[str, object]:
        """The ``<img>``'s ``width``, ``height`` and placeholder ``style``, then the caller's own attributes."""
        values: dict[str, object] = {"width": size[0], "height": size[1], **(attrs or {})}
        if placeholder:
            # The smallest width and blur of the variant set, cropped to the shape shown when that is known.
            width = self.policy.widths[0]
            height = max(1, round(width * size[1] / size[0])) if size[0] and size[1] else None
            geometry = {name: options[name] for name in _GEOMETRY if name in options}
            if height and options.get("focal") is not None:
                geometry["focal"] = options["focal"]
            blurred = self.urls.derivative(
                source.key,
                width=width,
                height=height,
                fit="fill" if height else "fit",
                blur=self.policy.blurs[0],
                **geometry,
            )
            backdrop = f'background-size:cover;background-image:url("{blurred}")'
            values["style"] = f"{backdrop};{values['style']}" if values.get("style") else backdrop
        return values

    def _shown(self, source: Original, width: int | None, height: int | None, options: Mapping[str, Any]) -> Size:
        """The size shown for a box and options (a preset's box, if one is named), of the original as framed."""
        fit, upscale = options.get("fit", "fit"), bool(options.get("upscale", False))
        crop, rotate = options.get("crop"), options.get("rotate", 0)
        preset = options.get("preset")
        if preset and preset in self.settings.preset_specs:
            spec = self.settings.preset_specs[preset]
            width, height, fit, upscale = spec.width, spec.height, spec.mode, spec.upscale
            crop = spec.crop and tuple(value / PER_MILLE for value in spec.crop)
            rotate = spec.rotate
        return shown_size(framed(source, crop, rotate), width, height, fit, upscale)
