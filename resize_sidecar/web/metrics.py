"""The sidecar's Prometheus metrics: what the web room counts, and the ``/metrics`` answer.

Counters of the media work (originals read, in ``resize_sidecar.media.derive``) live beside that work and are
registered in the same registry, so ``/metrics`` shows them too.
"""

from __future__ import annotations

import logging
import os

import prometheus_client
from prometheus_client import multiprocess

from resize_sidecar.media.derive import Derivative

log = logging.getLogger(__name__)

REQUESTS = prometheus_client.Counter(
    "resize_sidecar_requests", "Requests answered, by route and status.", ["route", "status"]
)
REJECTIONS = prometheus_client.Counter(
    "resize_sidecar_rejections", "Requests refused or failed, by reason.", ["reason"]
)
TRANSFORMS = prometheus_client.Counter("resize_sidecar_transforms", "Derivatives made, by format.", ["format"])
TRANSFORM_SECONDS = prometheus_client.Histogram(
    "resize_sidecar_transform_seconds",
    "Seconds spent decoding, transforming and encoding one derivative.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EXISTING = prometheus_client.Counter(
    "resize_sidecar_existing_derivatives",
    "Derivatives answered from storage: nginx could not serve them, or a concurrent miss stored them first.",
)
STORE_FAILED = prometheus_client.Counter(
    "resize_sidecar_derivative_store_failed", "Derivatives answered but not stored because storage failed."
)
STORAGE_ERRORS = prometheus_client.Counter("resize_sidecar_storage_errors", "Requests failed by storage errors.")


def count_derivative(derivative: Derivative) -> None:
    """Count a derivative answered on a miss: made (by format, with its time), found stored, or not stored."""
    if derivative.created:
        TRANSFORMS.labels(derivative.storage_key.rsplit(".", 1)[-1]).inc()
        TRANSFORM_SECONDS.observe(derivative.transform_seconds)
    else:
        EXISTING.inc()
        if not derivative.concurrent:
            log.warning(
                "answered %s from storage: if this repeats, nginx cannot read derivatives", derivative.storage_key
            )
    if not derivative.stored:
        STORE_FAILED.inc()


def exposition() -> tuple[bytes, str]:
    """Every metric in Prometheus' text format, and its content type (without parameters)."""
    registry: prometheus_client.CollectorRegistry = prometheus_client.REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Under gunicorn each worker writes its own files; add them up for one answer.
        registry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return prometheus_client.generate_latest(registry), prometheus_client.CONTENT_TYPE_LATEST.split(";")[0]
