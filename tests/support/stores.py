"""The S3 implementations the store-parametrised tests run against."""

from __future__ import annotations

from typing import NamedTuple


class S3Endpoint(NamedTuple):
    store: str  #: "moto" or "rgw"
    url: str
