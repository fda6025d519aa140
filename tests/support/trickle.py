"""A page that arrives an image at a time, as over a slow network: the browser lays out and paints what it has, so an
image that shows up later must not move the ones already on screen (a layout shift a fast loopback rarely shows)."""

from __future__ import annotations

import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_AFTER_EACH_IMAGE = re.compile(rb"(?<=<img)[^>]*>")


def pieces(html: bytes) -> list[bytes]:
    """``html`` cut right after each ``<img …>`` tag."""
    ends = [found.end() for found in _AFTER_EACH_IMAGE.finditer(html)]
    return [html[start:end] for start, end in zip([0, *ends], [*ends, len(html)], strict=True) if start < end]


@contextmanager
def trickled(origin: str, pause: float = 0.25) -> Iterator[str]:
    """A base URL in front of ``origin`` whose HTML pages arrive in :func:`pieces`, ``pause`` seconds apart; every
    other answer passes through whole."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def handle_one_request(self) -> None:
            try:
                super().handle_one_request()
            except OSError:
                self.close_connection = True  # the browser went on without the rest

        def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
            try:
                with urllib.request.urlopen(origin + self.path, timeout=60) as answer:
                    status, content_type, body = answer.status, answer.headers["Content-Type"], answer.read()
            except urllib.error.HTTPError as refused:
                status, content_type, body = refused.code, refused.headers["Content-Type"], refused.read()
            self.send_response(status)
            self.send_header("Content-Type", content_type or "application/octet-stream")
            if not (content_type or "").startswith("text/html"):
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in pieces(body):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
                time.sleep(pause)
            self.wfile.write(b"0\r\n\r\n")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
