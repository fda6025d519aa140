"""What made a derivative, recorded with it, so that ``regenerate`` tells a current one without rendering it.

A derivative's bytes follow from its original and its *recipe*: the spec as resolved from the presets (a preset's
definition, not its name), the format, the quality and encoder settings used
(:func:`~resize_sidecar.media.imaging.encoder_settings`), the libvips version, the version of what decoded the
original when it was not libvips (pillow-heif for HEIC, Pillow for BMP), and :data:`RECIPE_VERSION`. Every
derivative the sidecar stores is written with :func:`record`: the recipe's fingerprint, the decoder, and the version
of the original it was made from (:meth:`Storage.version`). It is current when :func:`is_current` finds all three
still true: the original unchanged, the recipe the one it would be made with now.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

import PIL

from resize_sidecar.core.settings import ImageLimits
from resize_sidecar.core.signing import DerivativeSpec, format_spec
from resize_sidecar.media import faces, imaging

#: Raised whenever the rendering code changes what it makes of the same inputs (a step added, a default of libvips
#: overridden): every stored derivative is then rendered again by the next ``regenerate``.
RECIPE_VERSION = 1
#: Metadata names, as stored (S3 user metadata: ``x-amz-meta-recipe`` and so on).
RECIPE, DECODER, SOURCE = "recipe", "decoder", "source"


def fingerprint(spec: DerivativeSpec, fmt: str, limits: ImageLimits, decoder: str) -> str:
    """A short stable hash of everything but the original that decides the bytes of ``spec`` in ``fmt``."""
    recipe = {
        "version": RECIPE_VERSION,
        # Its one canonical spelling, defaults left out: a spec option added later changes no existing recipe.
        "spec": format_spec(spec),
        "format": fmt,
        "encoder": imaging.encoder_settings(spec, fmt, limits),
        "libvips": imaging.libvips_version(),
        "decoder": decoder,
        "decoder_version": _decoder_version(decoder),
    }
    if spec.gravity == "face":
        # Another detector may find other faces, and so place the crop elsewhere; no other spec's recipe names it.
        recipe["face_detector"] = faces.DETECTOR
    text = json.dumps(recipe, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def record(spec: DerivativeSpec, fmt: str, limits: ImageLimits, decoder: str, source_version: str) -> dict[str, str]:
    """The metadata a derivative is stored with: rendered from the original at ``source_version`` by ``decoder``."""
    return {RECIPE: fingerprint(spec, fmt, limits, decoder), DECODER: decoder, SOURCE: source_version}


def is_current(
    recorded: Mapping[str, str] | None, spec: DerivativeSpec, fmt: str, limits: ImageLimits, source_version: str
) -> bool:
    """Whether a derivative stored with ``recorded`` metadata is what rendering ``spec`` in ``fmt`` of the original
    now at ``source_version`` would make. Nothing recorded (an object stored before recipes were, or by another
    program) is never current."""
    if not recorded or recorded.get(SOURCE) != source_version:
        return False
    decoder = recorded.get(DECODER, "")
    return decoder in _DECODERS and recorded.get(RECIPE) == fingerprint(spec, fmt, limits, decoder)


def _decoder_version(decoder: str) -> str:
    # libvips' own loaders: its version is in every recipe already.
    if decoder == "libheif":
        return imaging.heic_decoder()
    if decoder == "pillow":
        return PIL.__version__
    return ""


#: Who decodes an original (:attr:`imaging.SourceInfo.decoder`).
_DECODERS = frozenset({"libvips", "libheif", "pillow"})
