"""Merge a job's OpenAI result files back into input order, in memory that does not grow with them.

OpenAI writes results in no particular order, spread over output and error files. Three
streaming passes put them back in order:

1. Read the inputs once to number each request and map its custom_id to that line number.
2. Read every result file once, turn each line into its merged form, and append it to the spill
   file (on local disk) that covers its line number's range. A spill file that ends up larger than
   `bucket_bytes` is split again by narrower ranges, so the estimate of how many to start with
   (the inputs' size: the only size known before the results are read) affects speed, not memory.
3. Read the inputs again, in order, loading one spill file at a time into a dict keyed by line
   number, and write one merged line per request, plus the unfinished requests' input lines.

Memory is about `bucket_bytes` plus one line, plus ~120 bytes per request for the map of pass 1.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from itertools import pairwise
from pathlib import Path
from typing import IO, Any

from aws_lambda_powertools import Logger

from batchdrop import SERVICE
from batchdrop.lines import Line, Readable, iter_lines
from batchdrop.s3stream import Writable
from batchdrop.validation import MAX_LINE_BYTES, custom_id_digest

logger = Logger(service=SERVICE, child=True)

DEFAULT_BUCKET_BYTES = 16 * 1024 * 1024
# One result line may be far larger than its request: embeddings of 2,048 inputs, say.
MAX_RESULT_LINE_BYTES = 128 * 1024 * 1024
# Each open spill file holds a write buffer; this caps their number and so their total.
MAX_OPEN_SPILL_FILES = 128
SPILL_WRITE_BUFFER_BYTES = 64 * 1024
# OpenAI ends a request it never ran with one of these; the request can simply be sent again.
UNFINISHED_ERROR_CODES = frozenset({"batch_expired", "batch_cancelled"})
UNKNOWN_ERROR_CODE = "unknown_error"
_LOGGED_UNMATCHED_IDS = 5


class Status(IntEnum):
    """A request's fate; when one request has several results, the higher value wins."""

    UNFINISHED = 1
    FAILED = 2
    SUCCEEDED = 3

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class MergeSummary:
    total: int
    succeeded: int
    failed: int
    unfinished: int
    failed_by_code: dict[str, int]
    # Result lines that could not be placed: their custom_id is in no input line...
    unmatched_results: int = 0
    # ...or they are not a JSON object with a custom_id, or longer than the limit for a result.
    unreadable_results: int = 0


def merge_in_input_order(
    input_streams: Sequence[Callable[[], Readable]],
    result_streams: Sequence[Callable[[], Readable]],
    merged: Writable,
    unfinished: Writable,
    *,
    workdir: Path,
    bucket_bytes: int = DEFAULT_BUCKET_BYTES,
    max_line_bytes: int = MAX_LINE_BYTES,
    max_result_line_bytes: int = MAX_RESULT_LINE_BYTES,
) -> MergeSummary:
    """Write one merged line per input request, in input order, to `merged`, and the input
    line of every unfinished request (expired, cancelled or never reported) to `unfinished`.

    `input_streams` open the job's parts' normalised inputs (the bytes sent to OpenAI) in order;
    each is opened twice. `result_streams` open its output and error files, in any order; each is
    opened once. Spill files live in a fresh directory under `workdir`, removed before returning.
    """
    if bucket_bytes <= 0:
        raise ValueError("bucket_bytes must be > 0")
    index = _index_inputs(input_streams, max_line_bytes)
    spill_dir = Path(tempfile.mkdtemp(prefix="merge-", dir=workdir))
    try:
        sorter = _ResultSorter(index, spill_dir, bucket_bytes)
        for open_results in result_streams:
            sorter.add(open_results, max_result_line_bytes)
        spills = sorter.finish()
        unmatched, unreadable = sorter.unmatched, sorter.unreadable
        del index, sorter  # pass 3 needs neither the custom_id map nor the best-status array
        tally = _write_in_order(input_streams, spills, merged, unfinished, max_line_bytes)
    finally:
        shutil.rmtree(spill_dir, ignore_errors=True)
    return MergeSummary(
        total=tally.total,
        succeeded=tally.by_status[Status.SUCCEEDED],
        failed=tally.by_status[Status.FAILED],
        unfinished=tally.by_status[Status.UNFINISHED],
        failed_by_code=dict(sorted(tally.failed_by_code.items())),
        unmatched_results=unmatched,
        unreadable_results=unreadable,
    )


# Pass 1: number the requests.


@dataclass(frozen=True)
class _InputIndex:
    line_by_id: dict[bytes, int]
    total: int
    input_bytes: int


def _index_inputs(
    input_streams: Sequence[Callable[[], Readable]], max_line_bytes: int
) -> _InputIndex:
    line_by_id: dict[bytes, int] = {}
    input_bytes = 0
    number = 0
    for number, raw in _numbered_inputs(input_streams, max_line_bytes):
        input_bytes += len(raw) + 1
        key = custom_id_digest(_input_custom_id(number, raw))
        if line_by_id.setdefault(key, number) != number:
            raise ValueError(f"input line {number} repeats the custom_id of line {line_by_id[key]}")
    return _InputIndex(line_by_id, number, input_bytes)


def _numbered_inputs(
    input_streams: Sequence[Callable[[], Readable]], max_line_bytes: int
) -> Iterator[tuple[int, bytes]]:
    """Every request line of every part, numbered from 1 across the whole job."""
    number = 0
    for open_input in input_streams:
        for line in _lines_of(open_input, max_line_bytes):
            number += 1
            if line.raw is None:
                raise ValueError(f"input line {number} exceeds {max_line_bytes} bytes")
            yield number, line.raw


def _input_custom_id(number: int, raw: bytes) -> str:
    request = _json_object(raw)
    custom_id = request.get("custom_id") if request else None
    if not isinstance(custom_id, str):
        raise ValueError(f"input line {number} is not a JSON object with a string custom_id")
    return custom_id


# Pass 2: sort the results into spill files by line number.


@dataclass(frozen=True)
class _Outcome:
    status: Status
    status_code: int | None
    response: Any
    error: Any
    code: str | None  # set for failures only


@dataclass
class _Spill:
    """Merged records for line numbers [first, end), appended to a file at `path`."""

    first: int
    end: int
    path: Path
    size: int = 0


class _ResultSorter:
    def __init__(self, index: _InputIndex, spill_dir: Path, bucket_bytes: int) -> None:
        self._line_by_id = index.line_by_id
        # The best status recorded so far for each line number (0: none), one byte a request.
        self._best = bytearray(index.total + 1)
        self._bucket_bytes = bucket_bytes
        self._spill_dir = spill_dir
        # Results are guessed to be about as large as their requests; finish() corrects the guess.
        estimate = -(-index.input_bytes // bucket_bytes)
        self._spills = _partition(
            1, index.total + 1, min(max(estimate, 1), MAX_OPEN_SPILL_FILES), spill_dir
        )
        self._writer = _SpillWriter(self._spills)
        self.unmatched = 0
        self.unreadable = 0
        self.superseded = 0

    def add(self, open_results: Callable[[], Readable], max_result_line_bytes: int) -> None:
        for line in _lines_of(open_results, max_result_line_bytes):
            if line.raw is None:
                self.unreadable += 1
                logger.warning("result line too long to read", extra={"bytes": line.size})
            elif line.raw.strip():
                self._add_line(line.raw)

    def finish(self) -> list[_Spill]:
        """Close the spill files and return them, in line order, none above `bucket_bytes`
        unless it holds a single line number."""
        self._writer.close()
        if self.unmatched or self.superseded:
            logger.warning(
                "results that were not merged",
                extra={"unmatched": self.unmatched, "superseded": self.superseded},
            )
        return _split_large(self._spills, self._bucket_bytes, self._spill_dir)

    def _add_line(self, raw: bytes) -> None:
        result = _json_object(raw)
        custom_id = result.get("custom_id") if result else None
        if result is None or not isinstance(custom_id, str):
            self.unreadable += 1
            return
        number = self._line_by_id.get(custom_id_digest(custom_id))
        if number is None:
            self.unmatched += 1
            if self.unmatched <= _LOGGED_UNMATCHED_IDS:
                logger.warning("result for a custom_id in no input line", extra={"id": custom_id})
            return
        outcome = _classify(result)
        # Only a strictly better result is spilled, so within a spill file the last record wins.
        if outcome.status <= self._best[number]:
            self.superseded += 1
            return
        self._best[number] = outcome.status
        self._writer.write(number, _record(number, custom_id, outcome))


def _classify(result: dict[str, Any]) -> _Outcome:
    error = _dict_or_none(result.get("error"))
    error_code = _code_of(error)
    if error_code in UNFINISHED_ERROR_CODES:
        return _Outcome(Status.UNFINISHED, None, None, error, None)
    response = _dict_or_none(result.get("response")) or {}
    status_code = response.get("status_code")
    if not isinstance(status_code, int) or isinstance(status_code, bool):
        status_code = None
    body = response.get("body")
    if error is None and status_code is not None and status_code < 400:
        return _Outcome(Status.SUCCEEDED, status_code, body, None, None)
    body_error = _dict_or_none(body.get("error")) if isinstance(body, dict) else None
    http_code = None if status_code is None else f"http_{status_code}"
    code = error_code or _code_of(body_error) or http_code or UNKNOWN_ERROR_CODE
    return _Outcome(Status.FAILED, status_code, body, body_error or error, code)


def _code_of(error: dict[str, Any] | None) -> str | None:
    code = error.get("code") if error else None
    return code if isinstance(code, str) and code else None


def _record(number: int, custom_id: str, outcome: _Outcome) -> bytes:
    """A spill record: line number, status and failure code, then the merged line itself.

    Tabs separate the fields: JSON escapes any tab inside a string, so none can occur in them.
    """
    merged = _merged_line(number, custom_id, outcome)
    code = b"" if outcome.code is None else json.dumps(outcome.code).encode()
    return b"%d\t%d\t%s\t%s" % (number, outcome.status, code, merged)


def _merged_line(number: int, custom_id: str, outcome: _Outcome) -> bytes:
    document = {
        "line": number,
        "custom_id": custom_id,
        "status": outcome.status.label,
        "status_code": outcome.status_code,
        "response": outcome.response,
        "error": outcome.error,
    }
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode() + b"\n"
    except UnicodeEncodeError:
        # A lone surrogate, from a \ud800-style escape, has no UTF-8 form: keep it escaped.
        return json.dumps(document, separators=(",", ":")).encode() + b"\n"


def _partition(first: int, end: int, count: int, spill_dir: Path) -> list[_Spill]:
    """Split line numbers [first, end) into at most `count` contiguous, near-equal ranges."""
    if end <= first:
        return []
    count = max(1, min(count, end - first))
    bounds = [first + (end - first) * i // count for i in range(count + 1)]
    return [_Spill(low, high, spill_dir / f"{low}-{high}.jsonl") for low, high in pairwise(bounds)]


class _SpillWriter:
    """Appends records to whichever of `spills` (contiguous, in order) covers their line."""

    def __init__(self, spills: list[_Spill]) -> None:
        self._spills = spills
        self._firsts = [spill.first for spill in spills]
        self._files: list[IO[bytes]] = []
        try:
            for spill in spills:
                self._files.append(spill.path.open("wb", buffering=SPILL_WRITE_BUFFER_BYTES))
        except BaseException:
            self.close()
            raise

    def write(self, number: int, record: bytes) -> None:
        position = bisect_right(self._firsts, number) - 1
        self._files[position].write(record)
        self._spills[position].size += len(record)

    def close(self) -> None:
        for file in self._files:
            file.close()


def _split_large(spills: list[_Spill], bucket_bytes: int, spill_dir: Path) -> list[_Spill]:
    """Replace every spill file above `bucket_bytes` by narrower ones, until none is left (or
    it covers a single line number); the estimate behind the first partition may be far off."""
    pending = deque(spills)
    done: list[_Spill] = []
    while pending:
        spill = pending.popleft()
        if spill.size <= bucket_bytes or spill.end - spill.first == 1:
            done.append(spill)
            continue
        wanted = min(-(-spill.size // bucket_bytes), MAX_OPEN_SPILL_FILES)
        narrower = _partition(spill.first, spill.end, wanted, spill_dir)
        writer = _SpillWriter(narrower)
        try:
            with spill.path.open("rb") as records:
                for record in records:
                    writer.write(_record_line(record), record)
        finally:
            writer.close()
        spill.path.unlink()
        pending.extendleft(reversed(narrower))
    return done


def _record_line(record: bytes) -> int:
    return int(record[: record.index(b"\t")])


# Pass 3: write the merged lines in input order.


@dataclass
class _Tally:
    total: int = 0
    by_status: dict[Status, int] = field(default_factory=lambda: dict.fromkeys(Status, 0))
    failed_by_code: dict[str, int] = field(default_factory=dict)

    def count(self, status: Status, code: str | None) -> None:
        self.total += 1
        self.by_status[status] += 1
        if code is not None:
            self.failed_by_code[code] = self.failed_by_code.get(code, 0) + 1


def _write_in_order(
    input_streams: Sequence[Callable[[], Readable]],
    spills: list[_Spill],
    merged: Writable,
    unfinished: Writable,
    max_line_bytes: int,
) -> _Tally:
    tally = _Tally()
    remaining = iter(spills)
    records: dict[int, bytes] = {}
    records_end = 1
    for number, raw in _numbered_inputs(input_streams, max_line_bytes):
        while number >= records_end:
            spill = next(remaining, None)
            if spill is None:
                raise ValueError("the inputs grew between the passes of the merge")
            records = _load(spill)
            records_end = spill.end
        status, code, line = _merged_for(number, raw, records.pop(number, None))
        merged.write(line)
        if status is Status.UNFINISHED:
            unfinished.write(raw + b"\n")
        tally.count(status, code)
    if next(remaining, None) is not None or records_end != tally.total + 1:
        raise ValueError("the inputs shrank between the passes of the merge")
    return tally


def _load(spill: _Spill) -> dict[int, bytes]:
    """One spill file's records by line number; the later of two records for a line wins."""
    with spill.path.open("rb") as records:
        loaded = {_record_line(record): record for record in records}
    spill.path.unlink()  # free the disk as the merge goes; /tmp may be small
    return loaded


def _merged_for(number: int, raw: bytes, record: bytes | None) -> tuple[Status, str | None, bytes]:
    if record is None:
        # OpenAI reported nothing for this request: it never ran, so it may be sent again.
        custom_id = _input_custom_id(number, raw)
        outcome = _Outcome(Status.UNFINISHED, None, None, None, None)
        return Status.UNFINISHED, None, _merged_line(number, custom_id, outcome)
    _, status, code, line = record.split(b"\t", 3)
    return Status(int(status)), json.loads(code) if code else None, line


# Shared helpers.


def _lines_of(open_stream: Callable[[], Readable], max_line_bytes: int) -> Iterator[Line]:
    """The lines of a freshly opened stream, which is closed afterwards if it can be."""
    stream = open_stream()
    try:
        yield from iter_lines(stream, max_line_bytes=max_line_bytes)
    finally:
        close = getattr(stream, "close", None)
        if callable(close):
            close()


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def _dict_or_none(value: object) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None
