"""Streaming tracking-log reader: plain or gzip, local or S3, in batches of lines.

Memory stays bounded whatever the file size: the file is read in blocks, and a line longer than
``max_line_bytes`` is dropped (and counted) instead of being buffered whole.
"""

from __future__ import annotations

import contextlib
import io
import zlib
from collections.abc import Callable, Iterator
from typing import BinaryIO

from pipeline.core import fs
from pipeline.errors import InvalidInput

try:  # igzip decompresses 5-10x faster than zlib; identical results
    from isal import igzip as _gzip
    from isal import igzip_threaded as _gzip_threaded
except ImportError:  # pragma: no cover - isal is a dependency, kept optional for clusters
    import gzip as _gzip

    _gzip_threaded = None

GZIP_MAGIC = b"\x1f\x8b"
BLOCK_BYTES = 256 << 10  # small enough to stay in the CPU cache while it is split and parsed
DEFAULT_MAX_LINE_BYTES = 16 << 20
LINE_TOO_LONG = "line too long"


class InputFileError(InvalidInput):
    """A tracking log that cannot be read to its end (corrupt or truncated gzip, I/O error)."""

    def __init__(self, url: str, reason: str):
        super().__init__(url, reason)  # both kept in args: the error crosses process boundaries
        self.url = url
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.url}: {self.reason}"


class _Peekable(io.RawIOBase):
    """A read-only stream whose first bytes were already read to sniff the format."""

    def __init__(self, head: bytes, stream: BinaryIO):
        super().__init__()
        self._head = head
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            count = min(len(self._head), len(view))
            view[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        data = self._stream.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._stream.close()
        super().close()


@contextlib.contextmanager
def open_log(url: str, decompress_thread: bool = False) -> Iterator[BinaryIO]:
    """Open a tracking log for reading decompressed bytes; gzip is detected by content.

    With ``decompress_thread``, gzip is inflated by a second thread (isal releases the GIL),
    overlapping with the caller's parsing: worth it when a core would otherwise stay idle.
    """
    raw = fs.open_read(url)
    try:
        head = raw.read(2)
        if raw.seekable():  # local files: no wrapper between igzip and the file
            raw.seek(0)
            stream = raw
        else:
            stream = io.BufferedReader(_Peekable(head, raw), 1 << 20)
        if head == GZIP_MAGIC and decompress_thread and _gzip_threaded is not None:
            with _gzip_threaded.open(stream, "rb", threads=1) as threaded:
                yield threaded
        elif head == GZIP_MAGIC:
            yield _gzip.GzipFile(fileobj=stream, mode="rb")
        else:
            yield stream
    finally:
        raw.close()


def iter_blocks(
    url: str,
    counters: dict[str, int],
    block_bytes: int = BLOCK_BYTES,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    on_position: Callable[[int], None] | None = None,
    decompress_thread: bool = False,
) -> Iterator[bytes]:
    """Yield the decompressed content of ``url`` in blocks of whole lines.

    Each block holds one or more complete lines joined by ``\n``, without the final newline.
    Over-long lines are counted in ``counters[LINE_TOO_LONG]`` and skipped. Any read or
    decompression error is raised as :class:`InputFileError` naming ``url``.
    ``on_position`` is told, after each block, how many bytes of the file (compressed, for
    gzip) have been read, when the file can tell.
    """
    max_line_bytes = max(max_line_bytes, block_bytes)
    carry = b""
    dropping = False  # inside an over-long line: discard until the next newline
    try:
        with open_log(url, decompress_thread) as stream:
            source = _compressed_file(stream)
            tell = source.tell if on_position and source.seekable() else None
            while True:
                data = stream.read(block_bytes)
                if not data:
                    break
                if tell is not None:
                    on_position(tell())
                start = 0
                if dropping:
                    newline = data.find(b"\n")
                    if newline < 0:
                        continue
                    start, dropping = newline + 1, False
                last = data.rfind(b"\n", start)
                if last < 0:
                    carry += data[start:] if start else data
                else:
                    first = data.find(b"\n", start)
                    if len(carry) + first - start > max_line_bytes:
                        # the line that the previous blocks started is too long: drop it
                        counters[LINE_TOO_LONG] = counters.get(LINE_TOO_LONG, 0) + 1
                        block = data[first + 1 : last]
                        emit = last > first
                    else:
                        block = b"".join((carry, memoryview(data)[start:last]))
                        emit = True
                    carry = data[last + 1 :]
                    if emit:
                        yield block
                if len(carry) > max_line_bytes:
                    counters[LINE_TOO_LONG] = counters.get(LINE_TOO_LONG, 0) + 1
                    carry, dropping = b"", True
    except InputFileError:
        raise
    except (EOFError, OSError, zlib.error, ValueError) as exc:
        raise InputFileError(url, _describe(exc)) from exc
    except Exception as exc:  # isal raises its own error type for corrupt streams
        if type(exc).__module__.startswith(("isal", "gzip")):
            raise InputFileError(url, _describe(exc)) from exc
        raise
    if carry and not dropping:
        yield carry


def _compressed_file(stream):
    """The file under a gzip reader (threaded: under its raw reader), or the stream itself."""
    threaded = getattr(getattr(stream, "raw", None), "fileobj", None)
    return getattr(stream, "fileobj", None) or threaded or stream


def _describe(exc: Exception) -> str:
    if isinstance(exc, EOFError):
        return f"truncated compressed file ({exc})"
    return f"corrupt or unreadable file ({type(exc).__name__}: {exc})"
