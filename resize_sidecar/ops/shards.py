"""``--shard K/N``: one of N disjoint parts of a bulk run, so that N machines (the pods of a Kubernetes Indexed Job,
the tasks of any batch runner) share it without talking to each other.

The parts are cut by original key: a stable hash of the key (SHA-256, the same on every machine and in every
process, unlike Python's ``hash()``) modulo N. Every derivative goes with its original, so two shards never write
the same object, and every key belongs to exactly one shard whatever the listing order.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass

from resize_sidecar.core.errors import SettingsError

#: What a Kubernetes Indexed Job sets in each of its pods: the pod's index, 0 to completions - 1.
INDEX_ENV = "JOB_COMPLETION_INDEX"
#: ``--shard index/N`` takes K from :data:`INDEX_ENV`.
FROM_ENV = "index"


@dataclass(frozen=True)
class Shard:
    """Part ``index`` of ``count`` (``Shard(0, 1)``: everything)."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str, environ: Mapping[str, str] | None = None) -> Shard:
        """``K/N`` with 0 <= K < N, or ``index/N`` for K from ``$JOB_COMPLETION_INDEX``.

        Raises:
            SettingsError: anything else, or ``index/N`` without the variable.
        """
        environ = os.environ if environ is None else environ
        index_text, slash, count_text = text.partition("/")
        if index_text == FROM_ENV:
            if INDEX_ENV not in environ:
                raise SettingsError(f"--shard {text}: {INDEX_ENV} is not set (a Kubernetes Indexed Job sets it)")
            index_text = environ[INDEX_ENV]
        if not (slash and index_text.isdecimal() and count_text.isdecimal()) or not int(index_text) < int(count_text):
            raise SettingsError(f"--shard: expected K/N with 0 <= K < N (or {FROM_ENV}/N), got {text!r}")
        return cls(int(index_text), int(count_text))

    def owns(self, original_key: str) -> bool:
        """Whether the original ``original_key``, and so each of its derivatives, is this shard's."""
        if self.count == 1:
            return True
        digest = hashlib.sha256(original_key.encode("utf-8", "surrogateescape")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
