"""Which HTML library the middleware's rewriting stands on: the measurements behind the choice of lol_html.

For each library installed: MB/s on the benchmark's 200 KB blog page (lol_html finding the ``<img>`` elements and
reading their ``src``; the tree builders parsing, and lexbor also serialising, as a rewriter built on a tree must),
interleaved, median [min–max] of 7 rounds; and, with html5lib-tests present, on the tree-construction tests whose
input or expected tree has an ``<img>``, whether the library sees as many HTML ``<img>`` elements as the expected
tree holds. lol_html (``python-lolhtml``) and html5lib are installed with the project; the others are not needed
by it: ``.venv/bin/pip install selectolax justhtml`` first. Run: ``.venv/bin/python bench/tokenizers.py``;
results go to ``bench/results/tokenizers.md``.
"""

from __future__ import annotations

import importlib
import platform
import re
from collections.abc import Callable
from functools import partial
from typing import Any

import lolhtml
from bench_middleware import ROUNDS, interleaved_rounds, make_page, rate
from common import RESULTS, Spread, arguments, write_results

from tests.support.html_standard import CORPUS, tree_construction_tests


class _Images:
    """lol_html's handler: counts the HTML ``<img>`` elements and reads their ``src``, as the rewriter would."""

    def __init__(self) -> None:
        self.count = 0

    def element(self, element: lolhtml.Element) -> None:
        if element.namespace_uri == "http://www.w3.org/1999/xhtml":
            element.get_attribute("src")
            self.count += 1


def lol_html_images(markup: str) -> int:
    images = _Images()
    rewriter = lolhtml.HTMLRewriter(lambda chunk: None)
    rewriter.on("img", images)
    rewriter.write(markup.encode("utf-8", "surrogatepass"))
    rewriter.end()
    return images.count


def libraries() -> dict[str, tuple[Callable[[str], object], Callable[[str], int]]]:
    """Per installed library: what the speed run calls, and how many HTML ``<img>`` it finds in a document."""
    found: dict[str, tuple[Callable[[str], object], Callable[[str], int]]] = {
        "lol_html (python-lolhtml)": (lol_html_images, lol_html_images)
    }
    modules: dict[str, Any] = {}
    for name in ("selectolax.lexbor", "justhtml", "html5lib"):
        try:
            modules[name] = importlib.import_module(name)
        except ImportError:
            continue
    if "selectolax.lexbor" in modules:
        parser = modules["selectolax.lexbor"].LexborHTMLParser
        found["lexbor (selectolax)"] = (
            lambda markup: parser(markup).html,
            lambda markup: len(parser(markup).css("img")),
        )
    if "justhtml" in modules:
        document = modules["justhtml"].JustHTML
        found["justhtml"] = (document, lambda markup: len(document(markup).query("img")))
    if "html5lib" in modules:
        html5lib = modules["html5lib"]
        found["html5lib"] = (
            html5lib.parse,
            lambda markup: len(html5lib.parse(markup).findall(".//{http://www.w3.org/1999/xhtml}img")),
        )
    return found


def agreement(count_images: Callable[[str], int]) -> tuple[int, int, list[str]]:
    """Tests where the library's ``<img>`` count matches the expected tree's; how many tests; the inputs it missed."""
    matched, total, missed = 0, 0, []
    for data, document in tree_construction_tests():
        expected = sum(1 for line in document if re.fullmatch(r"\|\s*<img>", line))
        if not expected and "img" not in data.lower() and "image" not in data.lower():
            continue
        total += 1
        try:
            seen = count_images(data)
        except Exception:  # a library that fails on an input disagrees with it
            seen = -1
        if seen == expected:
            matched += 1
        else:
            missed.append(data)
    return matched, total, missed


def main() -> None:
    arguments(__doc__).parse_args()
    page = make_page()
    size = len(page.encode())
    found = libraries()
    times = interleaved_rounds({name: partial(speed, page) for name, (speed, _) in found.items()}, 3)
    corpus = (CORPUS / "tree-construction").is_dir()
    rows = []
    for name, (_, count_images) in found.items():
        cells = rate(size, Spread.of(times[name]).as_dict())
        if corpus:
            matched, total, missed = agreement(count_images)
            shown = "; ".join(f"`{data[:40]}`" for data in missed[:3])
            cells += f" | {matched}/{total} | {shown}"
        rows.append(f"| {name} | {cells} |")
    header = "| library | MB/s | `<img>` agreement | inputs it disagrees on |" if corpus else "| library | MB/s |"
    rule = "|---|---|---|---|" if corpus else "|---|---|"
    missing = "" if corpus else f"\nhtml5lib-tests not found at {CORPUS}: no agreement column.\n"
    written = write_results(
        RESULTS,
        "tokenizers",
        f"""# HTML libraries for the middleware's rewriting

Machine: {platform.machine()}, Python {platform.python_version()}; the {size / 1000:.0f} KB page of
`bench/bench_middleware.py`, median [min–max] of {ROUNDS} interleaved rounds. Produced by `bench/tokenizers.py`.

{header}
{rule}
{chr(10).join(rows)}
{missing}""",
    )
    print(written.read_text())


if __name__ == "__main__":
    main()
