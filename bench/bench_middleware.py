"""Benchmark of the middleware: URL signing, HTML rewriting, and the latency it adds to an app.

Each figure is measured against its baseline in the same run, interleaved, and reported as a median [min–max]:

- signing: ``MediaURLs.derivative`` (distinct keys) against ``signing.format_path``;
- rewriting: realistic pages (a 200 KB blog page with 100 images, a page of sanitized user comments with images, a
  page without media) through ``HTMLRewriter.rewrite`` (lol_html) against the regular-expression rewriter it
  replaced (``regex_rewriter_before.py``), and through the whole middleware against the unwrapped app;
- the worst-case inputs of the rewriting tests (``WORST_CASES`` of ``tests/support/html_standard.py``), through both
  rewriters (the old one once each, in a subprocess stopped after 120 s);
- pass-through: a hello-world app in-process and under gunicorn over HTTP, wrapped and unwrapped;
- with html5lib-tests present (``HTML5LIB_TESTS``, see ``tests/middleware/test_rewrite_spec.py``): how many of the
  tree-construction pages with inserted media references each rewriter changes in a way a parser reads differently.

Goals: signing under 10 µs per URL, rewriting at least 20 MB/s, pass-through overhead under 5%.
Run: ``.venv/bin/python bench/bench_middleware.py`` (a few minutes); results go to ``bench/results/middleware.md``.
"""

from __future__ import annotations

import http.client
import json
import logging
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from common import RESULTS, Spread, arguments, write_results  # noqa: E402
from regex_rewriter_before import HTMLRewriter as RegexRewriter  # noqa: E402

from resize_sidecar.core.settings import Settings  # noqa: E402
from resize_sidecar.core.signing import DerivativeSpec, format_path  # noqa: E402
from resize_sidecar.middleware import MediaMiddleware, MediaURLs  # noqa: E402
from resize_sidecar.middleware.rewrite import HTMLRewriter  # noqa: E402
from tests.support.html_standard import CORPUS, MEDIA_MARKUP, WORST_CASES, insertions, same_to_a_parser  # noqa: E402
from tests.support.html_standard import tree_construction_inputs as corpus_pages  # noqa: E402

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


class Rewriter(Protocol):
    def rewrite(self, text: str) -> str: ...


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


def make_comments_page(comments: int = 300) -> str:
    """A discussion page: the app's own markup around user comments as a sanitizer lets them through, a quarter of
    them with an image (explicit URLs and plain sized ones), the others text with links and entities."""
    parts = ['<!doctype html><html><head><meta charset="utf-8"><title>Thread</title></head><body><main>']
    for index in range(comments):
        body = (
            f'<p>Reply {index} &mdash; I think the <a href="/wiki/Topic_{index}" rel="nofollow">second point</a>'
            " holds, though &lt;b&gt;costs&lt;/b&gt; &gt; benefits when x &lt; 3. Quoting: <q>it depends</q>.</p>"
        )
        if index % 4 == 0:
            key = f"uploads/2024/05/{index:04d}.jpg"
            body += (
                f'<img src="/media/{key}?w=600&amp;fmt=webp" alt="&lt;img&gt; posted by user {index}" title="a &lt; b">'
                if index % 8
                else f'<img src="/media/{key}" width="320" height="240" alt="photo {index}">'
            )
        parts.append(
            f'<article class="comment" id="c{index}"><header><a href="/u/{index}">user{index}</a> '
            f'<time datetime="2024-05-01">1 May</time></header>{body}</article>'
        )
    parts.append("</main></body></html>")
    return "".join(parts)


def interleaved_rounds(
    functions: dict[str, Callable[[], object]], repeat: int, rounds: int = ROUNDS
) -> dict[str, list[float]]:
    """Per-call seconds of each function in each round, rounds interleaved so that machine noise hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            started = time.perf_counter()
            for _ in range(repeat):
                function()
            times[name].append((time.perf_counter() - started) / repeat)
    return times


def interleaved(functions: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median per-call time of each function over interleaved rounds."""
    return {name: statistics.median(values) for name, values in interleaved_rounds(functions, repeat).items()}


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


def bench_rewrite() -> dict[str, dict[str, object]]:
    """MB/s of each rewriter on each page, and of the whole middleware against the unwrapped app."""
    urls = MediaURLs(SETTINGS)
    rewriters: dict[str, Rewriter] = {"lol_html": HTMLRewriter(urls), "regex, before": RegexRewriter(urls)}
    pages = {
        "blog page, 100 images": make_page(),
        "comments, 75 images": make_comments_page(),
        "blog page, no media URL": make_page(images=0),
    }
    # 50 explicit URLs, and 50 sized images with a src and two srcset candidates each.
    assert rewriters["lol_html"].rewrite(pages["blog page, 100 images"]).count("/media/_r/") == 50 + 50 * 3
    results: dict[str, dict[str, object]] = {}
    for page_name, page in pages.items():
        size = len(page.encode())
        functions: dict[str, Callable[[], object]] = {
            name: partial(rewriter.rewrite, page) for name, rewriter in rewriters.items()
        }
        plain = html_app(page.encode())
        functions["unwrapped app"] = partial(call, plain)
        functions["whole middleware"] = partial(call, MediaMiddleware(plain, SETTINGS))
        times = interleaved_rounds(functions, 10)
        results[page_name] = {"bytes": size, **{name: Spread.of(values).as_dict() for name, values in times.items()}}
    return results


def bench_worst_cases() -> dict[str, dict[str, object]]:
    """The worst-case inputs: the new rewriter over rounds, the old one once each in a subprocess with a time limit."""
    rewriter = HTMLRewriter(MediaURLs(SETTINGS), picture_formats=("webp",))
    # Over-budget pages are logged; expected here.
    logging.getLogger("resize_sidecar.middleware.rewrite").setLevel(logging.ERROR)
    results: dict[str, dict[str, object]] = {}
    for name, page in WORST_CASES.items():
        times = interleaved_rounds({name: partial(rewriter.rewrite, page)}, 1, rounds=5)[name]
        results[name] = {
            "bytes": len(page.encode()),
            "lol_html": Spread.of(times).as_dict(),
            "lol_html_output_bytes": len(rewriter.rewrite(page).encode()),
            "regex, before": _old_worst_case(name),
        }
    return results


OLD_WORST_CASE = """
import sys, time
sys.path[:0] = [{here!r}]
from bench_middleware import SETTINGS, WORST_CASES, MediaURLs, RegexRewriter
rewriter = RegexRewriter(MediaURLs(SETTINGS), picture_formats=("webp",))
started = time.perf_counter()
output = rewriter.rewrite(WORST_CASES[{name!r}])
print(time.perf_counter() - started, len(output.encode()))
"""
OLD_WORST_CASE_LIMIT = 120


def _old_worst_case(name: str) -> dict[str, object]:
    code = OLD_WORST_CASE.format(here=str(HERE), name=name)
    try:
        finished = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=OLD_WORST_CASE_LIMIT, check=True
        )
    except subprocess.TimeoutExpired:
        return {"seconds": None, "stopped_after_s": OLD_WORST_CASE_LIMIT}
    seconds, output_bytes = finished.stdout.split()[-2:]
    return {"seconds": float(seconds), "output_bytes": int(output_bytes)}


def bench_corpus() -> dict[str, object]:
    """Of html5lib-tests' tree-construction pages with media markup inserted, how many each rewriter changes and how
    many of those a parser then reads differently (beyond the media attributes); empty without the corpus."""
    if not (CORPUS / "tree-construction").is_dir():
        return {"skipped": f"html5lib-tests not found at {CORPUS}"}
    pages = [page for data in corpus_pages() for page in insertions(data, MEDIA_MARKUP)]
    urls = MediaURLs(SETTINGS)
    results: dict[str, object] = {"pages": len(pages)}
    rewriters: dict[str, Rewriter] = {"lol_html": HTMLRewriter(urls), "regex, before": RegexRewriter(urls)}
    for name, rewriter in rewriters.items():
        changed = misread = 0
        for page in pages:
            rewritten = rewriter.rewrite(page)
            if rewritten != page:
                changed += 1
                misread += not same_to_a_parser(page, rewritten)
        results[name] = {"changed": changed, "read_differently": misread}
    return results


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


def rate(size: int, times: dict[str, float]) -> str:
    """MB/s as median [min–max] (the fastest round is the highest rate)."""
    return f"{size / times['median'] / 1e6:.1f} [{size / times['max'] / 1e6:.1f}–{size / times['min'] / 1e6:.1f}]"


def _duration(times: dict[str, float]) -> str:
    return f"{times['median'] * 1e3:.1f} ms [{times['min'] * 1e3:.1f}–{times['max'] * 1e3:.1f}]"


def report(results: dict[str, Any]) -> str:
    signing, process, http_ = results["signing"], results["pass_through_in_process"], results["pass_through_http"]
    rewrite_rows = []
    for name, page in results["rewrite"].items():
        added = {key: page["whole middleware"][key] - page["unwrapped app"][key] for key in ("median", "min", "max")}
        rewrite_rows.append(
            f"| {name} | {page['bytes'] / 1000:.0f} KB | {rate(page['bytes'], page['lol_html'])} | "
            f"{rate(page['bytes'], page['regex, before'])} | "
            f"{page['regex, before']['median'] / page['lol_html']['median']:.2f}× | "
            f"{_duration(page['whole middleware'])} ({added['median'] * 1e3:.2f} ms over the app) |"
        )
    worst_rows = []
    for name, case in results["worst_cases"].items():
        old = case["regex, before"]
        before = (
            f"{old['seconds']:.2f} s" if old["seconds"] is not None else f"stopped after {old['stopped_after_s']} s"
        )
        if old.get("output_bytes"):
            before += f", output {old['output_bytes'] / 1e6:.1f} MB"
        worst_rows.append(
            f"| {name} | {case['bytes'] / 1e6:.2f} MB | {_duration(case['lol_html'])}, "
            f"output {case['lol_html_output_bytes'] / 1e6:.2f} MB | {before} |"
        )
    corpus = results["corpus"]
    if "skipped" in corpus:
        corpus_text = (
            f"Not measured: {corpus['skipped']} (set HTML5LIB_TESTS; see tests/middleware/test_rewrite_spec.py)."
        )
    else:
        corpus_text = (
            f"Of {corpus['pages']:,} html5lib-tests tree-construction pages with media markup inserted, lol_html "
            f"changed {corpus['lol_html']['changed']:,} and html5lib read "
            f"{corpus['lol_html']['read_differently']:,} of them differently beyond their media attributes; the "
            f"regular-expression rewriter changed {corpus['regex, before']['changed']:,} and "
            f"{corpus['regex, before']['read_differently']:,} of them read differently."
        )
    rows = "\n".join(rewrite_rows)
    worst = "\n".join(worst_rows)
    return f"""# Middleware benchmark

Machine: {platform.machine()}, Python {platform.python_version()}, {platform.system()}; each figure is measured
against its baseline in the same run, interleaved, as median [min–max] of {ROUNDS} rounds (worst cases: 5 rounds;
the old rewriter once each). Produced by `bench/bench_middleware.py`.

## Rewriting

| page | size | lol_html, MB/s | regex before, MB/s | lol_html speed-up | whole middleware, per request |
|---|---|---|---|---|---|
{rows}

Worst-case inputs (`WORST_CASES` of `tests/support/html_standard.py`; the picture upgrade on):

| input | size | lol_html | regex before |
|---|---|---|---|
{worst}

{corpus_text}

## Signing and pass-through

| what | result | baseline (same run) | ratio | goal |
|---|---|---|---|---|
| signing, distinct keys | {signing["builder_us"]:.1f} µs/URL ({signing["urls_per_second"]:,.0f} URLs/s) | `signing.format_path` {signing["format_path_us"]:.1f} µs | {signing["builder_us"] / signing["format_path_us"]:.2f}× | < 10 µs |
| signing, same key and box | {signing["same_key_us"]:.1f} µs/URL | | | |
| pass-through, hello world in-process | {process["wrapped_us"]:.2f} µs/request (+{process["added_us"]:.2f} µs) | unwrapped {process["plain_us"]:.2f} µs | {process["wrapped_us"] / process["plain_us"]:.2f}× | |
| pass-through, hello world over HTTP (gunicorn) | {http_["wrapped_us"]:.0f} µs/request | unwrapped {http_["plain_us"]:.0f} µs | {http_["overhead_percent"]:+.1f}% | < 5% |

Raw figures:

```json
{json.dumps(results, indent=2)}
```
"""  # noqa: E501


def main() -> int:
    arguments(__doc__).parse_args()
    results = {
        "signing": bench_signing(),
        "rewrite": bench_rewrite(),
        "worst_cases": bench_worst_cases(),
        "corpus": bench_corpus(),
        "pass_through_in_process": bench_pass_through_in_process(),
        "pass_through_http": bench_pass_through_http(),
    }
    print(write_results(RESULTS, "middleware", report(results)).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
