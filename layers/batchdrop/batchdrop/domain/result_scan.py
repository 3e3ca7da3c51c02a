"""Read one result line too long to parse whole: its few small fields, and its body as a stream.

A result line is `{"id": ..., "custom_id": ..., "response": {"status_code": ..., "request_id":
..., "body": {...}}, "error": ...}`. Only `response.body` can be large (2,048 embeddings of 3,072
dimensions make about 90 MB), and merging needs everything but the body parsed. So the line is
scanned in pieces: the values at the paths in `CAPTURED` are kept (each up to `CAPTURE_LIMIT`
bytes) and parsed, and the body's bytes go to a sink as they are, without being parsed. No key
order is assumed: the body may come before the custom_id.

The scan follows the JSON structure (objects, arrays, strings and escapes) with regular
expressions that jump between the bytes that matter, so a 100 MB line is scanned at the speed of
`re` rather than of a Python loop per byte. Tokens between those bytes (numbers, literals) are
copied, not checked: a body OpenAI wrote is copied exactly as it came.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from batchdrop.ports import Writable

Path = tuple[str, ...]
BODY: Path = ("response", "body")
CAPTURED: frozenset[Path] = frozenset(
    {("custom_id",), ("error",), ("response",), ("response", "status_code"), (*BODY, "error")}
)
# Objects whose keys are read; every other value is skipped over (and copied when in the body).
_STRUCTURED: frozenset[Path] = frozenset({(), ("response",), BODY})
CAPTURE_LIMIT = 64 * 1024
_MAX_KEY_BYTES = 256

_STRING_STOP = re.compile(rb'["\\]')
_SKIP_STOP = re.compile(rb'["\\{}\[\]]')
_SCALAR_END = re.compile(rb"[ \t\r\n,}\]]")


def _skip_space(chunk: bytes, position: int) -> int:
    while position < len(chunk) and chunk[position] in b" \t\r\n":
        position += 1
    return position


class UnreadableLine(ValueError):
    """The line is not one JSON object with readable fields."""


@dataclass
class ScannedLine:
    """What merging needs of a long result line; the body went to the sink."""

    values: dict[Path, Any] = field(default_factory=dict)  # the CAPTURED values, parsed
    present: set[Path] = field(default_factory=set)  # every path read that was in the line
    body_bytes: int = 0
    problem: str | None = None  # why the line could not be read (what was read before stays)

    def get(self, path: Path) -> Any:
        return self.values.get(path)

    @property
    def custom_id(self) -> Any:
        return self.values.get(("custom_id",))


def scan_long_line(pieces: Iterable[bytes], body: Writable) -> ScannedLine:
    """Scan a result line given in pieces; its `response.body` is written to `body` as it comes.

    `problem` is set if the line is not a JSON object, ends early, repeats a field this reads,
    or holds a field other than the body over CAPTURE_LIMIT bytes; the caller stops using the
    pieces there (the rest of the line is skipped).
    """
    scanner = _Scanner(body)
    try:
        for piece in pieces:
            scanner.feed(piece)
        return scanner.close()
    except UnreadableLine as error:
        scanner.result.problem = str(error)
        return scanner.result


@dataclass
class _Frame:
    path: Path
    key: str | None = None


@dataclass
class _Capture:
    path: Path
    data: bytearray = field(default_factory=bytearray)


class _Scanner:
    """A push scanner: `feed` any split of the line, then `close`."""

    def __init__(self, body: Writable) -> None:
        self._body = body
        self._frames: list[_Frame] = []
        self._state = "value"  # value, key_or_end, key, colon, after, skip, string, scalar, done
        self._key = bytearray()
        self._escape = False  # a backslash ended the last piece inside a string or key
        self._depth = 0  # containers open inside a skipped value
        self._value_path: Path | None = None  # the value being skipped or captured
        self._captures: list[_Capture] = []
        self._streaming = False
        self.result = ScannedLine()
        self._chunk = b""
        self._mark = 0  # bytes of `_chunk` before this were handed to the captures and sink

    def feed(self, chunk: bytes) -> None:
        self._chunk, self._mark = chunk, 0
        position = 0
        while position < len(chunk):
            position = getattr(self, f"_on_{self._state}")(position)
        self._flush(len(chunk))

    def close(self) -> ScannedLine:
        if self._state != "done":
            raise UnreadableLine("the line ends inside its JSON object")
        return self.result

    # --- handing bytes to captures and the body -------------------------------------------

    def _flush(self, end: int) -> None:
        if end <= self._mark:
            return
        data = self._chunk[self._mark : end]
        self._mark = end
        for capture in self._captures:
            capture.data += data
            if len(capture.data) > CAPTURE_LIMIT:
                raise UnreadableLine(f"{'.'.join(capture.path)} exceeds {CAPTURE_LIMIT} bytes")
        if self._streaming:
            self._body.write(data)
            self.result.body_bytes += len(data)

    def _start_value(self, path: Path, position: int, *, capture: bool) -> None:
        if path in self.result.present and (path in CAPTURED or path == BODY):
            raise UnreadableLine(f"{'.'.join(path)} appears twice")
        self.result.present.add(path)
        self._flush(position)
        if capture:
            self._captures.append(_Capture(path))
        if path == BODY:
            self._streaming = True

    def _end_value(self, path: Path, position: int) -> None:
        self._flush(position)
        if path == BODY:
            self._streaming = False
        if self._captures and self._captures[-1].path == path:
            data = bytes(self._captures.pop().data)
            try:
                self.result.values[path] = json.loads(data)
            except (ValueError, RecursionError) as error:
                raise UnreadableLine(f"{'.'.join(path)} is not JSON") from error
        self._state = "after" if self._frames else "done"

    # --- states: each takes the position in the chunk and returns the next ----------------

    def _on_value(self, position: int) -> int:
        position = _skip_space(self._chunk, position)
        if position >= len(self._chunk):
            return position
        path = (*self._frames[-1].path, self._frames[-1].key or "") if self._frames else ()
        byte = self._chunk[position : position + 1]
        if not self._frames and byte != b"{":
            raise UnreadableLine("the line is not a JSON object")
        structured = path in _STRUCTURED and byte == b"{"
        self._start_value(path, position, capture=path in CAPTURED and not structured)
        self._value_path = path
        if structured:
            self._frames.append(_Frame(path))
            self._state = "key_or_end"
        elif byte == b'"':
            self._state = "string"
        elif byte in (b"{", b"["):
            self._depth, self._state = 1, "skip"
        else:
            self._state = "scalar"
            return position
        return position + 1

    def _on_key_or_end(self, position: int) -> int:
        position = _skip_space(self._chunk, position)
        if position >= len(self._chunk):
            return position
        byte = self._chunk[position : position + 1]
        if byte == b"}":
            return self._close_object(position)
        if byte != b'"':
            raise UnreadableLine("expected a key")
        self._key.clear()
        self._state = "key"
        return position + 1

    def _on_key(self, position: int) -> int:
        end = self._string_end(position)
        self._key += self._chunk[position : len(self._chunk) if end < 0 else end - 1]
        if len(self._key) > _MAX_KEY_BYTES:
            self._key = self._key[:_MAX_KEY_BYTES]  # a key this long names nothing read here
        if end < 0:
            return len(self._chunk)
        self._frames[-1].key = self._key.decode("utf-8", "replace")
        self._state = "colon"
        return end

    def _on_colon(self, position: int) -> int:
        position = _skip_space(self._chunk, position)
        if position >= len(self._chunk):
            return position
        if self._chunk[position : position + 1] != b":":
            raise UnreadableLine("expected ':' after a key")
        self._state = "value"
        return position + 1

    def _on_after(self, position: int) -> int:
        position = _skip_space(self._chunk, position)
        if position >= len(self._chunk):
            return position
        byte = self._chunk[position : position + 1]
        if byte == b",":
            self._state = "key_or_end"
            return position + 1
        if byte == b"}":
            return self._close_object(position)
        raise UnreadableLine("expected ',' or '}' after a value")

    def _on_done(self, position: int) -> int:
        position = _skip_space(self._chunk, position)
        if position < len(self._chunk):
            raise UnreadableLine("bytes after the line's JSON object")
        return position

    def _close_object(self, position: int) -> int:
        frame = self._frames.pop()
        self._end_value(frame.path, position + 1)
        return position + 1

    def _on_string(self, position: int) -> int:
        end = self._string_end(position)
        if end < 0:
            return len(self._chunk)
        self._finish_skipped(end)
        return end

    def _on_scalar(self, position: int) -> int:
        found = _SCALAR_END.search(self._chunk, position)
        if found is None:
            return len(self._chunk)
        self._finish_skipped(found.start())
        return found.start()

    def _on_skip(self, position: int) -> int:
        chunk = self._chunk
        while True:
            found = _SKIP_STOP.search(chunk, position)
            if found is None:
                return len(chunk)
            position = found.end()
            byte = found.group()
            if byte == b'"':
                self._state = "skip_string"
                return position
            if byte in (b"{", b"["):
                self._depth += 1
            elif byte in (b"}", b"]"):
                self._depth -= 1
                if self._depth == 0:
                    self._finish_skipped(position)
                    return position
            else:
                raise UnreadableLine("a backslash outside a string")

    def _on_skip_string(self, position: int) -> int:
        end = self._string_end(position)
        if end < 0:
            return len(self._chunk)
        self._state = "skip"
        return end

    def _finish_skipped(self, end: int) -> None:
        path = self._value_path
        assert path is not None
        self._end_value(path, end)

    def _string_end(self, position: int) -> int:
        """The position just after the closing quote of the string `position` is inside, or -1
        when this chunk ends first (a trailing backslash is remembered for the next one)."""
        chunk = self._chunk
        if self._escape:
            self._escape, position = False, position + 1
        while True:
            found = _STRING_STOP.search(chunk, position)
            if found is None:
                return -1
            if found.group() == b'"':
                return found.end()
            if found.end() >= len(chunk):
                self._escape = True
                return -1
            position = found.end() + 1
