"""The README's comparison with its peers, and its crops sections, say what the code does.

Every "yes" in resize-sidecar's column of the table names an example, and the example is checked against the code:
a spec must parse, in its canonical spelling, with the feature's token in it. A feature marked "yes" without a check
here fails, so a row cannot turn to "yes" on words alone. The Python snippets of the crops, face-aware crops, private
images and best format sections run, and each URL they show in a comment is the one the call returns.
"""

from __future__ import annotations

import ast
import re
import time
from collections.abc import Callable

import pytest

from resize_sidecar.core import auto, private
from resize_sidecar.core.settings import Settings
from resize_sidecar.core.signing import format_spec, parse_path, parse_spec, verify
from resize_sidecar.core.urls import MediaURLs
from tests.support.servers import REPO, SECRET

COLUMNS = ["feature", "resize-sidecar", "imgproxy", "thumbor", "imaginary", "ipx", "sorl / easy-thumbnails / wagtail"]


def _spec_with(token: str) -> Callable[[str], None]:
    """A check that an example is a canonical spec with a token matching ``token`` among its options."""

    def check(example: str) -> None:
        assert format_spec(parse_spec(example)) == example, f"{example!r} is not a canonical spec"
        assert any(re.fullmatch(token, part) for part in example.split("-")[1:]), f"{example!r} has no {token!r}"

    return check


def _url_with(check_url: Callable[[str], None]) -> Callable[[str], None]:
    """A check that an example is arguments of ``MediaURLs.derivative`` (``name=value, …``) whose URL passes
    ``check_url``."""

    def check(example: str) -> None:
        pairs = (part.split("=", 1) for part in example.split(", "))
        options = {name: ast.literal_eval(value) for name, value in pairs}
        check_url(MediaURLs(Settings(secrets=(SECRET,))).derivative("a.jpg", width=100, **options))

    return check


def _is_private(url: str) -> None:
    path, query = url.split("?")
    assert path.startswith("/media/_p/"), url
    private.check(path, query, [SECRET], time.time())


def _is_auto(url: str) -> None:
    assert url.endswith(".auto"), url
    for fmt in ("avif", "webp", "jpg"):
        verify(parse_path(auto.concrete_path(url, fmt)), [SECRET], signed_format=auto.AUTO)


#: The table's rows, each with the check of its "yes"; None where there is no check yet.
CHECKS: dict[str, Callable[[str], None] | None] = {
    "Focal point for fill crops": _spec_with(r"fp[0-9]+\.[0-9]+"),
    "Face-aware crops": _spec_with("face"),
    "A user's crop rectangle": _spec_with(r"crop[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+"),
    "Rotate in quarter turns": _spec_with("r(90|180|270)"),
    "Flip": _spec_with("flip[xy]"),
    "Private, expiring derivative URLs": _url_with(_is_private),
    "Best format by `Accept`, outside `<picture>`": _url_with(_is_auto),
}


def section(title: str) -> str:
    readme = (REPO / "README.md").read_text()
    found = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", readme, re.MULTILINE | re.DOTALL)
    assert found, f"the README has no section {title!r}"
    return found[1]


def table() -> list[list[str]]:
    rows = [line for line in section("Compared with its peers").splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows if not row.startswith("|---")]


def test_the_table_has_the_peers_as_columns_and_one_row_per_feature() -> None:
    header, *rows = table()
    assert header == COLUMNS
    assert [row[0] for row in rows] == list(CHECKS)
    assert all(len(row) == len(COLUMNS) and all(row) for row in rows)


@pytest.mark.parametrize("feature", list(CHECKS))
def test_each_yes_of_resize_sidecar_is_true_of_the_code(feature: str) -> None:
    [ours] = [row[1] for row in table()[1:] if row[0] == feature]
    if ours == "no":
        return
    claim = re.fullmatch(r"yes: `([^`]+)`", ours)
    assert claim, f"{feature}: write 'no' or 'yes: `an example`', not {ours!r}"
    check = CHECKS[feature]
    assert check is not None, f"{feature} is marked yes: add the check of its example to CHECKS"
    check(claim[1])


@pytest.mark.parametrize(
    ("title", "urls"),
    [
        ("Crops, focal points, rotate and flip", 3),
        ("Face-aware crops", 1),
        ("Private images", 1),
        ("Best format outside `<picture>`", 1),
    ],
)
def test_the_crops_snippets_run_and_answer_the_urls_they_show(
    monkeypatch: pytest.MonkeyPatch, title: str, urls: int
) -> None:
    monkeypatch.setenv("RESIZE_SIDECAR_SECRETS", "a-secret-for-the-readme-0123456789")
    [snippet] = re.findall(r"```python\n(.*?)```", section(title), re.DOTALL)
    namespace: dict[str, object] = {}
    shown = 0
    lines = snippet.splitlines()
    for line, following in zip(lines, [*lines[1:], ""], strict=True):
        if line.startswith("urls.derivative("):
            url = eval(line, namespace)
            expected = re.fullmatch(r"# '(.*)'", following)
            assert expected, f"no URL shown after {line!r}"
            # "…" stands for a signature or a token, or for a private URL's expiry.
            pattern = re.escape(expected[1]).replace("…", "([0-9a-f]{32}|[0-9]{10})")
            assert re.fullmatch(pattern, url), (url, expected[1])
            shown += 1
        elif line and not line.startswith("#"):
            exec(line, namespace)
    assert shown == urls
