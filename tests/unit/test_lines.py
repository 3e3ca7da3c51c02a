"""Tests for the constant-memory line splitter and the normalisation of each line."""

import io
import random
import tracemalloc

import pytest

from batchdrop.domain.lines import (
    UTF8_BOM,
    IterableReader,
    Line,
    iter_lines,
    normalise_line,
    normalised_lines,
)


def naive_lines(data: bytes, max_line_bytes: int) -> list[Line]:
    """The obvious whole-buffer splitter, as a reference for the streaming one."""
    lines: list[Line] = []
    offset = 0
    pieces = data.split(b"\n")
    if pieces[-1] == b"":
        pieces.pop()
    for number, piece in enumerate(pieces, start=1):
        has_newline = offset + len(piece) < len(data)
        size = len(piece) + (1 if has_newline else 0)
        raw = piece if len(piece) <= max_line_bytes else None
        lines.append(Line(number, offset, raw, size))
        offset += size
    return lines


def seeded(seed: int) -> random.Random:
    return random.Random(seed)


class TrickleStream:
    """Returns fewer bytes than asked, as network streams may."""

    def __init__(self, data: bytes, seed: int) -> None:
        self._data = io.BytesIO(data)
        self._random = seeded(seed)

    def read(self, size: int, /) -> bytes:
        return self._data.read(self._random.randint(1, size))


def split(data: bytes, *, max_line_bytes: int = 1000, read_size: int = 4) -> list[Line]:
    return list(iter_lines(io.BytesIO(data), max_line_bytes=max_line_bytes, read_size=read_size))


def test_lines_have_numbers_offsets_raw_and_sizes() -> None:
    assert split(b'{"a":1}\n\nxyz\n') == [
        Line(1, 0, b'{"a":1}', 8),
        Line(2, 8, b"", 1),
        Line(3, 9, b"xyz", 4),
    ]


def test_final_line_without_newline_is_yielded_with_its_true_size() -> None:
    assert split(b"ab\ncd") == [Line(1, 0, b"ab", 3), Line(2, 3, b"cd", 2)]


def test_final_newline_does_not_add_an_empty_line_but_an_empty_last_line_counts() -> None:
    assert split(b"ab\n") == [Line(1, 0, b"ab", 3)]
    assert split(b"ab\n\n") == [Line(1, 0, b"ab", 3), Line(2, 3, b"", 1)]


def test_empty_stream_has_no_lines() -> None:
    assert split(b"") == []


def test_carriage_returns_are_kept_even_when_a_read_ends_between_cr_and_lf() -> None:
    data = b"abc\r\ndef\r\n"
    # read_size 4 ends the first read exactly after b"\r".
    assert io.BytesIO(data).read(4) == b"abc\r"
    assert split(data, read_size=4) == [Line(1, 0, b"abc\r", 5), Line(2, 5, b"def\r", 5)]


@pytest.mark.parametrize("read_size", [1, 2, 3, 5, 7, 64, 1 << 20])
def test_any_read_size_gives_the_same_lines_as_splitting_the_whole_buffer(read_size: int) -> None:
    data = b'{"x": "\xc3\xa9"}\r\n\n\n' + b"y" * 40 + b"\n" + b"z" * 9 + b"\r\n" + b"tail\r"
    assert split(data, max_line_bytes=20, read_size=read_size) == naive_lines(data, 20)


@pytest.mark.parametrize("seed", range(20))
def test_random_data_and_short_reads_match_the_reference(seed: int) -> None:
    rng = seeded(seed)
    data = bytes(rng.choice(b"ab\r\n\n") for _ in range(rng.randint(0, 400)))
    max_line_bytes = rng.randint(0, 12)
    stream = TrickleStream(data, seed)
    lines = list(iter_lines(stream, max_line_bytes=max_line_bytes, read_size=rng.randint(1, 9)))
    assert lines == naive_lines(data, max_line_bytes)
    assert sum(line.size for line in lines) == len(data)


def test_line_over_the_limit_has_no_raw_but_its_true_offset_and_size() -> None:
    data = b"ok\n" + b"x" * 50 + b"\nafter\n"
    lines = split(data, max_line_bytes=10, read_size=3)
    assert lines == [Line(1, 0, b"ok", 3), Line(2, 3, None, 51), Line(3, 54, b"after", 6)]
    assert lines[1].too_long
    assert not lines[0].too_long


def test_line_exactly_at_the_limit_is_kept() -> None:
    assert split(b"x" * 10 + b"\n", max_line_bytes=10) == [Line(1, 0, b"x" * 10, 11)]
    assert split(b"x" * 11 + b"\n", max_line_bytes=10) == [Line(1, 0, None, 12)]


def test_last_line_over_the_limit_without_newline_is_reported_too_long() -> None:
    assert split(b"a\n" + b"x" * 30, max_line_bytes=10) == [
        Line(1, 0, b"a", 2),
        Line(2, 2, None, 30),
    ]


class EndlessLineStream:
    """Produces one huge line without ever holding it, to measure the splitter's own memory."""

    def __init__(self, total: int) -> None:
        self._left = total

    def read(self, size: int, /) -> bytes:
        size = min(size, self._left)
        self._left -= size
        return b"x" * size


def test_a_line_over_the_limit_is_not_buffered() -> None:
    total = 32 * 1024 * 1024
    tracemalloc.start()
    try:
        lines = list(iter_lines(EndlessLineStream(total), max_line_bytes=1024, read_size=64 * 1024))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == [Line(1, 0, None, total)]
    assert peak < 1024 * 1024


def test_invalid_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="read_size"):
        split(b"a", read_size=0)
    with pytest.raises(ValueError, match="max_line_bytes"):
        split(b"a", max_line_bytes=-1)


def test_iterable_reader_reads_exact_sizes_across_chunks_and_to_the_end() -> None:
    reader = IterableReader([b"ab", b"", b"cde", b"f"])
    assert reader.read(1) == b"a"
    assert reader.read(3) == b"bcd"
    assert reader.read(-1) == b"ef"
    assert reader.read(5) == b""


def test_iterable_reader_is_linear_in_many_short_chunks() -> None:
    """Many one-line chunks per 1 MiB read once cost a copy of the buffer per line."""
    chunks = [b"0123456789abcdef\n"] * 100_000
    reader = IterableReader(chunks)
    read = b"".join(iter(lambda: reader.read(1 << 20), b""))
    assert read == b"".join(chunks)


def test_normalise_line_strips_bom_only_at_file_start_and_one_carriage_return() -> None:
    assert normalise_line(UTF8_BOM + b"{}\r", at_file_start=True) == b"{}\n"
    assert normalise_line(UTF8_BOM + b"{}", at_file_start=False) == UTF8_BOM + b"{}\n"
    assert normalise_line(b"{}\r\r", at_file_start=False) == b"{}\r\n"
    assert normalise_line(b"", at_file_start=False) == b"\n"


def test_normalised_lines_refuses_a_line_over_the_limit() -> None:
    with pytest.raises(ValueError, match="byte 13"):
        list(normalised_lines(io.BytesIO(b"ab\n" + b"x" * 20), range_start=10, max_line_bytes=5))
