"""Image quality: SSIM of a derivative against a full-quality reference of the same size.

The reference is the original decoded at full resolution (no shrink-on-load) and reduced in one Lanczos-3 step,
never encoded: what a derivative would look like with no shortcut and no lossy codec. SSIM is computed on luma
(Rec. 601 weights) over every 7x7 uniform window that fits, K1 = 0.01, K2 = 0.03, sample covariance (scikit-image's
defaults), with libvips arithmetic: the bench needs neither numpy nor SciPy for it.
"""

from __future__ import annotations

import pyvips

_WINDOW = 7
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2
_BOX = pyvips.Image.new_from_array([[1.0] * _WINDOW] * _WINDOW, scale=_WINDOW * _WINDOW)


def luma(image: pyvips.Image) -> pyvips.Image:
    """Float luma of the first frame, alpha flattened onto white (as a viewer on a white page shows it)."""
    if image.get_n_pages() > 1:
        image = image.crop(0, 0, image.width, image.get_page_height())
    if image.hasalpha():
        image = image.flatten(background=[255, 255, 255])
    if image.bands < 3:
        image = image.colourspace("srgb")
    return image.cast("uchar").recomb([[0.299, 0.587, 0.114]]).cast("double").copy_memory()


def _mean(image: pyvips.Image) -> pyvips.Image:
    """Mean over every 7x7 window that fits: a convolution, its border (edge-extended windows) cut off."""
    border = _WINDOW // 2
    convolved = image.conv(_BOX, precision="float")
    return convolved.crop(border, border, image.width - 2 * border, image.height - 2 * border)


def ssim(reference: pyvips.Image, test: pyvips.Image) -> float:
    """Mean SSIM of two luma images; where their sizes differ by a pixel of rounding, the common area is used."""
    width, height = min(reference.width, test.width), min(reference.height, test.height)
    x, y = reference.crop(0, 0, width, height), test.crop(0, 0, width, height)
    count = _WINDOW * _WINDOW
    correction = count / (count - 1)
    mean_x, mean_y = _mean(x), _mean(y)
    var_x = (_mean(x * x) - mean_x * mean_x) * correction
    var_y = (_mean(y * y) - mean_y * mean_y) * correction
    covariance = (_mean(x * y) - mean_x * mean_y) * correction
    numerator = (mean_x * mean_y * 2 + _C1) * (covariance * 2 + _C2)
    denominator = (mean_x * mean_x + mean_y * mean_y + _C1) * (var_x + var_y + _C2)
    return float((numerator / denominator).avg())


class References:
    """Full-quality references of one original at any output size, from one full decode."""

    def __init__(self, data: bytes) -> None:
        image = pyvips.Image.new_from_buffer(data, "", access="random")
        if image.hasalpha():
            image = image.flatten(background=[255, 255, 255])
        # Decoded once, kept in memory: every reference is a resize of these pixels.
        self.full = (image.colourspace("srgb") if image.bands < 3 else image).copy_memory()
        self._cache: dict[tuple[int, int], pyvips.Image] = {}

    def luma(self, width: int, height: int) -> pyvips.Image:
        if (width, height) not in self._cache:
            full = self.full
            reduced = full.resize(width / full.width, vscale=height / full.height, kernel="lanczos3")
            self._cache[width, height] = luma(reduced)
        return self._cache[width, height]

    def score(self, encoded: bytes) -> float:
        """SSIM of an encoded derivative (fit: the whole original, scaled) against the reference of its size."""
        test = pyvips.Image.new_from_buffer(encoded, "")
        return ssim(self.luma(test.width, test.get_page_height()), luma(test))
