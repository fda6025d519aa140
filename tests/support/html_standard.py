"""The HTML standard's view of a page, to hold rewriting to it: html5lib's tree before and after, the pages that
cost a rewriter most, and the html5lib-tests corpus (opt-in) with media references inserted into its inputs."""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast
from xml.etree.ElementTree import Element

import html5lib
import pytest

from tests.support.servers import REPO

#: html5lib-tests (https://github.com/html5lib/html5lib-tests): a checkout, at HTML5LIB_TESTS or next to the repository.
CORPUS = Path(os.environ.get("HTML5LIB_TESTS", REPO.parent / "html5lib-tests"))
HTML_NAMESPACE = "http://www.w3.org/1999/xhtml"
MEDIA_ATTRIBUTES = frozenset({"src", "srcset", "href", "poster", "style"})


def parse(markup: str) -> Element:
    """The tree a browser builds (scripting on: ``<noscript>`` holds text, as lol_html reads it too)."""
    parser = html5lib.HTMLParser(tree=html5lib.getTreeBuilder("etree"), namespaceHTMLElements=True)
    return cast(Element, parser.parse(markup, scripting=True))


def shape(node: Element, rewritten: bool) -> Iterator[tuple[Any, ...]]:
    """The tree as a list of nodes, with the values of media attributes of HTML elements replaced by what they
    are (ours, rewritten, or as written); ``rewritten`` lets an HTML ``<img>`` gain the srcset rewriting adds."""
    tag = node.tag if isinstance(node.tag, str) else repr(node.tag)  # comments' tag is a function
    attributes = dict(node.attrib)
    for name in MEDIA_ATTRIBUTES & attributes.keys():
        if "/media/_r/" in attributes[name]:
            attributes[name] = "signed"
    if rewritten and tag == f"{{{HTML_NAMESPACE}}}img" and attributes.get("src") == "signed":
        attributes.setdefault("srcset", "signed")
    yield tag, sorted(attributes.items()), node.text
    for child in node:
        yield from shape(child, rewritten)
        yield "tail", child.tail


def same_to_a_parser(before: str, after: str) -> bool:
    """Whether ``after`` parses to the tree of ``before`` but for rewritten media attributes of real elements."""
    original = list(shape(parse(before), rewritten=True))
    rewritten = list(shape(parse(after), rewritten=True))
    return original == rewritten or _only_media_attributes_differ(original, rewritten)


def _only_media_attributes_differ(original: list[tuple[Any, ...]], rewritten: list[tuple[Any, ...]]) -> bool:
    if len(original) != len(rewritten):
        return False
    for old, new in zip(original, rewritten, strict=True):
        if old == new:
            continue
        if old[0] != new[0] or old[0] == "tail" or old[2] != new[2]:
            return False
        old_attributes, new_attributes = dict(old[1]), dict(new[1])
        changed = {
            name
            for name in old_attributes.keys() | new_attributes.keys()
            if old_attributes.get(name) != new_attributes.get(name)
        }
        if not all(name in MEDIA_ATTRIBUTES and new_attributes.get(name) == "signed" for name in changed):
            return False
    return True


WORST_CASES = {
    "srcset of 64k commas": '<img srcset="/media/a.jpg?w=1' + "," * 65536 + 'x 1x">',
    "8k unclosed url( in a style": '<div style="' + "url(" * 8192 + '/media/a.jpg?w=1">',
    "16k unclosed img tags": '<img src="/media/a.jpg?w=1' * 16384,
    "64k sized images in pictures": '<img src="/media/a.jpg" width="64" height="48">' * 65536,
    "1 MB attribute value": '<img alt="' + "/media/" * 150_000 + '" src="/media/a.jpg?w=1">',
}


def corpus(folder: str) -> list[Path]:
    files = sorted(Path(path) for path in glob.glob(str(CORPUS / folder / "*")))
    if not files:
        pytest.skip(
            f"html5lib-tests not found at {CORPUS / folder}: set HTML5LIB_TESTS to a checkout"
            " (tests/middleware/test_rewrite_spec.py says how)"
        )
    return files


def tree_construction_tests() -> Iterator[tuple[str, list[str]]]:
    """Each document test of the tree-construction files (scripting on or either): its input and expected tree."""
    for path in corpus("tree-construction"):
        if path.suffix != ".dat":
            continue
        for block in re.split(r"\n\n(?=#data\n)", path.read_text(encoding="utf-8")):
            sections: dict[str, list[str]] = {}
            current = None
            for line in block.split("\n"):
                if line.startswith("#") and line[1:] in (
                    "data",
                    "errors",
                    "new-errors",
                    "document",
                    "document-fragment",
                    "script-off",
                    "script-on",
                ):
                    current = sections.setdefault(line[1:], [])
                elif current is not None:
                    current.append(line)
            if "data" in sections and "document-fragment" not in sections and "script-off" not in sections:
                yield "\n".join(sections["data"]), sections.get("document", [])


def tree_construction_inputs() -> Iterator[str]:
    return (data for data, _ in tree_construction_tests())


MEDIA_MARKUP = (
    '<img src="/media/k.jpg?w=100&amp;fmt=webp" alt="a < b"><img src=/media/k.jpg width=240 height=160>'
    "<a href='/media/k.jpg?preset=&amp;w=50'>x</a><span style=\"background:url(/media/k.jpg?w=40)\"></span>"
    '<img srcset="/media/k.jpg?w=100 1x,/media/k.jpg?h=200 2x"><video poster=/media/k.jpg?w=64></video>'
)


def insertions(data: str, markup: str, most: int = 8) -> Iterator[str]:
    """``data`` with ``markup`` at its start, its end, and after each of its first ``most`` '>' and '<'."""
    yield markup + data
    yield data + markup
    positions = [match.end() for match in re.finditer(">", data)][:most]
    positions += [match.start() for match in re.finditer("<", data)][:most]
    for position in sorted(set(positions)):
        yield data[:position] + markup + data[position:]
