"""Images for tests: the shared corpus of real ones, photo-like ones made on the spot, and what a stored one is."""

from __future__ import annotations

import os
from pathlib import Path

#: The shared corpus of real images (see its MANIFEST.tsv), next to the repository unless TESTDATA_IMAGES says.
TESTDATA = Path(os.environ.get("TESTDATA_IMAGES", Path(__file__).resolve().parents[3] / "shared/testdata/images"))


def photo(width: int, height: int, fmt: str = "jpg") -> bytes:
    """A photo-like test image: smooth gradients with detail, so encoders and crops have something to show."""
    import pyvips

    xy = pyvips.Image.xyz(width, height)
    red = xy[0] * (255 / max(width - 1, 1))
    green = xy[1] * (255 / max(height - 1, 1))
    blue = ((xy[0] + xy[1]) % 64) * 4
    image = red.bandjoin([green, blue]).cast("uchar")
    return bytes(image.write_to_buffer(f".{fmt}"))


def image_size(data: bytes | None) -> tuple[int, int]:
    """The width and height of an encoded image; ``None`` (nothing stored) fails as no image does."""
    width, height, _ = image_size_and_format(data)
    return width, height


def image_size_and_format(data: bytes | None) -> tuple[int, int, str]:
    """The width, height and format (the libvips loader: ``jpegload``, ``webpload``...) of an encoded image."""
    import pyvips

    image = pyvips.Image.new_from_buffer(data or b"", "")
    return image.width, image.height, image.get("vips-loader").removesuffix("_buffer")
