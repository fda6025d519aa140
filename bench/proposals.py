"""Measured proposals for ``resize_sidecar.imaging``, applied by patching in the benchmark's processes only.

``experiments.py`` measures them in-process and under load (``proposal_app:app`` serves the sidecar with them),
against the code as it is; the results say what each is worth before anyone changes the package.

JPEG shrink-on-load: libvips' ``thumbnail`` decodes JPEG at a DCT scale that leaves at least a factor of two for
the final resize (a 6000 px original into 400 px: 15x, decoded at 1/4, 1500 px). Most of a JPEG decode is
entropy decoding, paid at any scale, but the IDCT, colour conversion and the resize shrink with the scale; Pillow's
``draft()`` (thumbor) decodes at 1/8 there, 750 px. ``experiments.py shrink`` measured, for each scale, the SSIM of
the unencoded result against a full-decode reference (24 MP, 12 MP and 1080p originals; boxes of 300 to 1600 px):

- results up to 400 px kept SSIM ≥ 0.9929 at every margin tried, down to 1.2 (decoded size ÷ result size);
- larger results need more: 1.6 fell to 0.988 (1080p into 600 px) and 1.25 to 0.979 (12 MP into 1600 px), while
  every margin of 1.875 or more kept ≥ 0.993.

Hence :data:`SMALL_MARGIN` up to :data:`SMALL_RESULT` px and :data:`MARGIN` above.
"""

from __future__ import annotations

from typing import Any

import pyvips

from resize_sidecar import imaging

#: Decoded size ÷ result size to keep after the DCT scale (measured; see the module docstring).
MARGIN = 1.875
SMALL_MARGIN = 1.2
#: The longer side of a result up to which SMALL_MARGIN is enough.
SMALL_RESULT = 400
_CURRENT_LOAD = imaging._load


def jpeg_shrink(source_width: int, source_height: int, box_width: int, box_height: int) -> int:
    """The smallest libjpeg DCT scale (1/8, 1/4, 1/2 or 1) that leaves the margin the result's size needs."""
    factor = max(source_width / box_width, source_height / box_height)  # the side that binds decides the scale
    result = max(source_width, source_height) / factor
    margin = SMALL_MARGIN if result <= SMALL_RESULT else MARGIN
    return next((shrink for shrink in (8, 4, 2) if factor / shrink >= margin), 1)


def load(data: bytes, spec: Any, job: Any) -> pyvips.Image:
    """``imaging._load`` with JPEG decoded at :func:`jpeg_shrink`'s scale, then ``thumbnail_image`` to the box."""
    if job.info.loader != "jpegload" or job.animated:
        return _CURRENT_LOAD(data, spec, job)
    # The box exactly as imaging._load computes it, read from the thumbnail call it would make.
    captured: dict[str, Any] = {}

    def capture(buffer: bytes, width: int, **options: Any) -> None:
        captured.update(options, width=width)

    # pyvips makes operation methods on demand; the stand-in is removed again so that it makes them as before.
    # Single-threaded use only (sync workers, the harness): another thread would see the stand-in.
    pyvips.Image.thumbnail_buffer = capture
    try:
        _CURRENT_LOAD(data, spec, job)
    finally:
        del pyvips.Image.thumbnail_buffer
    width, height = captured.pop("width"), captured["height"]
    upright_width, upright_height = imaging._upright_size(job.info)
    shrink = jpeg_shrink(upright_width, upright_height, width, height)
    if shrink == 1 or captured.get("size") == "both":
        return _CURRENT_LOAD(data, spec, job)
    loader_options = captured.pop("option_string", "")
    image = pyvips.Image.new_from_buffer(data, f"{loader_options},shrink={shrink}", access="sequential")
    # thumbnail_image applies the EXIF orientation as thumbnail_buffer does (checked on the orientation corpus).
    return image.thumbnail_image(width, **captured)


def apply() -> None:
    """Patch the proposal into this process's ``resize_sidecar.imaging``."""
    imaging._load = load


def revert() -> None:
    imaging._load = _CURRENT_LOAD
