"""Requests released together, to make real servers race."""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


def fetch_together(urls: list[str]) -> list[Answer]:
    """GET every URL at once: each from its own thread, all released together."""
    start = threading.Barrier(len(urls))

    def fetch(url: str) -> Answer:
        start.wait()
        response = requests.get(url, timeout=60)
        return Answer(response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content)

    with ThreadPoolExecutor(len(urls)) as pool:
        return list(pool.map(fetch, urls))
