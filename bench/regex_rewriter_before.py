"""The regular-expression HTML rewriter the middleware used before lol_html, kept only for bench_middleware.py to
compare against. Not used by the middleware; do not import it elsewhere.

HTML rewriting: media URLs in a page become signed, right-sized derivative URLs.

Two rules, applied in one pass over the page that looks only at the tags holding ``MEDIA_URL`` (no DOM is built):

- explicit: a media URL with query parameters in ``src``, ``srcset``, ``href``, ``poster`` or an inline ``style``
  ``url(…)``, such as ``/media/photos/cat.jpg?w=400&h=300&fit=fill&fmt=webp``, becomes the signed derivative URL.
  Parameters: ``w``, ``h``, ``fit`` (fit, fill, pad), ``g`` (gravity), ``fmt``, ``q``, ``up``, ``bg``, ``blur``,
  ``sharp``, ``preset``. A URL with other parameters, or values the contract refuses, is left as it is;
- automatic: an ``<img>`` whose ``src`` is an original under ``MEDIA_URL`` and whose ``width``/``height``
  attributes are whole numbers gets the derivative of that box as ``src`` and a ``srcset`` of its densities (1x, 2x);
  optionally it is wrapped in a ``<picture>`` with AVIF/WebP sources. An ``<img>`` that has a ``srcset`` is left alone.

Comments and the contents of ``<script>``, ``<style>``, ``<textarea>`` and the other raw-text elements are never
touched. Rewriting its own output changes nothing, so a page can pass through twice. (Its handling of encoded
response bodies, unchanged, is ``resize_sidecar.middleware.rewrite.rewrite_body``.)
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote

from resize_sidecar.core.errors import PolicyError

if TYPE_CHECKING:
    from resize_sidecar.core.urls import MediaURLs

Headers = list[tuple[str, str]]

# Query parameter -> (argument of MediaURLs.derivative, how to read its value).
_NUMBER = re.compile(r"[0-9]{1,5}")


def _number(value: str) -> int:
    if not _NUMBER.fullmatch(value):
        raise ValueError(f"not a whole number: {value!r}")
    return int(value)


def _flag(value: str) -> bool:
    if value not in ("", "1", "true"):
        raise ValueError(f"not a flag: {value!r}")
    return True


_PARAMETERS: dict[str, tuple[str, Callable[[str], object]]] = {
    "w": ("width", _number),
    "h": ("height", _number),
    "fit": ("fit", str),
    "g": ("gravity", str),
    "fmt": ("format", str),
    "q": ("quality", _number),
    "up": ("upscale", _flag),
    "bg": ("background", str),
    "blur": ("blur", _number),
    "sharp": ("sharpen", _flag),
    "preset": ("preset", str),
}
_URL_ATTRIBUTES = frozenset({"src", "href", "poster"})
_READ_ATTRIBUTES = _URL_ATTRIBUTES | {"srcset", "style", "width", "height"}
# Elements whose contents the HTML parser reads as text, not markup.
_RAW_TEXT = "script|style|textarea|title|xmp|iframe|noembed|noframes|plaintext"
# What the HTML parser does not read as markup (comments, raw-text elements), and <picture> boundaries. Every
# alternative starts with '<', which lets the regex engine jump from one '<' to the next; possessive quantifiers
# keep malformed markup linear.
_LANDMARK = re.compile(
    r"<(?:"
    r"!--(?:-?>|.*?(?:--!?>|\Z))"
    rf"|({_RAW_TEXT})\b(?:[^>\"']++|\"[^\"]*+\"|'[^']*+')*+>.*?(?:</\1\s*>|\Z)"
    r"|(/?)picture\b(?:[^>\"']++|\"[^\"]*+\"|'[^']*+')*+>"
    r")",
    re.IGNORECASE | re.DOTALL,
)
_TAG = re.compile(r"<([a-z][^\s/>\"']*+)(?:[^>\"']++|\"[^\"]*+\"|'[^']*+')*+>", re.IGNORECASE)
_ATTRIBUTE = re.compile(r"([^\s\"'>/=][^\s\"'>/=]*+)(?:\s*+=\s*+(?:\"([^\"]*+)\"|'([^']*+)'|([^\s>]++)))?")
# url(...) in an inline style; group 2 is the URL.
_CSS_URL = re.compile(r"""url\(\s*(["']?)([^"')]*)\1\s*\)""", re.IGNORECASE)
# One srcset candidate (group 1 is its URL): a run of non-space whose trailing commas separate it from the next one.
_SRCSET_CANDIDATE = re.compile(r"[\s,]*([^\s,]\S*?)(?=,*(?:\s|\Z))[^,]*")
_MIME_TYPES = {"avif": "image/avif", "webp": "image/webp", "jpg": "image/jpeg", "png": "image/png", "gif": "image/gif"}


class _Attribute:
    """One attribute of a start tag: lower-case name, unescaped value, and where its value is written in the tag."""

    __slots__ = ("end", "name", "quoted", "start", "value")

    def __init__(self, match: re.Match[str], name: str) -> None:
        self.name = name
        group = match.lastindex or 1  # 2: double-quoted value, 3: single-quoted, 4: unquoted, 1: no value
        self.quoted = group in (2, 3)
        raw = match[group] if group > 1 else ""
        self.value = html.unescape(raw) if "&" in raw else raw
        self.start, self.end = match.span(group) if group > 1 else (match.end(), match.end())

    def replaced(self, value: str) -> tuple[int, int, str]:
        """The edit that puts ``value`` in place of this attribute's value, quoted if it was not."""
        escaped = html.escape(value)
        return self.start, self.end, escaped if self.quoted else f'"{escaped}"'


class HTMLRewriter:
    """Rewrites media URLs in HTML text; build it once, then call :meth:`rewrite` per page (thread-safe).

    ``automatic`` turns the ``<img width height>`` rule on; ``densities`` are the pixel densities of the srcset it
    adds; ``picture_formats`` (e.g. ``("avif", "webp")``) also wraps those images in a ``<picture>`` with one
    ``<source>`` per format.
    """

    def __init__(
        self,
        urls: MediaURLs,
        *,
        automatic: bool = True,
        densities: Iterable[int] = (1, 2),
        picture_formats: Iterable[str] = (),
    ) -> None:
        settings = urls.settings
        self.urls = urls
        self.automatic = automatic
        self.densities = tuple(densities)
        self.picture_formats = tuple(picture_formats)
        unknown = [fmt for fmt in self.picture_formats if fmt not in _MIME_TYPES]
        if unknown:
            raise ValueError(f"unknown picture formats: {', '.join(unknown)}")
        # A page may write media URLs relative to its host or on the public base (a CDN); both are ours, and both
        # contain MEDIA_URL, which makes "MEDIA_URL in text" the cheap test for "nothing to do".
        self._media_url = settings.media_url
        self._prefixes: tuple[str, ...] = (settings.media_url,)
        if settings.public_base_url:
            self._prefixes += (settings.public_base_url.rstrip("/") + settings.media_url,)
        self._derived_prefix = settings.derived_prefix

    def rewrite(self, text: str) -> str:
        """The page with its media URLs rewritten (the same object when there is nothing to rewrite)."""
        media_url = self._media_url
        found = text.find(media_url)
        if found == -1:
            return text
        # Most of a page is not media: find MEDIA_URL with str.find and look only at the tags around it, skipping
        # what the parser reads as text. Python-level work is per media URL, not per tag.
        skipped, pictures = [], []
        for landmark in _LANDMARK.finditer(text):
            if landmark[2] is None:
                skipped.append(landmark.span())
            else:
                pictures.append((landmark.start(), -1 if landmark[2] else 1))
        parts: list[str] = []
        done = region = picture = depth = 0
        while found != -1:
            while region < len(skipped) and skipped[region][1] <= found:
                region += 1
            if region < len(skipped) and skipped[region][0] <= found:
                found = text.find(media_url, skipped[region][1])
                continue
            start = text.rfind("<", done, found)
            tag = _TAG.match(text, start) if start != -1 else None
            if tag is None or tag.end() <= found:  # the URL is text, not inside a tag
                found = text.find(media_url, found + 1)
                continue
            while picture < len(pictures) and pictures[picture][0] < start:
                depth = max(0, depth + pictures[picture][1])
                picture += 1
            new = self._start_tag(tag[1].lower(), tag[0], in_picture=depth > 0)
            if new is not None:
                parts += [text[done:start], new]
                done = tag.end()
            found = text.find(media_url, tag.end())
        if not parts:
            return text
        parts.append(text[done:])
        return "".join(parts)

    def explicit_url(self, url: str) -> str | None:
        """The derivative URL for a media URL with query parameters, or ``None`` to leave ``url`` as it is."""
        key, query, fragment = self._split(url)
        if key is None or not query:
            return None
        options: dict[str, object] = {}
        try:
            for name, value in parse_qsl(query, keep_blank_values=True):
                argument, read = _PARAMETERS[name]
                if argument in options:
                    return None
                options[argument] = read(value)
            return self.urls.derivative(key, **options) + fragment  # type: ignore[arg-type]
        except (KeyError, ValueError, PolicyError):
            # Parameters that are not ours, or values the contract refuses (MalformedPathError is a ValueError):
            # the author sees that URL misbehave, the rest of the page is still rewritten.
            return None

    def original_key(self, url: str) -> str | None:
        """The key of the original a plain media URL (no query, no fragment) points at, or ``None``."""
        key, query, fragment = self._split(url)
        return key if not (query or fragment) else None

    def _split(self, url: str) -> tuple[str | None, str, str]:
        """A media URL's key (``None`` when it is not an original's URL), query and ``#fragment``."""
        for prefix in self._prefixes:
            if url.startswith(prefix):
                break
        else:
            return None, "", ""
        rest, hash_, fragment = url[len(prefix) :].partition("#")
        path, _, query = rest.partition("?")
        if path.startswith(self._derived_prefix):
            return None, "", ""
        try:
            key = unquote(path, errors="strict")
        except UnicodeDecodeError:
            return None, "", ""
        return key, query, hash_ + fragment

    def replace_urls(self, text: str, pattern: re.Pattern[str], group: int) -> str | None:
        """``text`` with each explicit media URL found as ``group`` of ``pattern`` rewritten; ``None`` if none was."""
        parts, position = [], 0
        for match in pattern.finditer(text):
            new = self.explicit_url(match[group])
            if new is not None:
                parts += [text[position : match.start(group)], new]
                position = match.end(group)
        if not parts:
            return None
        parts.append(text[position:])
        return "".join(parts)

    def sized_image(self, key: str, width: int | None, height: int | None) -> tuple[str, str, list[str]]:
        """``src``, ``srcset`` and ``<source>`` tags for an original shown in a width × height box.

        Raises:
            MalformedPathError, PolicyError: as :meth:`MediaURLs.derivative`.
        """
        urls, densities = self.urls, self.densities
        src = urls.derivative(key, width=width, height=height)
        srcset = urls.density_srcset(key, width=width, height=height, densities=densities)
        sources = [
            f'<source type="{_MIME_TYPES[fmt]}" srcset="'
            f'{html.escape(urls.density_srcset(key, width=width, height=height, densities=densities, format=fmt))}">'
            for fmt in self.picture_formats
        ]
        return src, srcset, sources

    def _start_tag(self, name: str, tag: str, *, in_picture: bool) -> str | None:
        """The tag with its media URLs rewritten, or ``None`` when nothing in it changes."""
        attributes: dict[str, _Attribute] = {}
        attributes_end = len(name) + 1
        for found in _ATTRIBUTE.finditer(tag, attributes_end, len(tag) - 1):
            attributes_end = found.end()
            attribute_name = found[1].lower()
            # The HTML parser keeps the first of repeated attributes and ignores the others.
            if attribute_name in _READ_ATTRIBUTES and attribute_name not in attributes:
                attributes[attribute_name] = _Attribute(found, attribute_name)
        edits = []
        for attribute in attributes.values():
            if attribute.name in _URL_ATTRIBUTES:
                new = self.explicit_url(attribute.value)
            elif attribute.name == "srcset":
                new = self.replace_urls(attribute.value, _SRCSET_CANDIDATE, 1)
            elif attribute.name == "style":
                new = self.replace_urls(attribute.value, _CSS_URL, 2)
            else:
                continue
            if new is not None:
                edits.append(attribute.replaced(new))
        prefix, suffix = "", ""
        if name == "img" and self.automatic and "srcset" not in attributes and not edits:
            src = attributes.get("src")
            key = self.original_key(src.value) if src else None
            width, height = _dimension(attributes.get("width")), _dimension(attributes.get("height"))
            if src and key is not None and (width or height):
                try:
                    new_src, srcset, sources = self.sized_image(key, width, height)
                except (ValueError, PolicyError):
                    return None
                added = f' srcset="{html.escape(srcset)}"'
                edits += [src.replaced(new_src), (attributes_end, attributes_end, added)]
                if sources and not in_picture:
                    prefix, suffix = "<picture>" + "".join(sources), "</picture>"
        if not edits:
            return None
        parts, position = [prefix], 0
        for start, end, text in sorted(edits):
            parts += [tag[position:start], text]
            position = end
        parts += [tag[position:], suffix]
        return "".join(parts)


def _dimension(attribute: _Attribute | None) -> int | None:
    value = attribute.value.strip() if attribute else ""
    return int(value) if _NUMBER.fullmatch(value) and int(value) > 0 else None
