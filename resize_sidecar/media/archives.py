"""Zip archives streamed entry by entry: one entry in memory at a time, never the archive.

Entries are stored, not compressed (images are compressed already). What cannot be read or would pass the byte cap
is left out and named, with its reason, in a last entry ``ERRORS.txt``.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Callable, Iterator

from resize_sidecar.core.errors import SidecarError

ERRORS_NAME = "ERRORS.txt"


class _Sink:
    """A write-only file that keeps what is written until it is taken: zipfile writes, the stream yields."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        """zipfile flushes after each entry; there is nothing to flush to."""

    def close(self) -> None:
        """Part of the file protocol zipfile expects; nothing to release."""

    def take(self) -> bytes:
        data, self.chunks = b"".join(self.chunks), []
        return data


def zip_stream(entries: list[tuple[str, Callable[[], bytes]]], max_bytes: int) -> Iterator[bytes]:
    """A zip of the entries, yielded as each one is read: one image in memory at a time, never the archive.

    Entries are stored, not compressed: images are compressed already. An entry that cannot be read, or would
    take the archive past ``max_bytes``, is left out and named, with its reason, in a last entry :data:`ERRORS_NAME`.
    """
    sink = _Sink()
    problems = []
    written = 0
    # An unseekable file: zipfile writes each entry's sizes and CRC after its data (a data descriptor).
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, load in entries:
            try:
                data = load()
            except SidecarError as error:
                # A fault of ours (storage) is named by its status only, as in any error answer.
                problems.append(f"{name}: {error.public_message}" + ("" if error.report else f": {error.detail}"))
                continue
            if written + len(data) > max_bytes:
                problems.append(f"{name}: left out, the archive would pass {max_bytes} bytes")
                continue
            written += len(data)
            archive.writestr(_zip_entry(name), data)
            yield sink.take()
        if problems:
            archive.writestr(_zip_entry(ERRORS_NAME), "\n".join(problems) + "\n")
    yield sink.take()


def _zip_entry(name: str) -> zipfile.ZipInfo:
    entry = zipfile.ZipInfo(name, date_time=time.gmtime()[:6])
    entry.external_attr = 0o644 << 16  # readable by everyone once extracted, as any downloaded file
    return entry
