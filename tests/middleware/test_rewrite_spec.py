"""HTML rewriting against the HTML standard and against pages carrying markup their app did not write.

Three groups:

- hostile and malformed markup, written here, that always runs: the page must read the same to a parser before
  and after rewriting, except the media attributes of real elements;
- the trust model: whatever a page asks for, only variants of the configured set are signed, and every one of them
  is one the sidecar's own policy (``Deriver.authorize``) accepts; the per-page budget;
- html5lib-tests (https://github.com/html5lib/html5lib-tests), opt-in: the tokenizer tests' attribute values
  decoded as the standard says, and every tree-construction input, with media references inserted in many places,
  parsed by html5lib before and after rewriting. The corpus is not part of this repository; point
  ``HTML5LIB_TESTS`` at a checkout (``git clone https://github.com/html5lib/html5lib-tests``; the tree-construction
  files are in its history up to commit 9329e64, before they moved to the web-platform-tests) or put it at
  ``../html5lib-tests`` next to the repository. Without it those tests skip and say so.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import lolhtml
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from webob import Request

from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import parse_path, resolve_spec
from resize_sidecar.media.local import LocalStorage
from resize_sidecar.middleware import MediaURLs
from resize_sidecar.middleware.rewrite import HTMLRewriter, decode_attribute, srcset_urls
from resize_sidecar.middleware.variants import DEFAULT_BLURS, DEFAULT_QUALITIES, DEFAULT_WIDTHS, VariantPolicy
from resize_sidecar.web.app import make_app
from tests.support.contract import contract_url
from tests.support.html_standard import (
    MEDIA_MARKUP,
    WORST_CASES,
    corpus,
    insertions,
    same_to_a_parser,
    tree_construction_inputs,
)
from tests.support.images import photo
from tests.support.servers import SECRET


def make_rewriter(**options: Any) -> HTMLRewriter:
    settings_options = {key: options.pop(key) for key in list(options) if key in Settings.__dataclass_fields__}
    settings = Settings(secrets=(SECRET,), local_root="/nonexistent", **settings_options).validate()
    return HTMLRewriter(MediaURLs(settings), **options)


REWRITER = make_rewriter(picture_formats=("webp",))
PLAIN = make_rewriter()


# --- hostile and malformed markup, always run ----------------------------------------------------------------------


ASKED = "/media/a.jpg?w=100"
SIGNED = contract_url("a.jpg", "128x", "jpg")

LEFT_AS_IT_IS = [
    pytest.param(f'<img src="x" title="<img src={ASKED} onerror=alert(1) x=>">', id="sanitizer output, < in a value"),
    pytest.param(f"<p title='<img src={ASKED}>'>x</p>", id="markup inside a single-quoted value"),
    pytest.param(f"<?php <img src={ASKED}>", id="bogus comment <?"),
    pytest.param(f"<!x <img src={ASKED}>", id="bogus comment <!x"),
    pytest.param(f'<!DOCTYPE html "<img src={ASKED}>">', id="markup in a doctype"),
    pytest.param(f"<![CDATA[<img src={ASKED}>]]>", id="CDATA outside foreign content is a comment"),
    pytest.param(f"<svg><![CDATA[<img src={ASKED}>]]></svg>", id="CDATA in SVG is text"),
    pytest.param(f"<script><!--<script></script><img src={ASKED}></script>", id="script double escape"),
    pytest.param(f"<plaintext></plaintext><img src={ASKED}>", id="nothing ends plaintext"),
    pytest.param(f"<xmp><img src={ASKED}></xmp>", id="xmp"),
    pytest.param(f"<noscript><img src={ASKED}></noscript>", id="noscript with scripting on"),
    pytest.param(f"<iframe><img src={ASKED}></iframe>", id="iframe"),
    pytest.param(f"<noembed><img src={ASKED}></noembed>", id="noembed"),
    pytest.param(f"<title><img src={ASKED}></title>", id="title"),
    pytest.param(f'<img src="{ASKED}&amph=2">', id="&amph= stays literal in an attribute"),
    pytest.param('<img src="/media/a.jpg" width="240\u00a0">', id="NBSP is not whitespace"),
    pytest.param('<img src="/media/a.jpg" width="24O">', id="not a number"),
    pytest.param(f'<img src="{ASKED}&up=1">', id="enlarging is never signed"),
    pytest.param('<img src="/media/secret/scan.jpg?fmt=png">', id="full size is never signed"),
    pytest.param(f'<img src="{ASKED}&q=80&q=90">', id="a repeated parameter"),
    pytest.param(f'<img src="https://media.example/{ASKED}">', id="another host"),
    pytest.param('<img src="/media/a.jpg?w=100%2C200">', id="an encoded comma is not a number"),
]


@pytest.mark.parametrize("page", LEFT_AS_IT_IS)
def test_markup_that_is_not_a_media_attribute_of_an_element_is_left_as_it_is(page: str) -> None:
    assert REWRITER.rewrite(page) is page


REWRITTEN = [
    pytest.param(
        f"<title-bar></title-bar><img src={ASKED}>",
        f'<title-bar></title-bar><img src="{SIGNED}">',
        id="custom element with a raw-text name",
    ),
    pytest.param(
        f"<script-x><img src={ASKED}></script-x>",
        f'<script-x><img src="{SIGNED}"></script-x>',
        id="custom element named script-",
    ),
    pytest.param(
        f"<script>x</script foo><img src={ASKED}>",
        f'<script>x</script foo><img src="{SIGNED}">',
        id="end tag with attributes",
    ),
    pytest.param(
        f'<p title="<!--"><img src={ASKED}><p title="-->">',
        f'<p title="<!--"><img src="{SIGNED}"><p title="-->">',
        id="comment opener inside an attribute",
    ),
    pytest.param(
        f'<source media="(width < 800px)" srcset="{ASKED} 1x">',
        f'<source media="(width < 800px)" srcset="{SIGNED} 1x">',
        id="< in an earlier attribute",
    ),
    pytest.param(
        f'<img alt="Revenue < costs" src={ASKED}>', f'<img alt="Revenue < costs" src="{SIGNED}">', id="< in alt"
    ),
    pytest.param('<img src="&#47;media&sol;a.jpg?w=100">', f'<img src="{SIGNED}">', id="character references"),
    pytest.param(
        f'<img src="{ASKED}&amp;q=80">',
        f'<img src="{contract_url("a.jpg", "128x-q75", "jpg")}">',
        id="&amp; and a quality snapped to the list",
    ),
    pytest.param(
        f'<img SRC={ASKED} src="/other.jpg">',
        f'<img SRC="{SIGNED}" src="/other.jpg">',
        id="the first of repeated attributes is the one the parser keeps",
    ),
    pytest.param(
        f"<!-- a -- b --!><img src={ASKED}> -->", f'<!-- a -- b --!><img src="{SIGNED}"> -->', id="--!> ends a comment"
    ),
    pytest.param(f"<svg><image href={ASKED} /></svg>", f'<svg><image href="{SIGNED}" /></svg>', id="SVG image href"),
    pytest.param(f"<svg><img src={ASKED}></svg>", f'<svg><img src="{SIGNED}"></svg>', id="img breaks out of SVG"),
    pytest.param(
        f"<math><mi><img src={ASKED}></mi></math>",
        f'<math><mi><img src="{SIGNED}"></mi></math>',
        id="img in a MathML text integration point",
    ),
    pytest.param(
        f"<div style='background:url( \"{ASKED}\" )'>",
        f'<div style="background:url( &quot;{SIGNED}&quot; )">',
        id="style url() with quotes written back escaped",
    ),
]


@pytest.mark.parametrize(("page", "expected"), REWRITTEN)
def test_media_attributes_of_real_elements_are_rewritten_and_nothing_else(page: str, expected: str) -> None:
    assert PLAIN.rewrite(page) == expected
    assert same_to_a_parser(page, expected)
    assert PLAIN.rewrite(expected) == expected


def test_everything_around_a_rewritten_attribute_passes_byte_for_byte() -> None:
    head = "<!DOCTYPE html><!-- note --><title>A &amp B</title><p class=x   id='y'>Text &copy 2024</p>"
    tail = "<script>if (a < b) { x = '<img src=/media/b.jpg?w=1>' }</script><textarea><b>x</b></textarea>"
    assert PLAIN.rewrite(f"{head}<img src={ASKED}>{tail}") == f'{head}<img src="{SIGNED}">{tail}'


def test_a_sized_image_keeps_its_attributes_and_gains_a_density_srcset() -> None:
    page = "<IMG class=a SRC='/media/p.jpg' Width=240 height=160 alt='x'>"
    one, two = contract_url("p.jpg", "256x171-fill", "jpg"), contract_url("p.jpg", "640x427-fill", "jpg")
    assert (
        PLAIN.rewrite(page) == f'<IMG class=a SRC="{one}" Width=240 height=160 alt=\'x\' srcset="{one} 1x, {two} 2x">'
    )


def test_the_picture_upgrade_is_not_added_inside_foreign_content_or_a_picture() -> None:
    for page in ("<svg><img src=/media/a.jpg width=10></svg>", "<picture><img src=/media/a.jpg width=10></picture>"):
        assert "<source" not in REWRITER.rewrite(page)
    assert REWRITER.rewrite("<p><img src=/media/a.jpg width=10></p>").startswith("<p><picture><source")
    after_another_picture = "<picture><img src=/static/x.jpg></picture><img src=/media/a.jpg width=10>"
    assert "</picture><picture><source" in REWRITER.rewrite(after_another_picture)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("a.jpg 1x, b.jpg 2x", ["a.jpg", "b.jpg"], id="descriptors"),
        pytest.param("a.jpg,b.jpg", ["a.jpg,b.jpg"], id="a comma inside a URL"),
        pytest.param("a.jpg,, b.jpg", ["a.jpg", "b.jpg"], id="trailing commas end a URL"),
        pytest.param("a.jpg (x, y) 1x, b.jpg", ["a.jpg", "b.jpg"], id="comma inside parentheses"),
        pytest.param("a.jpg ((x) 1x, b.jpg", ["a.jpg", "b.jpg"], id="parentheses do not nest"),
        pytest.param(" \t,,", [], id="only separators"),
    ],
)
def test_srcset_candidates_are_split_as_the_standard_does(value: str, expected: list[str]) -> None:
    assert [value[start:end] for start, end in srcset_urls(value)] == expected


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("a&amp;b", "a&b"),
        ("a&ampb", "a&ampb"),
        ("a&amp=b", "a&amp=b"),
        ("a&amp b", "a& b"),
        ("&#47;&#x2F;&sol;", "///"),
        ("&notit;", "&notit;"),
        ("&notin;", "\u2209"),
        ("&#0;&#x110000;", "\ufffd\ufffd"),
        ("&#128;", "\u20ac"),
        ("a\r\nb\rc\x00", "a\nb\nc\ufffd"),
        ("&#" + "0" * 5000 + "47;", "/"),
        ("&#" + "9" * 5000 + ";b", "\ufffdb"),
        ("&#x" + "F" * 5000 + "g", "\ufffdg"),
    ],
)
def test_attribute_values_are_decoded_as_the_tokenizer_decodes_them(raw: str, decoded: str) -> None:
    assert decode_attribute(raw) == decoded


def test_a_numeric_reference_of_thousands_of_digits_does_not_stop_the_pages_rewriting() -> None:
    # Python's int() refuses more than 4300 digits; the parser reads any such reference past U+10FFFF as U+FFFD.
    rewriter = make_rewriter()
    page = f'<img src="/media/a.jpg?w=640&amp;x=&#{"9" * 5000};"><img src="/media/b.jpg?w=640">'
    rewritten = rewriter.rewrite(page)
    assert rewritten.count("/media/_r/") == 1  # the second image; the first has a parameter rewriting does not know
    assert "/media/b.jpg?w=640" not in rewritten


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "<",
                ">",
                '"',
                "'",
                "=",
                " ",
                "/",
                "!",
                "-",
                "&",
                "#",
                ";",
                "img",
                "src",
                "a",
                "/media/a.jpg",
                "?w=9",
                "<!--",
                "-->",
                "<script>",
                "</script>",
                "<svg>",
                "width=9",
                "<textarea>",
                "<![CDATA[",
                "]]>",
                "&amp;",
                "\u00a0",
            ]
        ),
        max_size=30,
    ).map("".join)
)
def test_any_markup_reads_the_same_after_rewriting_and_rewriting_again_changes_nothing(page: str) -> None:
    once = PLAIN.rewrite(page)
    assert same_to_a_parser(page, once), once
    assert PLAIN.rewrite(once) == once


# --- the trust model -------------------------------------------------------------------------------------------------


def signed_spec(url: str, settings: Settings) -> Any:
    path = parse_path(url, media_url=settings.media_url, derived_prefix=settings.derived_prefix)
    return path, resolve_spec(path.spec, settings.preset_specs)


QUERIES = st.lists(
    st.tuples(
        st.sampled_from(["w", "h", "q", "blur", "fit", "g", "fmt", "sharp", "up", "bg"]),
        st.one_of(st.integers(0, 99999).map(str), st.sampled_from(["fill", "pad", "fit", "n", "webp", "png", "1"])),
    ),
    max_size=5,
).map(lambda pairs: "&".join(f"{name}={value}" for name, value in pairs))


@hypothesis_settings(max_examples=400, deadline=None)
@given(QUERIES)
def test_whatever_a_page_asks_for_only_the_configured_variant_set_is_signed(query: str) -> None:
    rewriter = PLAIN
    settings = rewriter.urls.settings
    page = f'<img src="/media/private/scan.jpg?{query}"><img src="/media/p.jpg" width="{len(query) + 1}" height="7">'
    for url in re.findall(r"/media/_r/[^\" ,]+", rewriter.rewrite(page)):
        _, spec = signed_spec(url, settings)
        assert (spec.width in DEFAULT_WIDTHS) or (spec.width is None and spec.height in DEFAULT_WIDTHS), spec
        assert not spec.upscale and spec.background is None and not spec.full_size
        assert spec.quality in (None, *DEFAULT_QUALITIES) and spec.blur in (None, *DEFAULT_BLURS)


def test_one_comment_of_many_sizes_gets_at_most_one_variant_per_ladder_step() -> None:
    comment = "".join(f'<img src="/media/secret/scan.jpg?w={width}&fmt=png">' for width in range(1, 5000, 7))
    urls = set(re.findall(r'src="([^"]+)"', PLAIN.rewrite(comment)))
    assert len(urls) == len(DEFAULT_WIDTHS)


def test_every_url_rewriting_signs_is_one_the_sidecar_makes_under_its_own_policy(tmp_path: Path) -> None:
    lists = {"allowed_widths": ("320", "640", "1280"), "allowed_qualities": ("60",), "allowed_blurs": ("10",)}
    rewriter = make_rewriter(picture_formats=("webp",), **lists)
    storage = LocalStorage(tmp_path / "media")
    for key in ("a.jpg", "b.png", "c.jpg", "d.jpg"):
        storage.put(key, photo(1600, 1200, key[-3:]), "", "")
    sidecar = make_app(replace(rewriter.urls.settings, lock_dir=str(tmp_path / "locks")), storage=storage)
    page = (
        '<img src="/media/a.jpg" width="500" height="300"><img src="/media/b.png" height="90">'
        '<img src="/media/c.jpg?w=9000&q=99&blur=1"><img srcset="/media/d.jpg?h=2000 1x">'
    )
    urls = re.findall(r"/media/_r/[^\" ,]+", rewriter.rewrite(page))
    assert len(urls) == 10
    for url in urls:
        response = Request.blank(url).get_response(sidecar)
        assert response.status_int == 200, (url, response.text)
        _, spec = signed_spec(url, rewriter.urls.settings)
        assert (spec.width or spec.height) in (320, 640, 1280), url


def test_key_prefixes_confine_rewriting_to_the_originals_pages_may_show() -> None:
    rewriter = make_rewriter(rewrite_key_prefixes=("photos/",))
    page = '<img src="/media/secret/scan.jpg?w=100"><img src="/media/photos/cat.jpg?w=100">'
    assert rewriter.rewrite(page) == (
        f'<img src="/media/secret/scan.jpg?w=100"><img src="{contract_url("photos/cat.jpg", "128x", "jpg")}">'
    )


def test_the_marked_scope_rewrites_only_the_apps_own_elements() -> None:
    rewriter = make_rewriter(scope="marked")
    marker = rewriter.urls.marker
    page = f"<img src={ASKED}{marker}><div class=comment><img src=/media/secret.jpg?w=100></div>"
    assert (
        rewriter.rewrite(page)
        == f'<img src="{SIGNED}" data-resize><div class=comment><img src=/media/secret.jpg?w=100></div>'
    )


def test_an_unknown_scope_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="scope"):
        make_rewriter(scope="some")


def test_the_ladder_never_goes_past_the_output_cap() -> None:
    policy = VariantPolicy(Settings(max_output_dimension=1000))
    assert policy.widths[-1] == 828 and policy.side(5000) == 828


# --- the budget: linear work, bounded output ---------------------------------------------------------------------


@pytest.mark.parametrize("page", WORST_CASES.values(), ids=WORST_CASES.keys())
def test_worst_case_pages_end_with_a_bounded_page(page: str) -> None:
    result = REWRITER.rewrite(page)
    assert len(result.encode()) <= 17 * len(page.encode()) + 65536


def test_a_page_with_more_elements_than_the_budget_passes_through_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rewriter = make_rewriter(max_elements=3)
    page = f"<img src={ASKED}>" * 4
    with caplog.at_level(logging.WARNING, logger="resize_sidecar.middleware.rewrite"):
        assert rewriter.rewrite(page) is page
    assert "more than 3 elements" in caplog.text
    assert rewriter.rewrite(f"<img src={ASKED}>" * 3) == f'<img src="{SIGNED}">' * 3


def test_a_page_that_would_grow_past_its_budget_passes_through_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    rewriter = make_rewriter(picture_formats=("avif", "webp"), densities=(1, 2, 3), max_elements=10**6)
    page = "<img src=/media/a.jpg width=9>" * 20000
    with caplog.at_level(logging.WARNING, logger="resize_sidecar.middleware.rewrite"):
        assert rewriter.rewrite(page) is page
    assert "bytes" in caplog.text


def test_the_worst_cases_are_read_as_the_parser_reads_them() -> None:
    assert REWRITER.rewrite(WORST_CASES["16k unclosed img tags"]) is WORST_CASES["16k unclosed img tags"]
    commas = '<img srcset="' + "," * 65536 + '/media/a.jpg?w=1">'
    assert REWRITER.rewrite(commas) == f'<img srcset="{"," * 65536}{contract_url("a.jpg", "16x", "jpg")}">'


# --- html5lib-tests, opt-in ----------------------------------------------------------------------------------------


def _unescape_test_string(text: str) -> str:
    return (
        text.encode("utf-16", "surrogatepass")
        .decode("utf-16")
        .encode("ascii", "backslashreplace")
        .decode("unicode-escape")
    )


def tokenizer_attribute_cases() -> Iterator[tuple[str, dict[str, str]]]:
    """Inputs of the tokenizer tests that are one start tag with attributes in the data state, and their values."""
    for path in corpus("tokenizer"):
        if path.suffix != ".test":
            continue
        for test in json.loads(path.read_text()).get("tests", []):
            if test.get("initialStates", ["Data state"]) != ["Data state"]:
                continue
            output = test["output"]
            text = test["input"]
            if test.get("doubleEscaped"):
                text = _unescape_test_string(text)
                output = json.loads(_unescape_test_string(json.dumps(output)))
            if len(output) == 1 and output[0][0] == "StartTag" and output[0][2]:
                yield text, output[0][2]


class _Attributes:
    """lol_html's handler: the decoded attributes of the first element, first of repeated names kept.

    lol_html leaves a NUL in an attribute's name where the tokenizer puts U+FFFD; no attribute rewriting reads has
    one, so names are normalised here rather than in the rewriter.
    """

    def __init__(self) -> None:
        self.values: dict[str, str] | None = None

    def element(self, element: lolhtml.Element) -> None:
        if self.values is None:
            self.values = {}
            for name, raw in element.attributes:
                self.values.setdefault(name.replace("\x00", "\ufffd"), decode_attribute(raw))


def test_the_tokenizer_tests_attribute_values_decode_as_the_standard_says() -> None:
    cases = list(tokenizer_attribute_cases())
    wrong = []
    for text, expected in cases:
        collect = _Attributes()
        rewriter = lolhtml.HTMLRewriter(lambda chunk: None)
        rewriter.on("*", collect)
        rewriter.write(text.encode("utf-8", "surrogatepass"))
        rewriter.end()
        seen = collect.values
        if seen != expected:
            wrong.append((text, expected, seen))
    assert len(cases) > 100
    assert wrong == []


def test_tree_construction_inputs_with_media_references_read_the_same_after_rewriting() -> None:
    cases = disagreements = 0
    failures: list[tuple[str, str]] = []
    for data in tree_construction_inputs():
        for page in insertions(data, MEDIA_MARKUP):
            cases += 1
            rewritten = PLAIN.rewrite(page)
            if rewritten == page:
                continue
            if not same_to_a_parser(page, rewritten) or PLAIN.rewrite(rewritten) != rewritten:
                disagreements += 1
                failures.append((page, rewritten))
    assert cases > 10000
    assert failures[:5] == [], f"{disagreements} of {cases} pages read differently after rewriting"


def test_tree_construction_inputs_alone_pass_through_byte_for_byte() -> None:
    for data in tree_construction_inputs():
        page = data + "<!-- /media/ -->"
        assert REWRITER.rewrite(page) is page, page
