"""Clients that send their requests slowly: the slowloris shapes, for the slow-client tests and the benchmark.

:class:`SlowClients` holds ``count`` connections to one server. Each sends the start of a request, then one more
byte every ``interval`` seconds, and never finishes: with :func:`slow_headers` the request line and a header whose
value never ends, with :func:`slow_body` whole headers announcing a large body that arrives a byte at a time. A
connection the server closes (a timeout) is opened again at once, as an attacker would, so ``count`` stay held.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType

#: What a slow body announces: far more than it will ever send.
_ANNOUNCED_BODY = 10_000_000


def slow_headers(path: str) -> tuple[bytes, bytes]:
    """A GET whose headers never end: the opening bytes, and the byte sent at each step."""
    return f"GET {path} HTTP/1.1\r\nHost: media.example.com\r\nX-Slow: ".encode(), b"a"


def slow_body(path: str, token: str) -> tuple[bytes, bytes]:
    """A POST with whole, valid headers (the API token included) and a body that comes a byte at a time."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: media.example.com\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: image/jpeg\r\nContent-Length: {_ANNOUNCED_BODY}\r\n\r\n"
    )
    return head.encode() + b"\xff", b"\xd8"


class SlowClients:
    """``count`` connections to ``host:port`` sending ``opening``, then ``step`` every ``interval`` seconds."""

    def __init__(
        self, url: str, opening_and_step: tuple[bytes, bytes], count: int = 16, *, interval: float = 0.5
    ) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.address = (host, int(port))
        self.opening, self.step = opening_and_step
        self.count = count
        self.interval = interval
        self.sockets: list[socket.socket] = []
        #: Connections the server closed (each was opened again).
        self.reopened = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)

    def _open(self) -> socket.socket:
        sock = socket.create_connection(self.address, timeout=5)
        sock.sendall(self.opening)
        return sock

    def _trickle(self) -> None:
        while not self.stopped.wait(self.interval):
            for index, sock in enumerate(self.sockets):
                try:
                    sock.sendall(self.step)
                except OSError:
                    sock.close()
                    self.reopened += 1
                    try:
                        self.sockets[index] = self._open()
                    except OSError:
                        continue  # the server refuses connections: try again at the next step

    def __enter__(self) -> SlowClients:
        self.sockets = [self._open() for _ in range(self.count)]
        self.thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stopped.set()
        self.thread.join()
        for sock in self.sockets:
            sock.close()
