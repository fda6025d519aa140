"""Pages as a test reads them: the start tags of an HTML page, its media URLs checked against the signing contract,
and a plain GET."""

from __future__ import annotations

import urllib.request
from html.parser import HTMLParser

from resize_sidecar.core.signing import DerivativePath, parse_path, verify
from tests.support.servers import SECRET


class Page(HTMLParser):
    """The start tags of a page with their attributes."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {name: value or "" for name, value in attrs}))

    def by_id(self, element_id: str) -> dict[str, str]:
        return next(attributes for _, attributes in self.tags if attributes.get("id") == element_id)

    def media_urls(self) -> list[str]:
        """Every URL in ``src`` and ``srcset`` of the page's images and sources."""
        urls = []
        for tag, attributes in self.tags:
            if tag in ("img", "source"):
                urls += [attributes["src"]] if "src" in attributes else []
                urls += [candidate.split()[0] for candidate in attributes.get("srcset", "").split(", ") if candidate]
        return urls


def signed(url: str) -> DerivativePath:
    """The derivative a URL names, after checking its signature as the sidecar does."""
    path = parse_path(url)
    verify(path, (SECRET,))
    return path


def fetch(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.status, response.headers.get_content_type(), response.read()
