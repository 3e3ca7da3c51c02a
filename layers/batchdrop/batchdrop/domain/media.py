"""Results a person can open: the images and videos in a job's merged results, as files.

Generated images come as base64 (`b64_json`) inside `results.jsonl`; each is decoded into a file
of its own, named by its request's custom_id. Videos are not in the results at all: a merged
video line holds a `Video` object whose content OpenAI serves for a limited time, so the caller
fetches each completed one (`completed_videos` says which).

Both read the merged lines `results.merge_in_input_order` writes, whose form is fixed:
`{"line":N,"custom_id":...,"status":...,"status_code":...,"response":<the body>,"error":...}`.
An image line is never parsed whole: every line is scanned in pieces (`LongLine` for one over
`max_line_bytes`), its custom_id and status read from its head, and each base64 string decoded
as it streams past into a file on local disk. Memory stays about `max_line_bytes` plus one read,
however large the line or its images.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from aws_lambda_powertools import Logger

from batchdrop import SERVICE
from batchdrop.domain.body_rules import (
    IMAGE_EDITS_ENDPOINT,
    IMAGE_GENERATIONS_ENDPOINT,
    VIDEOS_ENDPOINT,
)
from batchdrop.domain.lines import Readable, json_object
from batchdrop.domain.long_lines import LongLine, iter_lines_or_long

logger = Logger(service=SERVICE, child=True)

IMAGE_ENDPOINTS = frozenset({IMAGE_GENERATIONS_ENDPOINT, IMAGE_EDITS_ENDPOINT})
MEDIA_ENDPOINTS = IMAGE_ENDPOINTS | {VIDEOS_ENDPOINT}
IMAGE_FORMATS = frozenset({"png", "webp", "jpeg"})  # ImagesResponse.output_format
DEFAULT_IMAGE_FORMAT = "png"
VIDEO_EXTENSION = "mp4"
MAX_STEM_CHARS = 100  # a custom_id may be long; an S3 key may not be
# A line up to this size is read whole (once); a longer one in pieces.
MAX_MEDIA_LINE_BYTES = 4 * 1024 * 1024
# Where a line's custom_id and status must be found: a longer custom_id is not worth a file.
HEAD_WINDOW = 64 * 1024
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_HEAD = re.compile(rb'\{"line":\d+,"custom_id":')
_IMAGE_KEY = re.compile(rb'[{,]\s*"b64_json"\s*:\s*"')
_FORMAT = re.compile(rb'"output_format"\s*:\s*"([a-z]+)"')
# Bytes kept from the end of one piece, so that a key split between two pieces is still found.
_KEEP = 64
_DECODE_BYTES = 256 * 1024


def media_stem(custom_id: str) -> str:
    """The custom_id as the start of a file name that is safe in any S3 key: letters, digits,
    `.`, `_` and `-` stay; any other character becomes `_`, and a name that changed (or was
    cut short) ends with a hash of the custom_id, so two custom_ids never share a name."""
    stem = _UNSAFE.sub("_", custom_id)[:MAX_STEM_CHARS]
    if stem != custom_id or not stem.strip("."):
        digest = hashlib.sha256(custom_id.encode("utf-8", "surrogatepass")).hexdigest()
        stem = f"{stem}-{digest[:8]}"
    return stem


def media_name(custom_id: str, extension: str, index: int | None = None) -> str:
    """`<stem>.<extension>`, or `<stem>(<index>).<extension>` for one of a line's several images.
    Parentheses never occur in a stem, so no custom_id's name is another's indexed one."""
    suffix = "" if index is None else f"({index})"
    return f"{media_stem(custom_id)}{suffix}.{extension}"


@dataclass(frozen=True)
class LineHead:
    custom_id: str
    status: str


def read_head(head: bytes) -> LineHead | None:
    """The custom_id and status from the start of a merged line; None if they are not there."""
    match = _HEAD.match(head)
    if match is None:
        return None
    decoder = json.JSONDecoder()
    try:
        text = head[match.end() : HEAD_WINDOW].decode("utf-8", "replace")
        custom_id, position = decoder.raw_decode(text)
        if not text.startswith(',"status":', position):
            return None
        status, _ = decoder.raw_decode(text, position + len(',"status":'))
    except ValueError:
        return None
    if not isinstance(custom_id, str) or not isinstance(status, str):
        return None
    return LineHead(custom_id, status)


@dataclass
class _ImageScanner:
    """Decodes every `b64_json` string of a line's pieces into files in `workdir`, and notes the
    body's `output_format`, wherever in the body it comes."""

    workdir: Path
    files: list[Path] = field(default_factory=list)
    output_format: str | None = None
    _pending: bytes = b""
    _out: IO[bytes] | None = None
    _carry: bytes = b""

    def feed(self, data: bytes) -> None:
        """Scan the next piece of the line. Positions move through it; it is never sliced whole."""
        if self._pending:
            data, self._pending = self._pending + data, b""
        position = 0
        while position < len(data):
            if self._out is not None:
                end = data.find(b'"', position)
                self._decode(data, position, len(data) if end < 0 else end)
                if end < 0:
                    return
                self._end_image()
                position = end
                continue
            match = _IMAGE_KEY.search(data, position)
            for found in _FORMAT.finditer(
                data, position, len(data) if match is None else match.start()
            ):
                self.output_format = found.group(1).decode()
            if match is None:
                self._pending = data[max(position, len(data) - _KEEP) :]
                return
            self._start_image()
            position = match.end()

    def close(self) -> None:
        if self._out is not None:  # the line ended inside a string: keep what was decoded
            self._end_image()

    def discard(self) -> None:
        """Close and remove every file, whatever state the scan stopped in."""
        if self._out is not None:
            self._out.close()
            self._out = None
        for path in self.files:
            path.unlink(missing_ok=True)

    def _start_image(self) -> None:
        path = self.workdir / f"image-{len(self.files) + 1}.bin"
        self.files.append(path)
        self._out = path.open("wb")

    def _decode(self, data: bytes, start: int, stop: int) -> None:
        """Decode data[start:stop], a window at a time; a partial quantum waits for the next."""
        assert self._out is not None
        for window in range(start, stop, _DECODE_BYTES):
            # JSON may escape "/" as "\/"; base64 has no other character that JSON escapes.
            chunk = self._carry + data[window : min(window + _DECODE_BYTES, stop)].replace(
                b"\\", b""
            )
            usable = len(chunk) - len(chunk) % 4
            self._out.write(base64.b64decode(chunk[:usable]))
            self._carry = chunk[usable:]

    def _end_image(self) -> None:
        assert self._out is not None
        if self._carry:
            padded = self._carry + b"=" * (-len(self._carry) % 4)
            self._out.write(base64.b64decode(padded))
        self._carry = b""
        self._out.close()
        self._out = None


def _pieces(line: bytes | LongLine) -> Iterable[bytes]:
    return line.pieces() if isinstance(line, LongLine) else (line,)


def _head(line: bytes | LongLine) -> bytes:
    return line.head if isinstance(line, LongLine) else line


def save_images(
    results: Readable,
    workdir: Path,
    save: Callable[[str, Path], None],
    *,
    max_line_bytes: int = MAX_MEDIA_LINE_BYTES,
) -> int:
    """Decode the images of every succeeded line of merged `results` and hand each to
    `save(name, path)`, in input order; return how many there were. Each file is removed once
    saved; a line's files exist together only while that line is handled. A line whose base64
    does not decode saves nothing (its results.jsonl line still holds what OpenAI sent)."""
    count = 0
    for line in iter_lines_or_long(results, max_line_bytes=max_line_bytes):
        head = read_head(_head(line)[:HEAD_WINDOW])
        if head is None or head.status != "succeeded":
            continue
        scanner = _ImageScanner(workdir)
        try:
            for piece in _pieces(line):
                scanner.feed(piece)
            scanner.close()
            count += _save_line(head.custom_id, scanner, save)
        except binascii.Error as error:
            logger.warning("image not decoded", extra={"id": head.custom_id, "error": str(error)})
        finally:
            scanner.discard()
    return count


def _save_line(custom_id: str, scanner: _ImageScanner, save: Callable[[str, Path], None]) -> int:
    extension = scanner.output_format
    if extension not in IMAGE_FORMATS:
        extension = DEFAULT_IMAGE_FORMAT
    several = len(scanner.files) > 1
    for index, path in enumerate(scanner.files, start=1):
        save(media_name(custom_id, extension, index if several else None), path)
    return len(scanner.files)


@dataclass(frozen=True)
class CompletedVideo:
    name: str  # the file it is saved as
    video_id: str


def completed_videos(
    results: Readable, *, max_line_bytes: int = MAX_MEDIA_LINE_BYTES
) -> Iterator[CompletedVideo]:
    """The completed videos of merged `results`, in input order. A `Video` object is small: a
    line too long to be one is skipped."""
    for line in iter_lines_or_long(results, max_line_bytes=max_line_bytes):
        if isinstance(line, LongLine):
            continue
        document = json_object(line)
        if document is None or document.get("status") != "succeeded":
            continue
        video = document.get("response")
        custom_id = document.get("custom_id")
        if (
            isinstance(video, dict)
            and video.get("object") == "video"
            and video.get("status") == "completed"
            and isinstance(video.get("id"), str)
            and isinstance(custom_id, str)
        ):
            yield CompletedVideo(media_name(custom_id, VIDEO_EXTENSION), video["id"])
