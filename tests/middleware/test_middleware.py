"""The middleware in-process: the URL builder, HTML rewriting, response handling and development serving."""

from __future__ import annotations

import gzip
import hashlib
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from webob import Request

from resize_sidecar.core.errors import MalformedPathError, PolicyError, SettingsError
from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import parse_path, resolve_spec, verify
from resize_sidecar.middleware import HTML, MediaMiddleware, MediaURLs
from resize_sidecar.middleware.core import ENVIRON_KEY
from resize_sidecar.middleware.rewrite import HTMLRewriter, rewrite_body
from tests.support.contract import contract_url
from tests.support.images import photo
from tests.support.servers import SECRET
from tests.support.templates import jinja_environment, media_template_engine

MakeSettings = Callable[..., Settings]
Headers = list[tuple[str, str]]

AWKWARD_KEYS = [
    pytest.param("photos/cat.jpg", id="plain"),
    pytest.param("Fotos/Été 2024/café crème.JPEG", id="unicode and spaces"),
    pytest.param("a+b/c%d&e=f.png", id="plus percent ampersand"),
    pytest.param("why?/not#this;one~.webp", id="question mark and hash"),
    pytest.param("/".join(f"d{n}" for n in range(30)) + "/deep.gif", id="deep path"),
    pytest.param("日本/写真 😀.avif", id="cjk and emoji"),
    pytest.param("no-extension", id="no extension"),
]
# Builder arguments and the spec text the contract spells them as.
OPTIONS = [
    pytest.param({"width": 400}, "400x", id="width"),
    pytest.param({"height": 300}, "x300", id="height"),
    pytest.param(
        {"width": 400, "height": 300, "fit": "fill", "gravity": "sm", "quality": 70},
        "400x300-fill-sm-q70",
        id="fill smart quality",
    ),
    pytest.param({"width": 40, "height": 30, "fit": "pad", "background": "ff8800"}, "40x30-pad-bgff8800", id="pad"),
    pytest.param({"width": 10, "upscale": True, "blur": 5, "sharpen": True}, "10x-up-blur5-sharp", id="filters"),
    pytest.param({}, "0x0", id="full size"),
    pytest.param({"preset": "thumb"}, "thumb", id="preset"),
    pytest.param(
        {"width": 256, "height": 256, "fit": "fill", "focal": (0.42, 0.3), "crop": (0.1, 0, 0.6, 0.9)},
        "256x256-fill-fp420.300-crop100.0.600.900",
        id="focal point and crop as fractions",
    ),
    pytest.param({"width": 300, "rotate": 90, "flip": "x"}, "300x-r90-flipx", id="rotate and flip"),
    pytest.param(
        {"width": 9, "height": 9, "fit": "fill", "focal": (0.5, 0.5), "crop": (0, 0, 1, 1), "rotate": 0},
        "9x9-fill",
        id="the defaults of focal point, crop and rotate left out",
    ),
]


@pytest.fixture
def settings(make_settings: MakeSettings) -> Settings:
    return make_settings(presets={"thumb": "120x120-fill"}, max_output_dimension=2000)


@pytest.fixture
def urls(settings: Settings) -> MediaURLs:
    return MediaURLs(settings)


@pytest.fixture
def rewriter(urls: MediaURLs) -> HTMLRewriter:
    return HTMLRewriter(urls)


# --- imports -------------------------------------------------------------------------------------------------------


def test_importing_the_middleware_loads_neither_pyvips_nor_boto3() -> None:
    code = (
        "import sys\n"
        "from resize_sidecar.middleware import MediaMiddleware, MediaURLs\n"
        "heavy = sorted(m for m in ('pyvips', 'boto3', 'botocore') if m in sys.modules)\n"
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


# --- the URL builder -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", AWKWARD_KEYS)
@pytest.mark.parametrize(("options", "spec"), OPTIONS)
def test_derivative_urls_match_the_contract_byte_for_byte(
    urls: MediaURLs, settings: Settings, key: str, options: dict[str, Any], spec: str
) -> None:
    url = urls.derivative(key, format="webp", **options)
    assert url == contract_url(key, spec, "webp")
    # And the sidecar's own parser and verifier take it.
    path = parse_path(url)
    verify(path, settings.secrets)
    assert (path.key, path.spec, path.fmt) == (key, spec, "webp")
    resolve_spec(path.spec, settings.preset_specs)


@pytest.mark.parametrize(
    ("key", "fmt"),
    [
        ("a/photo.jpg", "jpg"),
        ("a/photo.JPEG", "jpg"),
        ("a/logo.png", "png"),
        ("a/anim.gif", "gif"),
        ("a/modern.webp", "webp"),
        ("a/modern.avif", "avif"),
        ("a/scan.tiff", "jpg"),
        ("a/no-extension", "jpg"),
    ],
)
def test_the_default_format_is_the_originals_when_the_contract_has_it(urls: MediaURLs, key: str, fmt: str) -> None:
    assert urls.derivative(key, width=100) == contract_url(key, "100x", fmt)


def test_public_base_url_makes_every_url_absolute(make_settings: MakeSettings) -> None:
    urls = MediaURLs(make_settings(public_base_url="https://cdn.example.com/"))
    assert urls.derivative("a b.jpg", width=10) == contract_url("a b.jpg", "10x", "jpg", "https://cdn.example.com")
    assert urls.url("a b.jpg") == "https://cdn.example.com/media/a%20b.jpg"


def test_original_urls_are_percent_encoded_under_media_url(urls: MediaURLs) -> None:
    assert urls.url("Été/a+b%c?.jpg") == "/media/%C3%89t%C3%A9/a%2Bb%25c%3F.jpg"


@pytest.mark.parametrize(
    ("call", "error"),
    [
        pytest.param(lambda u: u.url("../etc/passwd"), MalformedPathError, id="dot-dot key"),
        pytest.param(lambda u: u.url("_r/a.jpg"), MalformedPathError, id="derived prefix key"),
        pytest.param(lambda u: u.derivative("a//b.jpg", width=1), MalformedPathError, id="empty segment"),
        pytest.param(lambda u: u.derivative("a.jpg", width=1, fit="zoom"), MalformedPathError, id="unknown fit"),
        pytest.param(lambda u: u.derivative("a.jpg", width=1, fit="fill"), MalformedPathError, id="fill one side"),
        pytest.param(lambda u: u.derivative("a.jpg", width=1, format="bmp"), MalformedPathError, id="unknown format"),
        pytest.param(lambda u: u.derivative("a.jpg", preset="nope"), MalformedPathError, id="unknown preset"),
        pytest.param(lambda u: u.derivative("a.jpg", preset="thumb", width=3), MalformedPathError, id="preset+box"),
        pytest.param(lambda u: u.derivative("a.jpg", width=2001), PolicyError, id="over max output"),
        pytest.param(lambda u: u.srcset("a.jpg", [3000, 4000]), PolicyError, id="every width over max"),
        pytest.param(lambda u: u.srcset("a.jpg", []), MalformedPathError, id="no width"),
        pytest.param(lambda u: u.derivative("a.jpg", width=1, crop=(0, 0, 2, 1)), MalformedPathError, id="crop > 1"),
        pytest.param(lambda u: u.derivative("a.jpg", width=1, crop=(0.6, 0, 0.5, 1)), MalformedPathError, id="past"),
        pytest.param(lambda u: u.derivative("a.jpg", width=1, focal=(0.2, 0.2)), MalformedPathError, id="focal in fit"),
        pytest.param(lambda u: u.derivative("a.jpg", width=1, rotate=45), MalformedPathError, id="rotate 45"),
        pytest.param(lambda u: u.derivative("a.jpg", width=1, rotate=180, flip="x"), MalformedPathError, id="2nd turn"),
        pytest.param(lambda u: u.derivative("a.jpg", preset="thumb", rotate=90), MalformedPathError, id="preset+turn"),
    ],
)
def test_the_builder_refuses_what_the_sidecar_would_refuse(
    urls: MediaURLs, call: Callable[[MediaURLs], str], error: type[Exception]
) -> None:
    with pytest.raises(error):
        call(urls)


def test_a_builder_without_a_secret_is_refused(make_settings: MakeSettings) -> None:
    with pytest.raises(SettingsError, match="RESIZE_SIDECAR_SECRETS"):
        MediaURLs(make_settings(secrets=()))


def test_srcset_has_one_candidate_per_width_keeping_the_aspect_ratio(urls: MediaURLs) -> None:
    srcset = urls.srcset("a.jpg", [300, 600, 2400], aspect_ratio=1.5, fit="fill")
    assert srcset == (
        f"{contract_url('a.jpg', '300x200-fill', 'jpg')} 300w, {contract_url('a.jpg', '600x400-fill', 'jpg')} 600w"
    )  # 2400 is over MAX_OUTPUT_DIMENSION (2000) and left out


def test_density_srcset_multiplies_the_box(urls: MediaURLs) -> None:
    assert urls.density_srcset("a.png", width=100, height=None, densities=(1, 3)) == (
        f"{contract_url('a.png', '100x', 'png')} 1x, {contract_url('a.png', '300x', 'png')} 3x"
    )


class _Elements(HTMLParser):
    """Start tags with their attributes, as a browser's tokenizer sees them."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)


def test_picture_has_a_source_per_format_and_an_escaped_fallback_img(urls: MediaURLs) -> None:
    markup = urls.picture("a b.jpg", width=200, height=100, alt='<"Tom & Jerry">', attrs={"loading": "lazy"})
    assert isinstance(markup, HTML) and markup.__html__() == markup
    elements = _Elements(markup).elements
    assert [tag for tag, _ in elements] == ["picture", "source", "source", "img"]
    assert elements[1][1] == {
        "type": "image/avif",
        "srcset": f"{contract_url('a b.jpg', '200x100', 'avif')} 1x, {contract_url('a b.jpg', '400x200', 'avif')} 2x",
        # The browser sizes the box from the source it picks: the <img>'s size is on each.
        "width": "200",
        "height": "100",
    }
    assert elements[2][1]["type"] == "image/webp"
    img = elements[3][1]
    assert img["src"] == contract_url("a b.jpg", "200x100", "jpg")
    assert (img["width"], img["height"], img["alt"], img["loading"]) == ("200", "100", '<"Tom & Jerry">', "lazy")
    assert '<"Tom' not in markup


def test_img_with_widths_uses_width_descriptors_and_sizes(urls: MediaURLs) -> None:
    markup = urls.img(
        "k.jpg", width=300, height=200, widths=[300, 600], sizes="50vw", fit="fill", attrs={"class_": "x"}
    )
    ((_, img),) = _Elements(markup).elements
    assert img["srcset"] == (
        f"{contract_url('k.jpg', '300x200-fill', 'jpg')} 300w, {contract_url('k.jpg', '600x400-fill', 'jpg')} 600w"
    )
    assert (img["sizes"], img["class"]) == ("50vw", "x")


def test_img_with_a_preset_has_no_srcset(urls: MediaURLs) -> None:
    ((_, img),) = _Elements(urls.img("k.jpg", preset="thumb")).elements
    assert img == {"src": contract_url("k.jpg", "thumb", "jpg"), "alt": ""}


# --- HTML rewriting: the pure function -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        pytest.param(
            '<img src="/media/c.jpg?w=400&amp;h=300&amp;fit=fill&amp;fmt=webp">',
            f'<img src="{contract_url("c.jpg", "640x480-fill", "webp")}">',
            id="src, escaped ampersands, snapped up the ladder keeping the box's shape",
        ),
        pytest.param(
            "<img src='/media/c.jpg?w=4&g=n&fit=fill&h=3'>",
            f'<img src="{contract_url("c.jpg", "16x12-fill-n", "jpg")}">',
            id="single quotes, any order",
        ),
        pytest.param(
            "<A HREF=/media/c.jpg?preset=thumb>x</A>",
            f'<A HREF="{contract_url("c.jpg", "thumb", "jpg")}">x</A>',
            id="unquoted, upper case",
        ),
        pytest.param(
            '<video poster="/media/v.png?w=64&q=60">',
            f'<video poster="{contract_url("v.png", "64x-q50", "png")}">',
            id="poster, quality snapped to the nearest allowed",
        ),
        pytest.param(
            '<img srcset="/media/c.jpg?w=1 1x,/media/c.jpg?w=2 2x, /other.jpg 3x">',
            f'<img srcset="{contract_url("c.jpg", "16x", "jpg")} 1x,{contract_url("c.jpg", "16x", "jpg")} 2x,'
            ' /other.jpg 3x">',
            id="srcset candidates",
        ),
        pytest.param(
            "<div style=\"background: url('/media/b.jpg?w=9&blur=3&sharp') no-repeat\">",
            f"<div style=\"background: url('{contract_url('b.jpg', '16x-blur5-sharp', 'jpg')}') no-repeat\">",
            id="inline style url()",
        ),
        pytest.param(
            '<a href="/media/doc%20one.png?w=50&fmt=avif#top">',
            f'<a href="{contract_url("doc one.png", "64x", "avif")}#top">',
            id="percent-encoded key, fragment",
        ),
        pytest.param(
            '<img src="/media/caf\u00e9.jpg?w=5&fit=pad&h=5">',
            f'<img src="{contract_url("café.jpg", "16x16-pad", "jpg")}">',
            id="unicode key",
        ),
    ],
)
def test_explicit_media_urls_become_signed_derivatives(rewriter: HTMLRewriter, html: str, expected: str) -> None:
    assert rewriter.rewrite(html) == expected


@pytest.mark.parametrize(
    "html",
    [
        pytest.param('<img src="/media/c.jpg?v=3">', id="not our parameter"),
        pytest.param('<img src="/media/c.jpg?w=400&v=3">', id="ours and another"),
        pytest.param('<img src="/media/c.jpg?w=abc">', id="not a number"),
        pytest.param('<img src="/media/c.jpg?w=1&w=2">', id="repeated"),
        pytest.param('<img src="/media/c.jpg?fmt=png">', id="full size"),
        pytest.param('<img src="/media/c.jpg?w=4&up=1">', id="enlarged"),
        pytest.param('<img src="/media/c.jpg?w=4&h=4&fit=pad&bg=00ff00">', id="a background colour"),
        pytest.param('<img src="/media/c.jpg?w=0">', id="zero width"),
        pytest.param('<img src="/media/c.jpg?fit=fill&w=3">', id="fill needs both sides"),
        pytest.param('<img src="/media/../secret.jpg?w=3">', id="dot-dot key"),
        pytest.param('<img src="/media/%ff.jpg?w=3">', id="not UTF-8"),
        pytest.param('<img src="/media/_r/c.jpg/3x-0123.jpg?w=3">', id="already a derivative"),
        pytest.param('<img src="https://evil.example/media/c.jpg?w=3">', id="another host"),
        pytest.param('<img data-src="/media/c.jpg?w=3">', id="other attribute"),
        pytest.param("<script>var s = '<img src=\"/media/c.jpg?w=3\">';</script>", id="script"),
        pytest.param("<style>.a { background: url(/media/c.jpg?w=3) }</style>", id="style element"),
        pytest.param("<textarea><img src=/media/c.jpg?w=3></textarea>", id="textarea"),
        pytest.param('<!-- <img src="/media/c.jpg?w=3"> -->', id="comment"),
        pytest.param("<p>see /media/c.jpg?w=3</p>", id="text"),
    ],
)
def test_what_is_not_an_explicit_media_url_is_left_as_it_is(rewriter: HTMLRewriter, html: str) -> None:
    assert rewriter.rewrite(html) == html


def test_sized_images_get_a_derivative_of_their_box_and_a_density_srcset(rewriter: HTMLRewriter) -> None:
    html = '<img class="hero" src="/media/p/cat.jpg" width="400" height="300" alt="A cat" loading="lazy">'
    ((tag, attributes),) = _Elements(rewriter.rewrite(html)).elements
    assert attributes == {
        "class": "hero",
        "src": contract_url("p/cat.jpg", "640x480-fill", "jpg"),
        "width": "400",
        "height": "300",
        "alt": "A cat",
        "loading": "lazy",
        "srcset": f"{contract_url('p/cat.jpg', '640x480-fill', 'jpg')} 1x, "
        f"{contract_url('p/cat.jpg', '828x621-fill', 'jpg')} 2x",
    }


@pytest.mark.parametrize(
    ("html", "src", "srcset"),
    [
        pytest.param(
            "<img src=/media/a.png width=50>",
            contract_url("a.png", "64x", "png"),
            f"{contract_url('a.png', '64x', 'png')} 1x, {contract_url('a.png', '128x', 'png')} 2x",
            id="width only",
        ),
        pytest.param(
            "<IMG SRC='/media/a.jpg' HEIGHT=' 20 '/>",
            contract_url("a.jpg", "x32", "jpg"),
            f"{contract_url('a.jpg', 'x32', 'jpg')} 1x, {contract_url('a.jpg', 'x48', 'jpg')} 2x",
            id="height only, self-closing",
        ),
        pytest.param(
            '<img src="/media/a.jpg" width="1500" height="10">',
            contract_url("a.jpg", "1920x13-fill", "jpg"),
            f"{contract_url('a.jpg', '1920x13-fill', 'jpg')} 1x",
            id="2x beyond the top of the ladder is the same variant, listed once",
        ),
    ],
)
def test_sized_image_variants(rewriter: HTMLRewriter, html: str, src: str, srcset: str) -> None:
    ((_, attributes),) = _Elements(rewriter.rewrite(html)).elements
    assert (attributes["src"], attributes["srcset"]) == (src, srcset)


@pytest.mark.parametrize(
    "html",
    [
        pytest.param('<img src="/media/a.jpg">', id="no size"),
        pytest.param('<img src="/media/a.jpg" width="100%">', id="percent width"),
        pytest.param('<img src="/media/a.jpg" width="0">', id="zero width"),
        pytest.param('<img src="/media/a.jpg" width="10" srcset="/x.jpg 2x">', id="has srcset"),
        pytest.param('<img src="/media/a.jpg#x" width="10">', id="fragment"),
        pytest.param('<img src="/static/a.jpg" width="10">', id="not media"),
        pytest.param('<img src="/media/a.jpg" width="10px">', id="not a whole number"),
        pytest.param('<img src="/media/a.jpg" width="10\u00a0">', id="NBSP is not whitespace to the parser"),
        pytest.param('<iframe src="/media/a.jpg" width="10">', id="not an img"),
    ],
)
def test_images_that_cannot_be_sized_are_left_as_they_are(rewriter: HTMLRewriter, html: str) -> None:
    assert rewriter.rewrite(html) == html


def test_automatic_sizing_can_be_turned_off(urls: MediaURLs) -> None:
    html = '<img src="/media/a.jpg" width="10"><img src="/media/b.jpg?w=5">'
    assert HTMLRewriter(urls, automatic=False).rewrite(html) == (
        f'<img src="/media/a.jpg" width="10"><img src="{contract_url("b.jpg", "16x", "jpg")}">'
    )


def test_picture_upgrade_wraps_sized_images_outside_pictures_only(urls: MediaURLs) -> None:
    rewriter = HTMLRewriter(urls, picture_formats=("avif", "webp"), densities=(1,))
    html = '<img src="/media/a.jpg" width="10"><picture><img src="/media/b.jpg" width="20"></picture>'
    elements = _Elements(rewriter.rewrite(html)).elements
    assert [(tag, attributes.get("type"), attributes.get("srcset")) for tag, attributes in elements] == [
        ("picture", None, None),
        ("source", "image/avif", f"{contract_url('a.jpg', '16x', 'avif')} 1x"),
        ("source", "image/webp", f"{contract_url('a.jpg', '16x', 'webp')} 1x"),
        ("img", None, f"{contract_url('a.jpg', '16x', 'jpg')} 1x"),
        ("picture", None, None),
        ("img", None, f"{contract_url('b.jpg', '32x', 'jpg')} 1x"),
    ]


def test_unknown_picture_formats_are_refused_at_start(urls: MediaURLs) -> None:
    with pytest.raises(ValueError, match="bmp"):
        HTMLRewriter(urls, picture_formats=("bmp",))


def test_urls_on_the_public_base_are_rewritten_and_the_host_comes_from_settings(make_settings: MakeSettings) -> None:
    rewriter = HTMLRewriter(MediaURLs(make_settings(public_base_url="https://cdn.example.com")))
    html = '<img src="https://cdn.example.com/media/a.jpg?w=3"><img src="/media/b.jpg?w=4">'
    assert rewriter.rewrite(html) == (
        f'<img src="{contract_url("a.jpg", "16x", "jpg", "https://cdn.example.com")}">'
        f'<img src="{contract_url("b.jpg", "16x", "jpg", "https://cdn.example.com")}">'
    )


def test_a_page_without_media_urls_is_returned_as_the_same_object(rewriter: HTMLRewriter) -> None:
    page = "<html><body><img src='/static/a.png'></body></html>" * 100
    assert rewriter.rewrite(page) is page


HTML_PIECES = st.sampled_from(
    [
        '<img src="/media/a.jpg" width="10" height="20">',
        "<img src=/media/b%20c.png width=5>",
        "<img src='/media/d.jpg?w=4&amp;h=2&amp;fit=fill'>",
        '<img srcset="/media/a.jpg?w=1 1x, /media/a.jpg?w=2 2x">',
        '<a href="/media/x.jpg?w=3">',
        "<div style=\"background:url('/media/y.jpg?w=8')\">",
        "<picture>",
        "</picture>",
        "<script>",
        "</script>",
        "<style>",
        "</style>",
        "<!--",
        "-->",
        "<img ",
        "<IMG",
        " src=",
        " width=7",
        " height='3'",
        ' srcset="',
        "/media/",
        "/media/_r/",
        "?w=1",
        "&amp;",
        "&",
        '"',
        "'",
        "<",
        ">",
        "/>",
        " ",
        "=",
        ",",
        "é",
        "\x00",
    ]
)
HTML_FRAGMENTS = st.lists(st.one_of(HTML_PIECES, st.text(max_size=4)), max_size=24).map("".join)


@hypothesis_settings(max_examples=400, deadline=None)
@given(HTML_FRAGMENTS)
def test_rewriting_is_idempotent(fragment: str) -> None:
    rewriter = _shared_rewriter()
    once = rewriter.rewrite(fragment)
    assert rewriter.rewrite(once) == once


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_rewriting_any_text_never_raises(text: str) -> None:
    assert isinstance(_shared_rewriter().rewrite("/media/" + text), str)


def _shared_rewriter() -> HTMLRewriter:
    # Hypothesis runs each test function many times; function-scoped fixtures would be shared silently anyway.
    settings = Settings(secrets=(SECRET,), local_root="/nonexistent").validate()
    return HTMLRewriter(MediaURLs(settings), picture_formats=("webp",))


# --- HTML rewriting: encoded bodies ----------------------------------------------------------------------------------


PAGE = '<html><body><img src="/media/a.jpg?w=16">caf\u00e9</body></html>'
REWRITTEN = PAGE.replace("/media/a.jpg?w=16", contract_url("a.jpg", "16x", "jpg"))


@pytest.mark.parametrize(
    ("coding", "compress", "decompress"),
    [
        pytest.param("gzip", gzip.compress, gzip.decompress, id="gzip"),
        pytest.param("deflate", zlib.compress, zlib.decompress, id="deflate, zlib container"),
        pytest.param("deflate", lambda b: zlib.compress(b, wbits=-15), zlib.decompress, id="deflate, raw"),
    ],
)
def test_compressed_bodies_are_decoded_rewritten_and_encoded_again(
    rewriter: HTMLRewriter, coding: str, compress: Callable[[bytes], bytes], decompress: Callable[[bytes], bytes]
) -> None:
    body = compress(PAGE.encode())
    headers = [("Content-Type", "text/html; charset=utf-8"), ("Content-Encoding", coding), ("Content-Length", "1")]
    result = rewrite_body(body, headers, rewriter, 10_000)
    assert result is not None
    new_body, new_headers = result
    assert decompress(new_body).decode() == REWRITTEN
    assert ("Content-Encoding", coding) in new_headers
    assert ("Content-Length", str(len(new_body))) in new_headers and ("Content-Length", "1") not in new_headers


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        pytest.param(PAGE.encode(), [("Content-Encoding", "br")], id="brotli"),
        pytest.param(PAGE.encode(), [("Content-Encoding", "gzip")], id="gzip header, not gzip"),
        pytest.param(gzip.compress(PAGE.encode())[:-8], [("Content-Encoding", "gzip")], id="truncated gzip"),
        pytest.param(gzip.compress(PAGE.encode() + b" " * 20_000), [("Content-Encoding", "gzip")], id="gzip bomb"),
        pytest.param(PAGE.encode() + b"\xff\xfe", [], id="not UTF-8"),
        pytest.param(PAGE.encode(), [("Content-Type", "text/html; charset=no-such-charset")], id="unknown charset"),
        pytest.param(b"<p>nothing to rewrite</p>", [], id="nothing to rewrite"),
    ],
)
def test_bodies_that_cannot_be_rewritten_are_left_to_pass_through(
    rewriter: HTMLRewriter, body: bytes, headers: Headers
) -> None:
    assert rewrite_body(body, [("Content-Type", "text/html"), *headers], rewriter, 10_000) is None


@pytest.mark.parametrize(
    ("content_type", "head"),
    [
        pytest.param("text/html; charset=iso-8859-1", b"", id="charset in Content-Type"),
        pytest.param("text/html", b'<meta charset="iso-8859-1">', id="meta charset"),
        pytest.param(
            "text/html", b'<meta http-equiv="Content-Type" content="text/html; charset=latin1">', id="meta http-equiv"
        ),
    ],
)
def test_the_pages_charset_is_kept(rewriter: HTMLRewriter, content_type: str, head: bytes) -> None:
    page = head + '<img src="/media/\u00e9t\u00e9.jpg?w=3" alt="\u00e9t\u00e9">'.encode("latin-1")
    result = rewrite_body(page, [("Content-Type", content_type)], rewriter, 10_000)
    assert result is not None
    assert result[0] == head + f'<img src="{contract_url("été.jpg", "16x", "jpg")}" alt="\xe9t\xe9">'.encode("latin-1")


def test_the_etag_of_a_rewritten_page_is_a_weak_etag_of_what_is_sent(rewriter: HTMLRewriter) -> None:
    result = rewrite_body(PAGE.encode(), [("Content-Type", "text/html"), ("ETag", '"app"')], rewriter, 10_000)
    assert result is not None
    etags = [value for name, value in result[1] if name == "ETag"]
    assert etags == [f'W/"{hashlib.sha256(REWRITTEN.encode()).hexdigest()[:32]}"']


# --- the middleware around WSGI apps ---------------------------------------------------------------------------------


class Recorder:
    """A WSGI app with a fixed answer that records whether its iterable was closed."""

    def __init__(self, body: Iterable[bytes], headers: Headers, status: str = "200 OK") -> None:
        self.body, self.headers, self.status = body, headers, status
        self.closed = False
        self.environ: dict[str, Any] = {}

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        self.environ = environ
        start_response(self.status, list(self.headers))
        return _ClosableList(self.body, self)


class _ClosableList(list[bytes]):
    def __init__(self, body: Iterable[bytes], owner: Recorder) -> None:
        super().__init__(body)
        self.owner = owner

    def close(self) -> None:
        self.owner.closed = True


def call(app: Any, path: str = "/", method: str = "GET", **environ: Any) -> tuple[str, Headers, bytes]:
    """One request straight through WSGI (no webob Response in between), returning exactly what was sent."""
    request_environ = Request.blank(path, environ={"REQUEST_METHOD": method, **environ}).environ
    started: list[Any] = []

    def start_response(status: str, headers: Headers, exc_info: Any = None) -> Callable[[bytes], None]:
        started[:] = [status, headers]
        return lambda data: None

    result = app(request_environ, start_response)
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return started[0], started[1], body


def _ignore_start(status: str, headers: Headers, exc_info: Any = None) -> Callable[[bytes], None]:
    return lambda data: None


def html_app(body: bytes = PAGE.encode(), *extra: tuple[str, str], status: str = "200 OK") -> Recorder:
    headers = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body))), *extra]
    return Recorder([body], headers, status)


def test_html_pages_are_rewritten_with_a_correct_content_length(settings: Settings) -> None:
    app = html_app()
    status, headers, body = call(MediaMiddleware(app, settings))
    assert (status, body.decode()) == ("200 OK", REWRITTEN)
    assert ("Content-Length", str(len(body))) in headers
    assert app.closed


def test_the_url_builder_is_in_the_environ(settings: Settings) -> None:
    app = html_app(b"<p>hi</p>")
    middleware = MediaMiddleware(app, settings)
    call(middleware)
    assert app.environ[ENVIRON_KEY] is middleware.urls


@pytest.mark.parametrize(
    ("app", "method", "environ"),
    [
        pytest.param(
            Recorder([b"\x89PNG..."], [("Content-Type", "image/png"), ("Content-Length", "7")]),
            "GET",
            {},
            id="not HTML",
        ),
        pytest.param(html_app(status="404 Not Found"), "GET", {}, id="not 200"),
        pytest.param(html_app(b"", ("ETag", '"x"'), status="304 Not Modified"), "GET", {}, id="304"),
        pytest.param(html_app(gzip.compress(PAGE.encode()), ("Content-Encoding", "br")), "GET", {}, id="brotli"),
        pytest.param(html_app(PAGE.encode(), ("Cache-Control", "no-transform")), "GET", {}, id="no-transform"),
        pytest.param(html_app(PAGE.encode() * 1000), "GET", {}, id="over the size limit"),
        pytest.param(
            Recorder([PAGE.encode()] * 1000, [("Content-Type", "text/html")]),
            "GET",
            {},
            id="over the size limit, no length",
        ),
        pytest.param(html_app(b"<p>\xff\xfe /media/a.jpg?w=1</p>"), "GET", {}, id="undecodable"),
        pytest.param(
            Recorder([b"<a href='/x'>"], [("Content-Type", "text/html"), ("Location", "/next")], "302 Found"),
            "GET",
            {"HTTP_HOST": "evil.example"},
            id="redirect, hostile Host",
        ),
    ],
)
def test_responses_that_are_not_rewritten_pass_through_byte_for_byte(
    settings: Settings, app: Recorder, method: str, environ: dict[str, str]
) -> None:
    wrapped = MediaMiddleware(app, settings, max_rewrite_bytes=10_000)
    assert call(wrapped, method=method, **environ) == call(app, method=method, **environ)
    assert app.closed


def test_head_of_a_page_passes_without_the_length_and_etag_its_get_will_not_have(settings: Settings) -> None:
    app = html_app(b"", ("ETag", '"v1"'), ("Cache-Control", "max-age=60"))
    status, headers, body = call(MediaMiddleware(app, settings), method="HEAD")
    assert (status, body) == ("200 OK", b"")
    assert headers == [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "max-age=60")]


def test_a_rewritten_page_answers_304_to_its_own_etag(settings: Settings) -> None:
    middleware = MediaMiddleware(html_app(PAGE.encode(), ("ETag", '"v1"'), ("Cache-Control", "no-cache")), settings)
    _, headers, _ = call(middleware)
    etag = dict(headers)["ETag"]
    assert etag.startswith('W/"') and etag != '"v1"'
    status, headers, body = call(middleware, HTTP_IF_NONE_MATCH=f'"other", {etag}')
    assert (status, body) == ("304 Not Modified", b"")
    assert sorted(headers) == [("Cache-Control", "no-cache"), ("ETag", etag)]
    assert call(middleware, HTTP_IF_NONE_MATCH='"v1"')[0] == "200 OK"


def test_gzip_pages_are_rewritten_and_sent_gzip_encoded(settings: Settings) -> None:
    app = html_app(gzip.compress(PAGE.encode()), ("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding"))
    status, headers, body = call(MediaMiddleware(app, settings))
    assert gzip.decompress(body).decode() == REWRITTEN
    assert dict(headers)["Content-Length"] == str(len(body))
    assert ("Content-Encoding", "gzip") in headers and ("Vary", "Accept-Encoding") in headers


def test_hostile_host_headers_change_nothing(make_settings: MakeSettings) -> None:
    settings = make_settings(public_base_url="https://cdn.example.com")
    middleware = MediaMiddleware(html_app(), settings)
    plain = call(middleware)
    hostile = call(middleware, HTTP_HOST="evil.example", HTTP_X_FORWARDED_HOST="evil.example")
    assert plain == hostile
    assert b"evil" not in hostile[2] and b"https://cdn.example.com/media/_r/a.jpg/" in hostile[2]


def test_a_stream_of_unknown_length_passes_through_as_it_comes(settings: Settings) -> None:
    produced = []

    def streaming(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/html")])
        for n in range(3):
            produced.append(n)
            yield f'<img src="/media/a.jpg?w={n + 1}">'.encode()

    result = MediaMiddleware(streaming, settings)(Request.blank("/").environ, _ignore_start)
    iterator = iter(result)
    assert next(iterator) == b'<img src="/media/a.jpg?w=1">'
    assert produced == [0]  # the middleware did not read ahead
    assert list(iterator) == [b'<img src="/media/a.jpg?w=2">', b'<img src="/media/a.jpg?w=3">']


def test_an_app_that_starts_its_response_when_iterated_is_rewritten(settings: Settings) -> None:
    def lazy(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/html"), ("Content-Length", str(len(PAGE.encode())))])
        yield PAGE.encode()

    status, headers, body = call(MediaMiddleware(lazy, settings))
    assert body.decode() == REWRITTEN and dict(headers)["Content-Length"] == str(len(body))


def test_an_app_that_uses_write_is_rewritten(settings: Settings) -> None:
    def legacy(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/html")])
        write(PAGE.encode()[:20])
        return [PAGE.encode()[20:]]

    assert call(MediaMiddleware(legacy, settings))[2].decode() == REWRITTEN


def test_an_error_page_started_with_exc_info_replaces_a_held_page(settings: Settings) -> None:
    def failing(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/html")])
        try:
            raise RuntimeError("template failed")
        except RuntimeError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"oops /media/a.jpg?w=1"]

    assert call(MediaMiddleware(failing, settings)) == (
        "500 Internal Server Error",
        [("Content-Type", "text/plain")],
        b"oops /media/a.jpg?w=1",
    )


def test_without_rewriting_the_apps_iterable_is_returned_as_it_is(settings: Settings) -> None:
    app = html_app()
    result = MediaMiddleware(app, settings, rewrite_html=False)(Request.blank("/").environ, _ignore_start)
    assert isinstance(result, _ClosableList) and b"".join(result) == PAGE.encode()


# --- development serving ---------------------------------------------------------------------------------------------


def not_found_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("418 I'm a teapot", [("Content-Type", "text/plain")])
    return [b"the app"]


@pytest.fixture
def media_root(settings: Settings) -> Path:
    root = Path(settings.local_root)
    (root / "Été").mkdir(parents=True)
    (root / "Été" / "a b+c.jpg").write_bytes(b"original bytes")
    (root.parent / "outside.jpg").write_bytes(b"secret")
    (root / "link.jpg").symlink_to(root.parent / "outside.jpg")
    return root


def serving(settings: Settings, **overrides: Any) -> MediaMiddleware:
    return MediaMiddleware(not_found_app, replace(settings, **overrides), serve_media=True)


def test_development_serving_answers_originals_when_settings_allow(settings: Settings, media_root: Path) -> None:
    response = Request.blank("/media/%C3%89t%C3%A9/a%20b%2Bc.jpg").get_response(serving(settings, serve_originals=True))
    assert (response.status_int, response.body, response.content_type) == (200, b"original bytes", "image/jpeg")
    hidden = Request.blank("/media/%C3%89t%C3%A9/a%20b%2Bc.jpg").get_response(serving(settings))
    assert hidden.status_int == 404


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("profile.html", "application/octet-stream"), ("page.svg", "application/octet-stream"), ("b.PNG", "image/png")],
)
def test_development_serving_types_originals_only_as_images_with_nosniff(
    settings: Settings, media_root: Path, name: str, content_type: str
) -> None:
    (media_root / name).write_bytes(b"<script>alert(1)</script>")
    response = Request.blank(f"/media/{name}").get_response(serving(settings, serve_originals=True))
    assert (response.status_int, response.content_type) == (200, content_type)
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_development_serving_never_answers_the_private_prefix(settings: Settings, media_root: Path) -> None:
    manifest = media_root / ".resize-sidecar" / "upload" / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("{}")
    response = Request.blank("/media/.resize-sidecar/upload/manifest.json").get_response(
        serving(settings, serve_originals=True)
    )
    assert response.status_int == 404


@pytest.mark.parametrize(
    "path",
    [
        "/media/../outside.jpg",
        "/media/%2e%2e/outside.jpg",
        "/media/link.jpg",
        "/media/%C3%89t%C3%A9",
        "/media/",
        "/media/%ff.jpg",
        "/media/a%00.jpg",
    ],
)
def test_development_serving_never_leaves_the_media_root(settings: Settings, media_root: Path, path: str) -> None:
    response = Request.blank(path).get_response(serving(settings, serve_originals=True))
    assert response.status_int == 404
    assert b"secret" not in response.body


def test_development_serving_answers_stored_derivatives_from_disk(
    settings: Settings, urls: MediaURLs, media_root: Path
) -> None:
    url = urls.derivative("Été/a b+c.jpg", width=10)
    stored = media_root / parse_path(url).storage_key(settings.derived_prefix)
    stored.parent.mkdir(parents=True)
    stored.write_bytes(b"stored derivative")
    response = Request.blank(url).get_response(serving(settings))
    assert (response.status_int, response.body) == (200, b"stored derivative")
    assert (response.content_type, response.headers["X-Content-Type-Options"]) == ("image/jpeg", "nosniff")


def test_other_paths_go_to_the_app(settings: Settings, media_root: Path) -> None:
    assert Request.blank("/mediafile.jpg").get_response(serving(settings)).body == b"the app"


def test_development_serving_refuses_s3_unless_allowed(make_settings: MakeSettings) -> None:
    s3 = make_settings(storage="s3", s3_bucket="prod-bucket")
    with pytest.raises(SettingsError, match="allow_s3"):
        MediaMiddleware(not_found_app, s3, serve_media=True)
    assert MediaMiddleware(not_found_app, s3, serve_media=True, allow_s3=True).media is not None
    assert MediaMiddleware(not_found_app, s3).media is None


def test_the_middleware_needs_a_secret(make_settings: MakeSettings) -> None:
    with pytest.raises(SettingsError, match="SECRETS"):
        MediaMiddleware(not_found_app, make_settings(secrets=()))


def test_development_serving_makes_missing_derivatives_through_the_sidecar(
    settings: Settings, urls: MediaURLs, media_root: Path
) -> None:
    import pyvips

    (media_root / "Été" / "photo.jpg").write_bytes(photo(640, 480))
    middleware = serving(settings)
    url = urls.derivative("Été/photo.jpg", width=200, height=200, fit="fill", format="webp")
    response = Request.blank(url, environ={"RAW_URI": url}).get_response(middleware)
    assert (response.status_int, response.content_type) == (200, "image/webp")
    image = pyvips.Image.new_from_buffer(response.body, "")
    assert (image.width, image.height) == (200, 200)
    assert (media_root / parse_path(url).storage_key(settings.derived_prefix)).read_bytes() == response.body
    forged = url.replace(url.rsplit("-", 1)[1], "0" * 32 + ".webp")
    assert Request.blank(forged, environ={"RAW_URI": forged}).get_response(middleware).status_int == 403


@pytest.mark.parametrize("key", AWKWARD_KEYS)
def test_the_sidecar_answers_every_url_the_builder_makes(settings: Settings, urls: MediaURLs, key: str) -> None:
    from resize_sidecar.web.app import make_app

    original = Path(settings.local_root) / key
    original.parent.mkdir(parents=True, exist_ok=True)
    original.write_bytes(photo(48, 32))
    sidecar = make_app(settings)
    for options, _ in (param.values for param in OPTIONS):
        url = urls.derivative(key, **cast(dict[str, Any], options))
        response = Request.blank(url, environ={"RAW_URI": url}).get_response(sidecar)
        assert response.status_int == 200, (url, response.text)


# --- framework glue --------------------------------------------------------------------------------------------------


def test_jinja_gets_media_url_as_a_global_and_a_filter(urls: MediaURLs) -> None:
    template = jinja_environment(urls).from_string(
        "{{ media_url('a b.jpg', width=10) }} {{ 'a b.jpg'|media_url }} {{ 'c.png'|media_url(height=5, fit='fit') }}\n"
        "{{ media_url.img('a.jpg', width=10, alt='<x>') }}"
    )
    urls_line, markup = template.render().split("\n")
    assert urls_line.split() == [
        contract_url("a b.jpg", "10x", "jpg"),
        "/media/a%20b.jpg",
        contract_url("c.png", "x5", "png"),
    ]
    assert markup == urls.img("a.jpg", width=10, alt="<x>")  # escaped once, by the builder


def test_django_template_tags_use_the_builder_from_the_request(urls: MediaURLs) -> None:
    template = media_template_engine().from_string(
        '{% load media_urls %}{% media_url key width=10 fit="fill" height=10 %}|{% media_url key %}|'
        '{% media_srcset key "100,200" format="webp" %}|'
        '{% media_img key width=10 alt="<x>" loading="lazy" densities="1" %}|'
        '{% media_picture key width=10 formats="webp" densities="1" %}'
    )
    from django.template import Context

    request = type("Request", (), {"META": {ENVIRON_KEY: urls}})()
    built, original, srcset, img, picture = template.render(Context({"key": "a b.jpg", "request": request})).split("|")
    assert (built, original) == (contract_url("a b.jpg", "10x10-fill", "jpg"), "/media/a%20b.jpg")
    assert srcset == f"{contract_url('a b.jpg', '100x', 'webp')} 100w, {contract_url('a b.jpg', '200x', 'webp')} 200w"
    assert img == urls.img("a b.jpg", width=10, alt="<x>", densities=(1,), attrs={"loading": "lazy"})
    assert picture == urls.picture("a b.jpg", width=10, formats=("webp",), densities=(1,))
