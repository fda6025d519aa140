"""Benchmark of the middleware: URL signing, HTML rewriting, and the latency it adds to an app.

Each figure is measured against its baseline in the same run, interleaved, and reported as a median:

- signing: ``MediaURLs.derivative`` (distinct keys) against ``signing.format_path``;
- rewriting: a realistic 200 KB page with 100 images, through ``HTMLRewriter.rewrite`` and through the whole
  middleware, against the unwrapped app;
- pass-through: a hello-world app in-process and under gunicorn over HTTP, wrapped and unwrapped.

Goals: signing under 10 µs per URL, rewriting at least 20 MB/s, pass-through overhead under 5%.
Run: ``.venv/bin/python bench/bench_middleware.py`` (about a minute); results go to ``bench/results/middleware.md``.
"""

from __future__ import annotations

import http.client
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from middleware import MediaMiddleware, MediaURLs
from middleware.rewrite import HTMLRewriter
from resize_sidecar.settings import Settings
from resize_sidecar.signing import DerivativeSpec, format_path

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "middleware.md"
SETTINGS = Settings(secrets=("bench-secret-0123456789abcdef",), local_root="/nonexistent").validate()
ROUNDS = 7


def make_page(images: int = 100, size: int = 200_000) -> str:
    """A blog-like page: cards of text and links, ``images`` media images (plain sized ones and explicit URLs)."""
    parts = [
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Journal</title>'
        '<link rel="stylesheet" href="/static/site.css"><script src="/static/app.js" defer></script></head>'
        '<body><nav><a href="/">Home</a> <a href="/about">About</a></nav><main>'
    ]
    length, index = len(parts[0]), 0
    while length < size:
        card = [
            f'<article class="card" id="post-{index}"><h2><a href="/posts/{index}">Notes from the field, part {index}'
            '</a></h2><p class="meta">Posted by <a href="/people/ana">Ana</a> on 2024-05-01</p>'
            "<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore "
            "et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris.</p>"
        ]
        if index < images:
            key = f"photos/2024/{index:03d}/IMG_{4000 + index}.jpg"
            if index % 2:
                card.append(f'<img src="/media/{key}" width="400" height="300" alt="Photo {index}" loading="lazy">')
            else:
                card.append(f'<img src="/media/{key}?w=400&amp;h=300&amp;fit=fill&amp;fmt=webp" alt="Photo {index}">')
        card.append('<footer><a href="#top">Top</a> · <a href="/tags/travel">travel</a></footer></article>')
        text = "".join(card)
        parts.append(text)
        length += len(text)
        index += 1
    parts.append("</main><footer>© Journal</footer></body></html>")
    return "".join(parts)


def median_seconds(function: Callable[[], object], repeat: int) -> float:
    """Median time of one call, over ROUNDS rounds of ``repeat`` calls."""
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(repeat):
            function()
        times.append((time.perf_counter() - started) / repeat)
    return statistics.median(times)


def interleaved(functions: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median per-call time of each function, rounds interleaved so that machine noise hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(ROUNDS):
        for name, function in functions.items():
            started = time.perf_counter()
            for _ in range(repeat):
                function()
            times[name].append((time.perf_counter() - started) / repeat)
    return {name: statistics.median(values) for name, values in times.items()}


def bench_signing() -> dict[str, float]:
    urls = MediaURLs(SETTINGS)
    secret = SETTINGS.secrets[0]
    spec = DerivativeSpec(400, 300, "fill")
    keys = iter(range(10**9))

    def builder() -> None:
        urls.derivative(f"photos/2024/{next(keys)}/IMG.jpg", width=400, height=300, fit="fill")

    def primitive() -> None:
        format_path(f"photos/2024/{next(keys)}/IMG.jpg", spec, "jpg", secret)

    def repeated_key() -> None:
        urls.derivative("photos/2024/1/IMG.jpg", width=400, height=300, fit="fill")

    result = interleaved({"builder": builder, "format_path": primitive, "same key": repeated_key}, 5000)
    return {
        "builder_us": result["builder"] * 1e6,
        "format_path_us": result["format_path"] * 1e6,
        "same_key_us": result["same key"] * 1e6,
        "urls_per_second": 1 / result["builder"],
    }


def html_app(page: bytes) -> Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]:
    headers = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(page)))]

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", headers)
        return [page]

    return app


def call(app: Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]) -> bytes:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "SERVER_NAME": "bench", "SERVER_PORT": "80"}
    return b"".join(app(environ, lambda status, headers, exc_info=None: None))  # type: ignore[arg-type]


def bench_rewrite() -> dict[str, float]:
    page = make_page()
    rewriter = HTMLRewriter(MediaURLs(SETTINGS))
    rewritten = rewriter.rewrite(page)
    # 50 explicit URLs, and 50 sized images with a src and two srcset candidates each.
    assert rewritten.count("/media/_r/") == 50 + 50 * 3, "every image on the page must be rewritten"
    plain = html_app(page.encode())
    wrapped = MediaMiddleware(plain, SETTINGS)
    text = median_seconds(lambda: HTMLRewriter(MediaURLs(SETTINGS)).rewrite(page), 20)
    text_warm = median_seconds(lambda: rewriter.rewrite(page), 20)
    result = interleaved({"plain": lambda: call(plain), "wrapped": lambda: call(wrapped)}, 20)
    size = len(page.encode())
    return {
        "page_bytes": size,
        "rewrite_cold_ms": text * 1e3,
        "rewrite_cold_mb_s": size / text / 1e6,
        "rewrite_warm_ms": text_warm * 1e3,
        "rewrite_warm_mb_s": size / text_warm / 1e6,
        "app_plain_us": result["plain"] * 1e6,
        "app_wrapped_ms": result["wrapped"] * 1e3,
        "middleware_mb_s": size / (result["wrapped"] - result["plain"]) / 1e6,
    }


def hello(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Hello, world: the app whose latency the middleware must not noticeably change."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [b"Hello, world!"]


hello_wrapped = MediaMiddleware(hello, SETTINGS)


def bench_pass_through_in_process() -> dict[str, float]:
    result = interleaved({"plain": lambda: call(hello), "wrapped": lambda: call(hello_wrapped)}, 20_000)
    return {
        "plain_us": result["plain"] * 1e6,
        "wrapped_us": result["wrapped"] * 1e6,
        "added_us": (result["wrapped"] - result["plain"]) * 1e6,
    }


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _request(port: int) -> float:
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/")
    response = connection.getresponse()
    assert response.read() == b"Hello, world!"
    connection.close()
    return time.perf_counter() - started


def bench_pass_through_http(requests: int = 1500) -> dict[str, float]:
    """Both apps under gunicorn (one sync worker each), requests alternating between them, one at a time."""
    servers = {}
    try:
        for name in ("hello", "hello_wrapped"):
            port = _free_port()
            command = [sys.executable, "-m", "gunicorn", "--chdir", str(HERE), "--bind", f"127.0.0.1:{port}"]
            command += ["--workers", "1", "--log-level", "warning", f"bench_middleware:{name}"]
            servers[name] = (port, subprocess.Popen(command))
        for port, _ in servers.values():
            deadline = time.monotonic() + 20
            while True:
                try:
                    _request(port)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        times: dict[str, list[float]] = {name: [] for name in servers}
        for _ in range(requests):
            for name, (port, _) in servers.items():
                times[name].append(_request(port))
    finally:
        for _, process in servers.values():
            process.terminate()
            process.wait(timeout=10)
    plain, wrapped = (statistics.median(times[name]) for name in ("hello", "hello_wrapped"))
    return {"plain_us": plain * 1e6, "wrapped_us": wrapped * 1e6, "overhead_percent": (wrapped / plain - 1) * 100}


def report(results: dict[str, dict[str, float]]) -> str:
    signing, rewrite = results["signing"], results["rewrite"]
    process, http_ = results["pass_through_in_process"], results["pass_through_http"]
    return f"""# Middleware benchmark

Machine: {platform.machine()}, Python {platform.python_version()}, {platform.system()}; medians of {ROUNDS} rounds,
each figure measured against its baseline in the same run. Produced by `bench/bench_middleware.py`.

| what | result | baseline (same run) | ratio | goal |
|---|---|---|---|---|
| signing, distinct keys | {signing["builder_us"]:.1f} µs/URL ({signing["urls_per_second"]:,.0f} URLs/s) | `signing.format_path` {signing["format_path_us"]:.1f} µs | {signing["builder_us"] / signing["format_path_us"]:.2f}× | < 10 µs |
| signing, same key and box | {signing["same_key_us"]:.1f} µs/URL | | | |
| rewrite, {rewrite["page_bytes"] / 1000:.0f} KB page, 100 images (new rewriter) | {rewrite["rewrite_cold_mb_s"]:.1f} MB/s ({rewrite["rewrite_cold_ms"]:.1f} ms) | | | ≥ 20 MB/s |
| rewrite, same page again (warm caches) | {rewrite["rewrite_warm_mb_s"]:.1f} MB/s ({rewrite["rewrite_warm_ms"]:.1f} ms) | | | |
| whole middleware on that page | {rewrite["app_wrapped_ms"]:.1f} ms/request, {rewrite["middleware_mb_s"]:.1f} MB/s added work | unwrapped app {rewrite["app_plain_us"]:.1f} µs | | |
| pass-through, hello world in-process | {process["wrapped_us"]:.2f} µs/request (+{process["added_us"]:.2f} µs) | unwrapped {process["plain_us"]:.2f} µs | {process["wrapped_us"] / process["plain_us"]:.2f}× | |
| pass-through, hello world over HTTP (gunicorn) | {http_["wrapped_us"]:.0f} µs/request | unwrapped {http_["plain_us"]:.0f} µs | {http_["overhead_percent"]:+.1f}% | < 5% |

Raw figures:

```json
{json.dumps(results, indent=2)}
```
"""  # noqa: E501


def main() -> int:
    results = {
        "signing": bench_signing(),
        "rewrite": bench_rewrite(),
        "pass_through_in_process": bench_pass_through_in_process(),
        "pass_through_http": bench_pass_through_http(),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(report(results))
    print(RESULTS.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
