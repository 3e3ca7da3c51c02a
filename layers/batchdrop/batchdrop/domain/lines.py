"""Split a binary stream into lines in constant memory, without trusting its contents, and
normalise each line into the bytes that are uploaded.

A split plan names byte ranges of the raw object; the uploader streams each range and passes
every line through `normalise_line`, which yields exactly the byte counts the plan declares.
"""

import json
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from batchdrop.domain.limits import MAX_LINE_BYTES
from batchdrop.ports import Readable as Readable  # the stream type lives with the ports

DEFAULT_READ_BYTES = 1024 * 1024
UTF8_BOM = b"\xef\xbb\xbf"


class Line(NamedTuple):
    """One line of the stream, positioned by its byte offset in the raw stream.

    `raw` excludes the line's b"\\n" but keeps any b"\\r"; it is None when the line was longer
    than the caller's limit, in which case its bytes were skipped rather than held in memory.
    `size` is the line's true length in the stream, including its b"\\n" when it has one.
    """

    number: int
    offset: int
    raw: bytes | None
    size: int

    @property
    def too_long(self) -> bool:
        return self.raw is None


def iter_lines(
    stream: Readable, *, max_line_bytes: int, read_size: int = DEFAULT_READ_BYTES
) -> Iterator[Line]:
    """Yield every line of `stream`, holding at most about `max_line_bytes + read_size` bytes.

    A line whose content (without b"\\n") exceeds `max_line_bytes` is yielded with raw=None.
    A final line without b"\\n" is yielded; a final b"\\n" does not start an empty extra line.
    """
    if max_line_bytes < 0 or read_size <= 0:
        raise ValueError("max_line_bytes must be >= 0 and read_size > 0")
    number = 0
    line_offset = 0
    # The current line's bytes seen so far, while it spans reads and is still within the limit.
    pending: list[bytes] = []
    pending_bytes = 0
    overflowed = False
    while chunk := stream.read(read_size):
        pos = 0
        while (newline := chunk.find(b"\n", pos)) >= 0:
            length = pending_bytes + newline - pos
            number += 1
            if overflowed or length > max_line_bytes:
                raw = None
            elif pending:
                pending.append(chunk[pos:newline])
                raw = b"".join(pending)
            else:
                raw = chunk[pos:newline]
            yield Line(number, line_offset, raw, length + 1)
            line_offset += length + 1
            pending.clear()
            pending_bytes = 0
            overflowed = False
            pos = newline + 1
        if pos < len(chunk):
            pending_bytes += len(chunk) - pos
            if overflowed:
                continue
            if pending_bytes > max_line_bytes:
                # Past the limit nothing of this line is needed any more: drop it, keep counting.
                overflowed = True
                pending.clear()
            else:
                pending.append(chunk[pos:])
    if pending_bytes:
        raw = None if overflowed else b"".join(pending)
        yield Line(number + 1, line_offset, raw, pending_bytes)


def line_content(raw: bytes, *, at_file_start: bool) -> bytes:
    """A raw line's content: without the UTF-8 BOM (tolerated only at byte offset 0 of the
    original object) and without one trailing b"\\r"."""
    if at_file_start and raw.startswith(UTF8_BOM):
        raw = raw[len(UTF8_BOM) :]
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    return raw


def normalise_line(raw: bytes, *, at_file_start: bool) -> bytes:
    """Return the bytes uploaded for one raw line (as yielded by `iter_lines`).

    `at_file_start` is true only for the line at byte offset 0 of the original object, the one
    place a UTF-8 BOM is tolerated. A trailing b"\\r" is dropped and a single b"\\n" appended.
    """
    return line_content(raw, at_file_start=at_file_start) + b"\n"


def normalised_lines(
    stream: Readable,
    *,
    range_start: int,
    max_line_bytes: int = MAX_LINE_BYTES,
    read_size: int = DEFAULT_READ_BYTES,
) -> Iterator[bytes]:
    """Yield the normalised lines of a raw byte range that begins at `range_start`."""
    for line in iter_lines(stream, max_line_bytes=max_line_bytes, read_size=read_size):
        if line.raw is None:
            raise ValueError(f"line at byte {range_start + line.offset} exceeds max_line_bytes")
        yield normalise_line(line.raw, at_file_start=range_start + line.offset == 0)


class IterableReader:
    """A `read(n)` stream over an iterable of byte chunks, for code that wants a file."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = bytearray()  # appended to in place: many short lines make one read

    def read(self, size: int = -1, /) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0 or size >= len(self._buffer):
            data = bytes(self._buffer)
            self._buffer.clear()
        else:
            data = bytes(self._buffer[:size])
            del self._buffer[:size]
        return data


def json_object(raw: bytes) -> dict[str, Any] | None:
    """One line parsed as a JSON object; None when it is not one (or nests too deep)."""
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def close_stream(stream: object) -> None:
    """Close a stream that can be closed (a Readable need not be)."""
    close = getattr(stream, "close", None)
    if callable(close):
        close()
