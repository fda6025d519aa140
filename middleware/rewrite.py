"""HTML rewriting: media URLs in a page become signed, right-sized derivative URLs, and nothing else changes.

The page goes through lol_html, Cloudflare's streaming HTML rewriter (``python-lolhtml``): it tokenizes as the HTML
standard does (comments, doctypes, CDATA, raw text, script escapes, foreign content), hands over the start tags of
real elements, and rewrites in place, so every byte the rewriter does not change is passed through as it was.
Attribute values are read as the parser decodes them and written back escaped and double-quoted. Two rules:

- explicit: a media URL with query parameters in ``src``, ``srcset``, ``href``, ``poster`` or an inline ``style``
  ``url(…)``, such as ``/media/photos/cat.jpg?w=400&h=300&fit=fill&fmt=webp``, becomes a signed derivative URL.
  Parameters: ``w``, ``h``, ``fit`` (fit, fill, pad), ``g`` (gravity), ``fmt``, ``q``, ``blur``, ``sharp``,
  ``preset``. Sizes, qualities and blurs snap to the configured variant set (:mod:`.variants`); a URL
  with other parameters, none of size, or values the contract refuses is left as it is;
- automatic: an ``<img>`` without ``srcset`` whose ``src`` is an original under ``MEDIA_URL`` and whose ``width``
  and/or ``height`` are whole numbers gets a derivative of that box as ``src`` and a ``srcset`` of its densities:
  a fill crop of exactly the box's aspect ratio when both are given, so the picture is never stretched.
  Optionally it is wrapped in a ``<picture>`` with AVIF/WebP sources.

With ``scope="marked"`` only elements carrying the ``data-resize`` attribute are rewritten. A page whose rewriting
would touch more than ``max_elements`` elements or grow by more than 16 times its size (plus 64 KiB) is passed
through as it came, and logged. Rewriting its own output changes nothing. :func:`rewrite_body` does the same to an
encoded response body (charset, gzip or deflate) and fixes its headers.
"""

from __future__ import annotations

import hashlib
import html
import logging
import re
import zlib
from collections.abc import Iterable
from html.entities import html5 as _NAMED_REFERENCES
from typing import TYPE_CHECKING
from urllib.parse import unquote

import lolhtml

from resize_sidecar.core.errors import PolicyError
from resize_sidecar.core.formats import CONTENT_TYPES
from resize_sidecar.core.urls import REWRITE_MARKER
from resize_sidecar.middleware.variants import Variant, VariantPolicy

if TYPE_CHECKING:
    from resize_sidecar.core.urls import MediaURLs

Headers = list[tuple[str, str]]
logger = logging.getLogger(__name__)

_URL_ATTRIBUTES = ("src", "href", "poster")
_READ_ATTRIBUTES = ("src", "srcset", "href", "poster", "style")
# ASCII whitespace as HTML defines it: not NBSP or the other spaces str.strip() would remove.
_SPACE = "\t\n\f\r "
_DIGITS = re.compile(r"[0-9]{1,5}")
# A character reference as the tokenizer starts to read one (numeric, or up to 32 characters of a name).
_REFERENCE = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")
# url(…) in an inline style: an unquoted URL or a quoted one without quotes, brackets or escapes. The possessive
# run cannot contain "(", so each attempt stops at the next one: linear however many "url(" are left unclosed.
_CSS_URL = re.compile(r"""url\([\t\n\f\r ]*+(["']?+)([^"'()\\\t\n\f\r ]++)\1[\t\n\f\r ]*+\)""", re.IGNORECASE)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([a-zA-Z0-9_.:-]+)""", re.IGNORECASE)
# Past this many candidates a srcset is not an author's menu of sizes; it is left as it is.
_MAX_CANDIDATES = 32
# What rewriting may add to a page: a short sized <img> grows about twelve times with two <picture> formats; past
# this a page is more images than HTML, and is passed through rather than multiplied.
_GROWTH_FACTOR = 16
_GROWTH_ALLOWANCE = 65536


class OverBudget(Exception):
    """A page would cost more rewriting than its budget allows; it is sent as the app made it."""


def decode_attribute(raw: str) -> str:
    """An attribute value as the HTML parser reads it from its source text (lol_html hands over the source).

    Newlines are normalised and NUL becomes U+FFFD, as the input stream and tokenizer do; character references are
    decoded with the attribute exception: a named reference without ``;`` followed by ``=`` or a letter or digit
    stays as written (``&amph=2`` is not ``&h=2``), which is where :func:`html.unescape` (text rules) differs.
    """
    if "\r" in raw or "\x00" in raw:
        raw = raw.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "\ufffd")
    return _REFERENCE.sub(_decode_reference, raw) if "&" in raw else raw


def _decode_reference(match: re.Match[str]) -> str:
    reference = match[1]
    if reference[0] == "#":
        hexadecimal = reference[1:2] in ("x", "X")
        digits = reference[2 if hexadecimal else 1 :].rstrip(";").lstrip("0")
        # Past U+10FFFF the parser reads U+FFFD, however many digits follow (int() refuses over 4300 of them).
        if len(digits) > (6 if hexadecimal else 7):
            return "\ufffd"
        return html.unescape(f"&#{'x' if hexadecimal else ''}{digits or '0'};")
    if reference in _NAMED_REFERENCES:
        return html.unescape(match[0])
    for end in range(len(reference) - 1, 1, -1):
        name = reference[:end]
        if name in _NAMED_REFERENCES:
            following = reference[end]
            if following == "=" or (following.isascii() and following.isalnum()):
                return match[0]
            return _NAMED_REFERENCES[name] + reference[end:]
    return match[0]


def escape_attribute(value: str) -> str:
    """What to hand lol_html's ``set_attribute``: it writes the value double-quoted and escapes only ``"``."""
    return value.replace("&", "&amp;")


def srcset_urls(value: str) -> Iterable[tuple[int, int]]:
    """Start and end of each candidate's URL in a ``srcset``, split as the HTML standard does, in linear time."""
    position, length = 0, len(value)
    while position < length:
        while position < length and (value[position] in _SPACE or value[position] == ","):
            position += 1
        start = position
        while position < length and value[position] not in _SPACE:
            position += 1
        end = position
        if start == end:
            return
        if value[end - 1] == ",":
            # A URL ending in commas is a candidate without descriptors; the commas separate it from the next.
            while end > start and value[end - 1] == ",":
                end -= 1
        else:
            # Descriptors run to the next comma outside parentheses (which do not nest: ")" always closes).
            in_parentheses = False
            while position < length and (value[position] != "," or in_parentheses):
                if value[position] in "()":
                    in_parentheses = value[position] == "("
                position += 1
        if end > start:
            yield start, end


class HTMLRewriter:
    """Rewrites media URLs in HTML text; build it once, then call :meth:`rewrite` per page (thread-safe).

    ``automatic`` turns the ``<img width height>`` rule on; ``densities`` are the pixel densities of the srcset it
    adds; ``picture_formats`` (e.g. ``("avif", "webp")``) also wraps those images in a ``<picture>`` with one
    ``<source>`` per format. ``scope`` is ``"all"`` (every element) or ``"marked"`` (elements with ``data-resize``
    only). ``max_elements`` is the most elements one page may have rewritten.
    """

    def __init__(
        self,
        urls: MediaURLs,
        *,
        automatic: bool = True,
        densities: Iterable[int] = (1, 2),
        picture_formats: Iterable[str] = (),
        scope: str = "all",
        max_elements: int = 1000,
    ) -> None:
        settings = urls.settings
        self.urls = urls
        self.policy = VariantPolicy(settings)
        self.automatic = automatic
        self.densities = tuple(densities)
        self.picture_formats = tuple(picture_formats)
        unknown = [fmt for fmt in self.picture_formats if fmt not in CONTENT_TYPES]
        if unknown:
            raise ValueError(f"unknown picture formats: {', '.join(unknown)}")
        if scope not in ("all", "marked"):
            raise ValueError(f"scope must be 'all' or 'marked', got {scope!r}")
        self.scope = scope
        self.max_elements = max_elements
        # A page may write media URLs relative to its host or on the public base (a CDN); both are ours.
        self._prefixes: tuple[str, ...] = (settings.media_url,)
        if settings.public_base_url:
            self._prefixes += (settings.public_base_url.rstrip("/") + settings.media_url,)
        self._derived_prefix = settings.derived_prefix
        # A page or attribute without the media path's last name cannot hold one of its URLs, even written with
        # character references (unless the name's own letters are references: such a URL is left as written).
        # lol_html matches attribute selectors against the source text.
        self._media_name = settings.media_url.rstrip("/").rpartition("/")[2]
        attributes = [
            f'[{name}*="{self._media_name}"]' if self._media_name else f"[{name}]" for name in _READ_ATTRIBUTES
        ]
        self._selector = ", ".join(attributes)
        # Where an <img> the rewriter handles stands: these handlers match only elements the rewriter handles too.
        self._in_picture = ", ".join(f"picture img{attribute}" for attribute in attributes)
        self._in_foreign = ", ".join(f"{root} img{attribute}" for root in ("svg", "math") for attribute in attributes)

    def rewrite(self, text: str) -> str:
        """The page with its media URLs rewritten (the same object when nothing changes or the budget is spent)."""
        if self._media_name not in text:
            return text
        data = text.encode("utf-8", "surrogatepass")
        page = _Page(self, _GROWTH_FACTOR * len(data) + _GROWTH_ALLOWANCE)
        output = bytearray()
        rewriter = lolhtml.HTMLRewriter(output.extend)
        if self.picture_formats:
            # Handlers of one element run in the order they were added: these note where an <img> stands first.
            rewriter.on(self._in_picture, _Note(page, "in_picture"))
            rewriter.on(self._in_foreign, _Note(page, "in_foreign"))
        rewriter.on(self._selector, page)
        try:
            rewriter.write(data)
            rewriter.end()
        except RuntimeError as error:
            # lol_html reports a handler's exception as a RuntimeError naming it, and stops where a streaming parser
            # cannot tell markup from text (<plaintext> or <script> inside <select>): either way the page is sent
            # as the app made it.
            logger.warning("page not rewritten: %s", page.over or str(error).partition("\n")[0])
            return text
        if not page.changed:
            return text
        return output.decode("utf-8", "surrogatepass")

    def explicit_url(self, url: str) -> str | None:
        """The derivative URL for a media URL with query parameters, or ``None`` to leave ``url`` as it is."""
        key, query, fragment = self._split(url)
        if key is None or not query:
            return None
        try:
            return self._signed(key, self.policy.from_query(query)) + fragment
        except (KeyError, ValueError, PolicyError):
            # Parameters that are not ours, or values the contract refuses (MalformedPathError is a ValueError):
            # the author sees that URL misbehave, the rest of the page is still rewritten.
            return None

    def original_key(self, url: str) -> str | None:
        """The key of the original a plain media URL (no query, no fragment) points at, or ``None``."""
        key, query, fragment = self._split(url)
        return key if not (query or fragment) else None

    def _split(self, url: str) -> tuple[str | None, str, str]:
        """A media URL's key (``None`` when it is not an original's URL rewriting may sign), query, ``#fragment``."""
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
        return (key if self.policy.may_sign(key) else None), query, hash_ + fragment

    def _signed(self, key: str, variant: Variant) -> str:
        return self.urls.derivative(key, **vars(variant))

    def replace_urls(self, text: str, spans: Iterable[tuple[int, int]]) -> str | None:
        """``text`` with the explicit media URL at each span rewritten; ``None`` if none was."""
        parts, position = [], 0
        for start, end in spans:
            new = self.explicit_url(text[start:end])
            if new is not None:
                parts += [text[position:start], new]
                position = end
        if not parts:
            return None
        parts.append(text[position:])
        return "".join(parts)

    def sized_image(self, key: str, width: int | None, height: int | None) -> tuple[str, str, list[str]]:
        """``src``, ``srcset`` and ``<source>`` tags for an original shown in a width × height CSS box.

        Raises:
            MalformedPathError, PolicyError: as :meth:`MediaURLs.derivative`; also when no density fits.
        """
        variants = self.policy.for_box(width, height, self.densities)
        limit = self.urls.settings.max_output_dimension
        variants = [(v, density) for v, density in variants if max(v.width or 0, v.height or 0) <= limit]
        if not variants:
            raise PolicyError(f"derivatives are at most {limit} pixels on a side")

        def srcset(fmt: str | None) -> str:
            return ", ".join(f"{self._signed(key, _with_format(v, fmt))} {density}x" for v, density in variants)

        sources = [
            f'<source type="{CONTENT_TYPES[fmt]}" srcset="{html.escape(srcset(fmt))}">' for fmt in self.picture_formats
        ]
        return self._signed(key, variants[0][0]), srcset(None), sources


def _with_format(variant: Variant, fmt: str | None) -> Variant:
    return Variant(variant.width, variant.height, variant.fit, format=fmt)


def _dimension(value: str | None) -> int | None:
    """A ``width``/``height`` attribute that is a plain positive whole number of pixels, else ``None``."""
    value = (value or "").strip(_SPACE)
    return int(value) if _DIGITS.fullmatch(value) and int(value) > 0 else None


class _Page:
    """The rewriting of one page: lol_html's element handler, and the budget the page has spent."""

    def __init__(self, rewriter: HTMLRewriter, max_bytes: int) -> None:
        self.rewriter = rewriter
        self.elements = 0
        self.size = 0
        self.max_bytes = max_bytes
        self.changed = False
        self.over = ""
        self.in_picture = self.in_foreign = False

    def element(self, element: lolhtml.Element) -> None:
        in_picture, in_foreign = self.in_picture, self.in_foreign
        self.in_picture = self.in_foreign = False
        rewriter = self.rewriter
        # The parser keeps the first of repeated attributes (lol_html lists them all, names in lower case).
        attributes: dict[str, str] = {}
        for name, raw in element.attributes:
            attributes.setdefault(name, raw)
        if rewriter.scope == "marked" and REWRITE_MARKER not in attributes:
            return
        edits: dict[str, str] = {}
        for name, raw in attributes.items():
            if name in _URL_ATTRIBUTES:
                new = rewriter.explicit_url(decode_attribute(raw))
            elif name == "srcset":
                value = decode_attribute(raw)
                spans = list(srcset_urls(value))
                new = rewriter.replace_urls(value, spans) if len(spans) <= _MAX_CANDIDATES else None
            elif name == "style":
                value = decode_attribute(raw)
                new = rewriter.replace_urls(value, (match.span(2) for match in _CSS_URL.finditer(value)))
            else:
                continue
            if new is not None:
                edits[name] = new
        before = after = ""
        is_html = element.namespace_uri == "http://www.w3.org/1999/xhtml"
        if not edits and rewriter.automatic and element.tag_name == "img" and is_html and "srcset" not in attributes:
            key = rewriter.original_key(decode_attribute(attributes.get("src", "")))
            width = _dimension(decode_attribute(attributes.get("width", "")))
            height = _dimension(decode_attribute(attributes.get("height", "")))
            if key is not None and (width or height):
                try:
                    edits["src"], edits["srcset"], sources = rewriter.sized_image(key, width, height)
                except (ValueError, PolicyError):
                    return
                if sources and not (in_picture or in_foreign):
                    before, after = "<picture>" + "".join(sources), "</picture>"
        if not edits:
            return
        self.elements += 1
        escaped = {name: escape_attribute(value) for name, value in edits.items()}
        # What the edits write (more than they add): each attribute's name, value and quotes, and the <picture>.
        self.size += len(before) + len(after) + sum(len(name) + len(value) + 4 for name, value in escaped.items())
        if self.elements > rewriter.max_elements:
            self.over = f"more than {rewriter.max_elements} elements to rewrite"
            raise OverBudget(self.over)
        if self.size > self.max_bytes:
            self.over = f"rewriting would add more than {self.max_bytes} bytes"
            raise OverBudget(self.over)
        for name, value in escaped.items():
            element.set_attribute(name, value)
        if before:
            element.before(before, lolhtml.ContentType.HTML)
            element.after(after, lolhtml.ContentType.HTML)
        self.changed = True


class _Note:
    """Notes on the page where the element about to be handled stands (its other handler runs next)."""

    def __init__(self, page: _Page, flag: str) -> None:
        self.page, self.flag = page, flag

    def element(self, element: lolhtml.Element) -> None:
        setattr(self.page, self.flag, True)


def rewrite_body(body: bytes, headers: Headers, rewriter: HTMLRewriter, max_bytes: int) -> tuple[bytes, Headers] | None:
    """Rewrite an HTML response body as it is sent (charset, gzip or deflate) and fix its headers.

    Returns the new body and headers, or ``None`` when the body must pass through as it is: nothing to rewrite,
    an unsupported content coding, a charset that does not decode, or a decoded body over ``max_bytes``.
    ``Content-Length`` is recomputed; a strong ``ETag`` of the app's bytes would now lie, so it is replaced by a
    weak one of the rewritten page, and ``Content-MD5`` is dropped.
    """
    content_type, coding = "", ""
    for name, value in headers:
        lowered = name.lower()
        if lowered == "content-type":
            content_type = value
        elif lowered == "content-encoding":
            coding = value.strip().lower()
    decoded = _decode(body, coding, max_bytes)
    if decoded is None:
        return None
    charset = _charset(content_type, decoded)
    try:
        text = decoded.decode(charset)
    except (LookupError, UnicodeDecodeError):
        return None
    rewritten = rewriter.rewrite(text)
    if rewritten is text:
        return None
    # Entities unescaped while rewriting may not exist in a narrow charset; character references always do.
    page = rewritten.encode(charset, "xmlcharrefreplace")
    new_body = _encode(page, coding)
    etag = None
    new_headers = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == "etag":
            etag = 'W/"' + hashlib.sha256(page).hexdigest()[:32] + '"'
        elif lowered not in ("content-length", "content-md5"):
            new_headers.append((name, value))
    new_headers.append(("Content-Length", str(len(new_body))))
    if etag:
        new_headers.append(("ETag", etag))
    return new_body, new_headers


CODINGS = ("", "identity", "gzip", "x-gzip", "deflate")


def _decode(body: bytes, coding: str, max_bytes: int) -> bytes | None:
    if coding in ("", "identity"):
        return body if len(body) <= max_bytes else None
    # zlib's window bits: 31 reads gzip; 15 the zlib container RFC 9110 asks "deflate" to use; -15 the raw
    # deflate some servers send under that name anyway.
    for wbits in (31,) if coding in ("gzip", "x-gzip") else (15, -15):
        decompressor = zlib.decompressobj(wbits)
        try:
            # max_length bounds the memory a small compressed body can claim (a "zip bomb").
            data = decompressor.decompress(body, max_bytes + 1)
        except zlib.error:
            continue
        if decompressor.eof and len(data) <= max_bytes and not decompressor.unused_data:
            return data
        return None
    return None


def _encode(page: bytes, coding: str) -> bytes:
    if coding in ("", "identity"):
        return page
    wbits = 31 if coding in ("gzip", "x-gzip") else 15
    compressor = zlib.compressobj(6, zlib.DEFLATED, wbits)
    return compressor.compress(page) + compressor.flush()


def _charset(content_type: str, body: bytes) -> str:
    """The charset of an HTML body: the Content-Type's, else a ``<meta charset>`` near the top, else UTF-8."""
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip("\"'") or "utf-8"
    found = _META_CHARSET.search(body, 0, 1024)
    return found[1].decode("ascii") if found else "utf-8"
