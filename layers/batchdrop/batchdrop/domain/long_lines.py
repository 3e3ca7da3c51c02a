"""Split a stream into lines without ever holding a long one whole.

`lines.iter_lines` skips a line over its limit, which is right for a request file (such a line
is refused). A result file is different: a long line is a request that ran and was paid for, so
it must be read, in pieces. Here a line within the limit comes as bytes, and a longer one as a
`LongLine` whose pieces are read from the stream as the caller asks for them.
"""

from __future__ import annotations

from collections.abc import Iterator

from batchdrop.domain.lines import DEFAULT_READ_BYTES, Readable


class LongLine:
    """A line over the limit: its first bytes, then the rest straight from the stream.

    `pieces()` yields the whole line (without its b"\\n") once, in order, and must be read
    before the next line is asked for; whatever the caller leaves unread is skipped.
    """

    def __init__(self, head: bytes, rest: Iterator[bytes]) -> None:
        self.head = head
        self._rest = rest
        self._started = False

    def pieces(self) -> Iterator[bytes]:
        if self._started:
            raise RuntimeError("a long line can be read once")
        self._started = True
        yield self.head
        yield from self._rest

    def skip(self) -> None:
        for _ in self._rest:
            pass


class _Source:
    """The stream, with the unread part of its last read (from `position` on)."""

    def __init__(self, stream: Readable, read_size: int) -> None:
        self._stream = stream
        self._read_size = read_size
        self._chunk = b""
        self._position = 0

    def more(self) -> bool:
        if self._position >= len(self._chunk):
            self._chunk = self._stream.read(self._read_size)
            self._position = 0
        return self._position < len(self._chunk)

    def take_through_newline(self) -> tuple[bytes, bool]:
        """The unread bytes up to the next b"\\n" (consumed, without it), and whether a b"\\n"
        ended them."""
        start = self._position
        newline = self._chunk.find(b"\n", start)
        if newline < 0:
            self._position = len(self._chunk)
            return self._chunk[start:], False
        self._position = newline + 1
        return self._chunk[start:newline], True


def iter_lines_or_long(
    stream: Readable, *, max_line_bytes: int, read_size: int = DEFAULT_READ_BYTES
) -> Iterator[bytes | LongLine]:
    """Every line of `stream` (without b"\\n"), holding at most `max_line_bytes + read_size`
    bytes of it: bytes when it fits within `max_line_bytes`, otherwise a LongLine."""
    if max_line_bytes < 0 or read_size <= 0:
        raise ValueError("max_line_bytes must be >= 0 and read_size > 0")
    source = _Source(stream, read_size)
    while source.more():
        pending: list[bytes] = []
        size = 0
        ended = False
        while not ended and size <= max_line_bytes and source.more():
            data, ended = source.take_through_newline()
            pending.append(data)
            size += len(data)
        if size <= max_line_bytes:
            yield b"".join(pending)
            continue
        long_line = LongLine(b"".join(pending), _rest_of_line(source, ended))
        yield long_line
        long_line.skip()


def _rest_of_line(source: _Source, ended: bool) -> Iterator[bytes]:
    while not ended and source.more():
        data, ended = source.take_through_newline()
        if data:
            yield data
