"""The image formats: one record per format a derivative can be written in, and the types originals are served as.

Every other list of formats (the URL contract's, the encoders', the API's, the OpenAPI enum, nginx's ``types``, the
middleware's ``<picture>`` sources) is read from here, so a format is added in one place. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

#: A format a derivative can be written in, as it stands in a URL (``….webp``).
FormatName = Literal["jpg", "png", "webp", "avif", "gif"]


@dataclass(frozen=True)
class Format:
    """One output format: how it is named, typed and what it can hold."""

    name: FormatName
    content_type: str
    #: File extensions of an original in this format, the canonical one first.
    extensions: tuple[str, ...]
    #: Keeps transparency; without it alpha is flattened onto the background.
    alpha: bool
    #: Holds an animation's frames.
    animation: bool


#: The output formats, in the order lists of them are shown.
OUTPUT_FORMATS: tuple[Format, ...] = (
    Format("jpg", "image/jpeg", ("jpg", "jpeg"), alpha=False, animation=False),
    Format("png", "image/png", ("png",), alpha=True, animation=False),
    Format("webp", "image/webp", ("webp",), alpha=True, animation=True),
    Format("avif", "image/avif", ("avif",), alpha=True, animation=False),
    Format("gif", "image/gif", ("gif",), alpha=True, animation=True),
)
BY_NAME: dict[str, Format] = {fmt.name: fmt for fmt in OUTPUT_FORMATS}
#: The format names, as the URL contract accepts them.
FORMATS: tuple[FormatName, ...] = get_args(FormatName)
CONTENT_TYPES: dict[str, str] = {fmt.name: fmt.content_type for fmt in OUTPUT_FORMATS}
#: The format a file extension names (``jpeg`` is ``jpg``); extensions of no output format are absent.
FORMAT_OF_EXTENSION: dict[str, FormatName] = {
    extension: fmt.name for fmt in OUTPUT_FORMATS for extension in fmt.extensions
}
#: The format a derivative is written in when none is asked for and the original's extension names none.
DEFAULT_FORMAT: FormatName = "jpg"

#: The only types an original is served with, and the file extensions of each: the output formats', then HEIC,
#: which is accepted as an original but never written. nginx (and the middleware's development serving) types local
#: originals by extension and S3 originals by their stored type; ``resize-sidecar upload`` refuses a file whose
#: extension is not one of its sniffed type's. Anything else is served as ``application/octet-stream`` (a download,
#: never a page).
ORIGINAL_TYPES: dict[str, tuple[str, ...]] = {
    **{fmt.content_type: fmt.extensions for fmt in OUTPUT_FORMATS},
    "image/heic": ("heic", "heif"),
}
#: Originals of formats browsers do not show: stored with their own type, served as a download (octet-stream).
DOWNLOADED_TYPES: dict[str, tuple[str, ...]] = {"image/tiff": ("tif", "tiff"), "image/bmp": ("bmp",)}


def format_of_key(key: str) -> FormatName | None:
    """The output format a key's extension names (``photo.JPEG``: ``jpg``), or ``None``."""
    return FORMAT_OF_EXTENSION.get(key.rpartition(".")[2].lower())
