"""The sidecar app called in this process: requests through webob, signed URLs, metric counters, and storage that
counts what a request touched."""

from __future__ import annotations

from typing import Any

from webob import Request

from resize_sidecar.core.errors import StorageError
from resize_sidecar.core.signing import format_path
from resize_sidecar.media.storage import Storage
from resize_sidecar.web.app import SidecarApp
from tests.support.servers import SECRET


class CountingStorage:
    """Real storage that counts calls (and can be told to fail writes), to prove what a request touched."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.calls: list[str] = []
        self.fail_writes = False

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if not callable(method):
            return method

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            if self.fail_writes and name.startswith("put"):
                raise StorageError(f"{name} refused for the test")
            return method(*args, **kwargs)

        return counted


def get(app: SidecarApp, path: str, method: str = "GET", **environ: Any) -> Any:
    """``app``'s answer to ``path``, sent as gunicorn hands it over (``RAW_URI`` unquoted)."""
    request = Request.blank(path, method=method, environ={"RAW_URI": path, **environ})
    return request.get_response(app)


def url(key: str, spec: str, fmt: str) -> str:
    return format_path(key, spec, fmt, SECRET)


def counter(metric: Any, *labels: str) -> float:
    """A Prometheus counter's value (of ``labels``' child, when given)."""
    return float((metric.labels(*labels) if labels else metric)._value.get())
