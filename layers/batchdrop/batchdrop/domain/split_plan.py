"""Plan how a valid file is split: consecutive lines into batches (parts), and each part's lines
into upload chunks, each within OpenAI's limits.

A plan names byte ranges of the raw object and the size of their lines once normalised
(`lines.normalise_line`), so the uploader can stream each range without holding it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Chunk:
    """Whole lines [start, end) of the raw object; `size` is their normalised length."""

    start: int
    end: int
    size: int


@dataclass(frozen=True)
class Part:
    """Whole lines [start, end) of the raw object that become one batch."""

    index: int
    first_line: int
    line_count: int
    start: int
    end: int
    size: int
    chunks: tuple[Chunk, ...]

    @classmethod
    def whole_object(cls, size: int, max_chunk_bytes: int) -> Part:
        """The whole object as one part, cut into byte chunks without regard to lines: only
        raw bytes sent as they are may be cut so (the upload's parts are concatenated). An
        upload plan only: its lines are not known yet, so `line_count` is 0."""
        chunks = tuple(
            Chunk(start, min(start + max_chunk_bytes, size), min(max_chunk_bytes, size - start))
            for start in range(0, size, max_chunk_bytes)
        )
        return cls(0, 1, 0, 0, size, size, chunks)

    def is_whole_object(self, size: int) -> bool:
        return (self.index, self.start, self.end, self.size) == (0, 0, size, size)


@dataclass
class _OpenChunk:
    start: int
    end: int
    size: int

    def close(self) -> Chunk:
        return Chunk(self.start, self.end, self.size)


@dataclass
class _OpenPart:
    index: int
    first_line: int
    start: int
    line_count: int = 0
    size: int = 0
    inputs: int = 0
    chunks: list[Chunk] = field(default_factory=list)
    chunk: _OpenChunk | None = None

    def close(self) -> Part:
        chunks = self.chunks + ([self.chunk.close()] if self.chunk else [])
        end = chunks[-1].end if chunks else self.start
        return Part(
            self.index, self.first_line, self.line_count, self.start, end, self.size, tuple(chunks)
        )


class SplitPlanner:
    """Groups consecutive lines into parts, and each part's lines into upload chunks.

    A part ends before the line that would take it past a batch's requests, bytes or (for
    embeddings, counted by the caller) inputs."""

    def __init__(
        self, max_requests: int, max_batch_bytes: int, max_chunk_bytes: int, max_inputs: int
    ) -> None:
        self._max_requests = max_requests
        self._max_batch_bytes = max_batch_bytes
        self._max_chunk_bytes = max_chunk_bytes
        self._max_inputs = max_inputs
        self._closed: list[Part] = []
        self._open: _OpenPart | None = None

    def add(self, number: int, offset: int, raw_size: int, size: int, inputs: int = 0) -> None:
        """Line `number`, `raw_size` bytes at `offset` in the raw object, `size` normalised."""
        part = self._open
        if part and (
            part.line_count + 1 > self._max_requests
            or part.size + size > self._max_batch_bytes
            or part.inputs + inputs > self._max_inputs
        ):
            self._closed.append(part.close())
            part = None
        if part is None:
            part = self._open = _OpenPart(len(self._closed), number, offset)
        chunk = part.chunk
        if chunk and chunk.size + size > self._max_chunk_bytes:
            part.chunks.append(chunk.close())
            chunk = None
        if chunk is None:
            chunk = part.chunk = _OpenChunk(offset, offset, 0)
        chunk.end = offset + raw_size
        chunk.size += size
        part.line_count += 1
        part.size += size
        part.inputs += inputs

    @property
    def part_count(self) -> int:
        return len(self._closed) + (self._open is not None)

    def parts(self) -> tuple[Part, ...]:
        tail = [self._open.close()] if self._open else []
        return tuple(self._closed + tail)
