"""Faults on demand: an HTTP proxy that breaks S3 in chosen ways, hostile originals, and probes of the workers.

:class:`FaultProxy` listens on a free loopback port in front of moto's S3 server and relays each request, unless
the current :class:`Fault` says otherwise: hang (accept and never answer), answer late, reset the connection before
or part-way through the body, stall part-way through it, announce a ``Content-Length`` other than the bytes sent, or
answer an S3 error of its own (``503 SlowDown``, ``403 AccessDenied``). A fault can be limited to some methods
(``PUT``) or request targets (a regular expression), and is switched at run time by assigning ``proxy.fault``. The
proxy counts the requests it received by method, faulted or not: ``proxy.count("PUT") == 0`` means nothing was
written; ``proxy.statuses`` says what the upstream answered to the ones relayed. Everything is bounded: loopback
only, a fixed number of connections, holds end when the client leaves or the proxy stops.

Hostile originals the shared corpus lacks (:func:`png_header_only`, :func:`gif_frame_flood`...) are made on the spot.
The probes (:func:`worker_pids`, :func:`rss_kib`, :func:`open_fds`...) read ``/proc`` directly, so that a worker
death, a memory peak or a leaked descriptor can be asserted without any extra package.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import socket
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import pyvips

#: Headers that describe one connection, not the message: the proxy frames every message itself.
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "expect"}
)
#: Largest request or response head accepted; S3 heads are a few hundred bytes.
_MAX_HEAD = 64 * 1024
#: Longest a connection is held open by a blackhole or a stall, whatever the client does.
_MAX_HOLD_SECONDS = 120.0
#: How often blocking waits look at the stop flag.
_TICK = 0.1


@dataclass(frozen=True)
class Fault:
    """What the proxy does to the requests it matches; every other request is relayed unchanged.

    ``methods`` (empty: all) and ``path`` (a regular expression searched in the request target; empty: all) say
    which requests it applies to. Build one with the class methods below.
    """

    kind: str = "pass"
    amount: int | None = 0
    methods: frozenset[str] = frozenset()
    path: str = ""
    code: str = ""

    @classmethod
    def passthrough(cls) -> Fault:
        return cls()

    @classmethod
    def blackhole(cls, *, methods: Iterable[str] = (), path: str = "") -> Fault:
        """Read the request and never answer, as a hung S3 does; the client's read timeout must end it."""
        return cls("blackhole", 0, frozenset(methods), path)

    @classmethod
    def delay(cls, milliseconds: int, *, methods: Iterable[str] = (), path: str = "") -> Fault:
        """Relay the answer, ``milliseconds`` late."""
        return cls("delay", milliseconds, frozenset(methods), path)

    @classmethod
    def reset(cls, *, methods: Iterable[str] = (), path: str = "") -> Fault:
        """Read the request, then reset the connection without a byte of answer."""
        return cls("reset", 0, frozenset(methods), path)

    @classmethod
    def reset_after(cls, body_bytes: int, *, methods: Iterable[str] = (), path: str = "") -> Fault:
        """Send the head (with the honest ``Content-Length``) and ``body_bytes`` of the body, then reset."""
        return cls("reset_after", body_bytes, frozenset(methods), path)

    @classmethod
    def stall_after(cls, body_bytes: int, *, methods: Iterable[str] = (), path: str = "") -> Fault:
        """Send the head and ``body_bytes`` of the body, then nothing more until the client leaves."""
        return cls("stall_after", body_bytes, frozenset(methods), path)

    @classmethod
    def content_length(cls, delta: int | None, *, methods: Iterable[str] = (), path: str = "") -> Fault:
        """Send the whole body but announce ``delta`` bytes more (or fewer) than it has; ``None``: announce nothing.

        The connection is closed after the body, since its framing is a lie: a client that believed a longer
        length sees the end early, one that believed a shorter length never reads the rest.
        """
        return cls("content_length", delta, frozenset(methods), path)

    @classmethod
    def error(cls, status: int, code: str, *, methods: Iterable[str] = (), path: str = "") -> Fault:
        """Answer an S3 error document of our own (the request never reaches S3)."""
        return cls("error", status, frozenset(methods), path, code)

    @classmethod
    def slow_down(cls, *, methods: Iterable[str] = (), path: str = "") -> Fault:
        """S3's answer when it throttles: ``503 SlowDown``."""
        return cls.error(503, "SlowDown", methods=methods, path=path)

    def matches(self, method: str, target: str) -> bool:
        if self.methods and method not in self.methods:
            return False
        return not self.path or re.search(self.path, target) is not None


@dataclass
class _Message:
    """A request or response head, split, with its whole body."""

    start: str  # request line or status line
    headers: list[tuple[str, str]]
    body: bytes = b""
    method: str = ""
    target: str = ""
    status: int = 0

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def head(self, content_length: int | None, *, close: bool = False, keep_length: bool = False) -> bytes:
        lines = [self.start]
        lines += [
            f"{k}: {v}" for k, v in self.headers if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"
        ]
        if keep_length and self.header("content-length") is not None:
            lines.append(f"Content-Length: {self.header('content-length')}")
        elif content_length is not None:
            lines.append(f"Content-Length: {content_length}")
        if close:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _Closed(Exception):
    """The peer closed the connection, or the proxy is stopping."""


class _Stream:
    """Buffered reads from a socket, giving up when the proxy stops."""

    def __init__(self, sock: socket.socket, stopping: threading.Event, idle_seconds: float) -> None:
        self.sock = sock
        self.stopping = stopping
        self.idle_seconds = idle_seconds
        self.buffer = bytearray()

    def _fill(self) -> None:
        waited = 0.0
        while not self.stopping.is_set():
            readable, _, _ = select.select([self.sock], [], [], _TICK)
            if readable:
                try:
                    chunk = self.sock.recv(65536)
                except OSError as error:
                    raise _Closed from error
                if not chunk:
                    raise _Closed
                self.buffer += chunk
                return
            waited += _TICK
            if waited >= self.idle_seconds:
                raise _Closed
        raise _Closed

    def read_until(self, marker: bytes, limit: int) -> bytes:
        while (end := self.buffer.find(marker)) < 0:
            if len(self.buffer) > limit:
                raise _Closed
            self._fill()
        data = bytes(self.buffer[: end + len(marker)])
        del self.buffer[: end + len(marker)]
        return data

    def read_exact(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def read_to_end(self) -> bytes:
        with contextlib.suppress(_Closed):
            while True:
                self._fill()
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    def read_head(self) -> tuple[str, list[tuple[str, str]]]:
        lines = self.read_until(b"\r\n\r\n", _MAX_HEAD).decode("latin-1").split("\r\n")
        headers = []
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers.append((name.strip(), value.strip()))
        return lines[0], headers

    def read_body(self, message: _Message, *, until_close: bool) -> bytes:
        if (message.header("transfer-encoding") or "").lower() == "chunked":
            return self._read_chunked()
        length = message.header("content-length")
        if length is not None:
            return self.read_exact(int(length))
        return self.read_to_end() if until_close else b""

    def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            size = int(self.read_until(b"\r\n", _MAX_HEAD).split(b";")[0].strip(), 16)
            if size == 0:
                # Trailers, if any, end with an empty line.
                while self.read_until(b"\r\n", _MAX_HEAD) != b"\r\n":
                    pass
                return bytes(body)
            body += self.read_exact(size)
            self.read_exact(2)


def _s3_error(status: int, code: str) -> bytes:
    reason = {
        400: "Bad Request",
        403: "Forbidden",
        404: "Not Found",
        500: "Internal Server Error",
        503: "Service Unavailable",
    }
    document = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{code} (injected by the fault proxy)</Message>"
        "<RequestId>fault-proxy</RequestId></Error>"
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason.get(status, 'Error')}\r\n"
        f"Content-Type: application/xml\r\nContent-Length: {len(document)}\r\n\r\n"
    )
    return head.encode("latin-1") + document


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset rather than an orderly end: what a crashed peer or a middlebox does."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class FaultProxy:
    """An HTTP/1.1 proxy on ``127.0.0.1`` in front of ``upstream`` (a loopback URL), faulting on request.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. Thread-safe: the fault may be switched while
    requests are in flight (each request uses the fault current when it arrived).
    """

    def __init__(self, upstream: str, *, max_connections: int = 64, idle_seconds: float = 30.0) -> None:
        parts = urlsplit(upstream)
        if parts.hostname not in ("127.0.0.1", "localhost", "::1") or parts.port is None:
            raise ValueError(f"the fault proxy only relays to a loopback host:port, not {upstream!r}")
        self.upstream = (parts.hostname, parts.port)
        self.fault = Fault()
        self.max_connections = max_connections
        self.idle_seconds = idle_seconds
        self.requests: list[tuple[str, str]] = []
        self.answers: list[tuple[str, str, int]] = []  # (method, target, status) of what the upstream answered
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._handlers: set[threading.Thread] = set()
        self._clients: set[socket.socket] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def count(self, method: str | None = None) -> int:
        """Requests received (with ``method``, or all), including those a fault answered or dropped."""
        with self._lock:
            return sum(1 for m, _ in self.requests if method is None or m == method)

    def statuses(self, method: str, target: str) -> list[int]:
        """What the upstream answered to the requests relayed with ``method`` for exactly ``target``, in order."""
        with self._lock:
            return [status for m, t, status in self.answers if (m, t) == (method, target)]

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(method for method, _ in self.requests)

    def clear(self) -> None:
        """Relay everything again and forget the requests counted so far."""
        self.fault = Fault()
        with self._lock:
            self.requests.clear()
            self.answers.clear()

    def start(self) -> FaultProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(self.max_connections)
        listener.settimeout(_TICK)
        self._listener = listener
        self.port = int(listener.getsockname()[1])
        self._acceptor = threading.Thread(target=self._accept, name="fault-proxy-accept", daemon=True)
        self._acceptor.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            clients, handlers = list(self._clients), list(self._handlers)
        for client in clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
        for handler in handlers:
            handler.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                if len(self._handlers) >= self.max_connections:
                    client.close()  # bounded: a runaway client cannot make the proxy spawn without end
                    continue
                handler = threading.Thread(target=self._serve, args=(client,), name="fault-proxy-conn", daemon=True)
                self._handlers.add(handler)
                self._clients.add(client)
            handler.start()

    def _serve(self, client: socket.socket) -> None:
        stream = _Stream(client, self._stopping, self.idle_seconds)
        try:
            while self._relay_one(client, stream):
                pass
        except (_Closed, OSError, ValueError):
            pass
        finally:
            with self._lock:
                self._clients.discard(client)
                self._handlers.discard(threading.current_thread())
            client.close()

    def _relay_one(self, client: socket.socket, stream: _Stream) -> bool:
        """Handle one request; ``False`` when the connection is done."""
        start, headers = stream.read_head()
        method, target, _ = (start.split(" ", 2) + ["", ""])[:3]
        request = _Message(start, headers, method=method, target=target)
        if (request.header("expect") or "").lower() == "100-continue":
            client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.body = stream.read_body(request, until_close=False)
        fault = self.fault
        with self._lock:
            self.requests.append((method, target))
        if not fault.matches(method, target):
            fault = Fault()

        if fault.kind == "blackhole":
            self._hold(client)
            return False
        if fault.kind == "reset":
            _reset(client)
            return False
        if fault.kind == "error":
            client.sendall(_s3_error(fault.amount or 500, fault.code))
            return True

        response = self._forward(request)
        if response is None:
            _reset(client)  # S3 itself is unreachable: the client sees a dead connection, as it would
            return False
        with self._lock:
            self.answers.append((method, target, response.status))
        has_body = method != "HEAD" and response.status not in (204, 304) and response.status >= 200
        if not has_body:
            client.sendall(response.head(None, keep_length=True))
            return True
        body = response.body
        if fault.kind == "delay":
            if self._stopping.wait((fault.amount or 0) / 1000):
                return False
        elif fault.kind in ("reset_after", "stall_after"):
            client.sendall(response.head(len(body)) + body[: fault.amount or 0])
            if fault.kind == "reset_after":
                _reset(client)
            else:
                self._hold(client)
            return False
        elif fault.kind == "content_length":
            announced = None if fault.amount is None else max(0, len(body) + fault.amount)
            client.sendall(response.head(announced, close=True) + body)
            return False
        client.sendall(response.head(len(body)) + body)
        return True

    def _forward(self, request: _Message) -> _Message | None:
        """The upstream's whole answer to ``request``, over a connection of its own."""
        try:
            upstream = socket.create_connection(self.upstream, timeout=30)
        except OSError:
            return None
        with upstream:
            body_length = len(request.body) if request.body or request.method in ("PUT", "POST") else None
            upstream.sendall(request.head(body_length, close=True) + request.body)
            stream = _Stream(upstream, self._stopping, 30.0)
            try:
                start, headers = stream.read_head()
                while start.split(" ", 2)[1] == "100":  # an interim answer before the real one
                    start, headers = stream.read_head()
                response = _Message(start, headers, status=int(start.split(" ", 2)[1]))
                if request.method != "HEAD" and response.status not in (204, 304):
                    response.body = stream.read_body(response, until_close=True)
            except (_Closed, OSError, ValueError, IndexError):
                return None
        return response

    def _hold(self, client: socket.socket) -> None:
        """Keep the connection open, answering nothing, until the client leaves or the proxy stops."""
        deadline = time.monotonic() + _MAX_HOLD_SECONDS
        while not self._stopping.is_set() and time.monotonic() < deadline:
            readable, _, _ = select.select([client], [], [], _TICK)
            if readable:
                try:
                    if not client.recv(65536):
                        return
                except OSError:
                    return


# Hostile originals, made on the spot -----------------------------------------------------------------------------
# What the shared corpus lacks: each is a few milliseconds and a few bytes to make, and claims far more work.


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` and whose pixel data is a few bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def gif_frame_flood(frames: int, width: int, height: int) -> bytes:
    """An animated GIF of ``frames`` frames on a ``width`` x ``height`` screen, each frame one pixel of data.

    Decoded in full it would be frames x width x height pixels; its file is about 23 bytes a frame.
    """
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    loop = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    frame = (
        b"\x21\xf9\x04\x00\x0a\x00\x00\x00"  # 0.1 s per frame
        + b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0)
        + b"\x02\x02\x44\x01\x00"  # LZW data of one pixel of colour 0
    )  # fmt: skip
    return screen + loop + frame * frames + b"\x3b"


def progressive_jpeg(width: int, height: int) -> bytes:
    import pyvips

    return bytes(pyvips.Image.black(width, height).jpegsave_buffer(interlace=True))


def interlaced_png(width: int, height: int) -> bytes:
    import pyvips

    return bytes(pyvips.Image.black(width, height).pngsave_buffer(interlace=True, compression=1))


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small progressive JPEG whose frame header (SOF2) is rewritten to claim ``width`` x ``height``."""
    data = bytearray(progressive_jpeg(64, 64))
    at = data.find(b"\xff\xc2")
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def scan_flood_jpeg(width: int, height: int, scans: int) -> bytes:
    """A valid progressive JPEG of ``width`` x ``height`` whose cost is in its scans: a real progressive picture, then
    ``scans`` more AC scans of the luminance's last coefficient, each a few bytes of end-of-band runs.

    libjpeg accepts a first AC scan (Ah = 0, Al = 0) of a band already coded to full precision without a warning,
    and an end-of-band run leaves every block's coefficients as they are, so the picture decodes unchanged; but each
    scan is a pass over every luminance block. About 25 bytes a scan.
    """
    data = progressive_jpeg(width, height)
    # One AC Huffman table (class 1, slot 3: the picture uses 0 and 1) whose only code, one bit "0", is EOB14: an
    # end-of-band run of 2^14 plus the 14 bits that follow it, 32767 blocks with all of them set.
    table = b"\x13" + bytes([1] + [0] * 15) + b"\xe0"
    segments = [b"\xff\xc4" + struct.pack(">H", 2 + len(table)) + table]
    blocks = -(-width // 8) * -(-height // 8)
    runs = -(-blocks // 32767)
    bits = "0" + "1" * 14
    stream = (bits * runs).ljust(-(-len(bits) * runs // 8) * 8, "1")
    entropy = bytes(int(stream[at : at + 8], 2) for at in range(0, len(stream), 8)).replace(b"\xff", b"\xff\x00")
    # SOS: one component (id 1, DC table 0, AC table 3), spectral band 63..63, Ah = Al = 0.
    scan = b"\xff\xda" + struct.pack(">HBBBBBB", 8, 1, 1, 0x03, 63, 63, 0) + entropy
    end = data.rindex(b"\xff\xd9")
    return data[:end] + segments[0] + scan * scans + data[end:]


def gradients(width: int, height: int) -> pyvips.Image:
    """An sRGB pyvips image of repeating horizontal and vertical ramps: content every codec has to work at, and that
    compresses well losslessly."""
    import pyvips

    ramp = (pyvips.Image.xyz(width, height) % 256).cast("uchar")
    return ramp[0].bandjoin([ramp[1], ramp[0]]).copy(interpretation="srgb")


def dc_scan_flood_jpeg(width: int, height: int, scans: int) -> bytes:
    """A valid progressive JPEG of ``width`` x ``height``, colour without subsampling, followed by ``scans`` more DC
    scans of all three components: the costliest kind of scan per pixel, as each codes a symbol for every block
    (about 10 ms a scan at 9 MP, eight times an end-of-band scan), and the largest, about 3 bits per 64 pixels.
    """
    data = bytes(gradients(width, height).jpegsave_buffer(Q=85, interlace=True, subsample_mode="off"))
    # One DC Huffman table (class 0, slot 3) whose only code, one bit "0", is a difference of 0.
    table = b"\x03" + bytes([1] + [0] * 15) + b"\x00"
    tables = b"\xff\xc4" + struct.pack(">H", 2 + len(table)) + table
    # SOS: components 1, 2 and 3 with DC table 3, spectral band 0..0, Ah = Al = 0; then one 0 bit per block.
    header = b"\xff\xda" + struct.pack(">HB", 12, 3) + bytes([1, 0x30, 2, 0x30, 3, 0x30, 0, 0, 0])
    entropy = bytes(-(-3 * -(-width // 8) * -(-height // 8) // 8))
    end = data.rindex(b"\xff\xd9")
    return data[:end] + tables + (header + entropy) * scans + data[end:]


def flat_avif(width: int, height: int) -> bytes:
    """An AVIF of ``width`` x ``height`` of one colour: a few kilobytes that libheif decodes whole."""
    import pyvips

    image = pyvips.Image.black(width, height, bands=3).cast("uchar")
    return bytes(image.heifsave_buffer(compression="av1", effort=0, Q=30))


def lossless_webp(width: int, height: int) -> bytes:
    """A lossless WebP of ``width`` x ``height`` of repeating gradients: tens of kilobytes, decoded whole.

    Gradients, not one colour: libwebp packs an image of a few colours several pixels to a word, and decodes it in
    a fraction of the memory (50 MP of one colour: 26 MB; of gradients: about 200).
    """
    return bytes(gradients(width, height).webpsave_buffer(lossless=True, effort=0))


# Worker probes --------------------------------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """The direct children of a process (gunicorn's workers, for the master's pid)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        # The command name, in parentheses, may hold spaces: the fields after its closing parenthesis are fixed.
        state, parent = stat.rsplit(")", 1)[1].split()[:2]
        if int(parent) == pid and state != "Z":  # a zombie is a worker that died and is not reaped yet
            found.append(int(entry.name))
    return sorted(found)


def worker_pids(master: int, expected: int, timeout: float = 10.0) -> list[int]:
    """gunicorn's worker pids, once all ``expected`` workers are up (the master forks them after it answers)."""
    deadline = time.monotonic() + timeout
    while True:
        pids = children(master)
        if len(pids) >= expected or time.monotonic() > deadline:
            return pids
        time.sleep(0.05)


def _status_kib(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


def rss_kib(pid: int) -> int:
    """Resident memory now."""
    return _status_kib(pid, "VmRSS")


def peak_rss_kib(pid: int) -> int:
    """Highest resident memory since start, or since :func:`reset_peak_rss`."""
    return _status_kib(pid, "VmHWM")


def reset_peak_rss(pid: int) -> bool:
    """Restart the peak-RSS count of a process (Linux ``clear_refs`` 5); ``False`` where not permitted."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def open_fds(pid: int) -> int:
    """File descriptors the process holds open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class Workers:
    """The workers of one gunicorn master, as first seen: to tell later whether any died or was replaced."""

    master: int
    pids: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, master: int, expected: int) -> Workers:
        return cls(master, worker_pids(master, expected))

    def current(self) -> list[int]:
        return children(self.master)

    def unchanged(self) -> bool:
        return self.current() == self.pids

    def replaced(self, timeout: float = 20.0) -> Workers:
        """The workers the master started instead of these, once as many are up as there were."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = self.current()
            if len(pids) >= len(self.pids) and set(pids).isdisjoint(self.pids):
                break
            time.sleep(0.05)
        return Workers(self.master, self.current())
