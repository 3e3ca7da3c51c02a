"""Merge a job's OpenAI result files back into input order, in memory that does not grow with them.

OpenAI writes results in no particular order, spread over output and error files. Three
streaming passes put them back in order:

1. Read the inputs once to number each request and map its custom_id to that line number.
2. Read every result file once, turn each line into its merged form, and append it to the spill
   file (on local disk) that covers its line number's range. A spill file that ends up larger than
   `bucket_bytes` is split again by narrower ranges, so the estimate of how many to start with
   (the inputs' size: the only size known before the results are read) affects speed, not memory.
3. Read the inputs again, in order, loading one spill file at a time into a dict keyed by line
   number, and write one merged line per request, plus the input lines of the unfinished ones
   and of every one that did not succeed.

A result line longer than `max_result_line_bytes` is never held whole: it is scanned in pieces
(`result_scan`), its custom_id and small fields are parsed and its `response.body` is copied,
unparsed, into a file of its own beside the spill files, which pass 3 copies into the merged
line. That line has the same keys and, parsed, the same value as it would have had if parsed
whole; only the body's bytes are OpenAI's own (its spacing and escapes) instead of re-encoded.

Every request ends with one fate (`fates.py`): succeeded, failed, unfinished (OpenAI reports it
never ran: the only ones ever sent again) or unplaced (with the reason). Result lines that match
no request are counted, and listed up to `MAX_LISTED_UNPLACED`, with their reasons.

Memory is about `bucket_bytes` plus `max_result_line_bytes`, plus ~120 bytes per request for the
map of pass 1, whatever the size of any one result line.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import IO, Any

from aws_lambda_powertools import Logger

from batchdrop import SERVICE
from batchdrop.domain.duplicate_ids import custom_id_digest
from batchdrop.domain.fates import (
    UNKNOWN_CUSTOM_ID,
    UNREADABLE_RESULT_LINE,
    Fate,
    FollowUpRound,
    Status,
    after_follow_ups,
    unplaced,
    without_result,
)
from batchdrop.domain.limits import MAX_LINE_BYTES
from batchdrop.domain.lines import Line, Readable, close_stream, iter_lines, json_object
from batchdrop.domain.long_lines import LongLine, iter_lines_or_long
from batchdrop.domain.result_scan import BODY, ScannedLine, scan_long_line
from batchdrop.ports import Writable

logger = Logger(service=SERVICE, child=True)

DEFAULT_BUCKET_BYTES = 16 * 1024 * 1024
# A result line longer than this is streamed, never held whole: one line may be far larger than
# its request (embeddings of 2,048 inputs make about 90 MB).
MAX_RESULT_LINE_BYTES = 4 * 1024 * 1024
# Each open spill file holds a write buffer; this caps their number and so their total.
MAX_OPEN_SPILL_FILES = 128
SPILL_WRITE_BUFFER_BYTES = 64 * 1024
COPY_BYTES = 1024 * 1024
# OpenAI ends a request it never ran with one of these; the request can simply be sent again.
UNFINISHED_ERROR_CODES = frozenset({"batch_expired", "batch_cancelled"})
UNKNOWN_ERROR_CODE = "unknown_error"
MAX_LISTED_UNPLACED = 100  # result lines listed in the summary; all of them are counted
_STREAMED = b"@"  # a spill record whose response body is in a file of its own


@dataclass(frozen=True)
class PartInput:
    """One batch's requests (opened twice) and how the batch ended."""

    open: Callable[[], Readable]
    batch_status: str = "completed"
    batch_error: str | None = None  # a failed batch's first error code


@dataclass(frozen=True)
class ResultFile:
    """One of OpenAI's output or error files (opened once): of part `part` in round 0, or of a
    follow-up batch in round `round`."""

    open: Callable[[], Readable]
    part: int | None = None
    round: int = 0
    # A duplicate batch's file: its lines say what ran there, but one saying a request was not
    # run (expired, cancelled) says nothing of the part's own batch, so it is not counted.
    duplicate: bool = False


@dataclass(frozen=True)
class MergeSummary:
    total: int
    succeeded: int
    failed: int
    unfinished: int
    failed_by_code: dict[str, int]
    # Result lines that could not be placed: their custom_id is in no input line...
    unmatched_results: int = 0
    # ...or they are not a JSON object with a readable custom_id.
    unreadable_results: int = 0
    # Requests whose fate is unknown: never sent again automatically.
    unplaced: int = 0
    unplaced_by_reason: dict[str, int] = field(default_factory=dict)
    # The first MAX_LISTED_UNPLACED result lines that placed no request: reason, file, line.
    unplaced_results: list[dict[str, Any]] = field(default_factory=list)


def merge_in_input_order(
    input_streams: Sequence[PartInput | Callable[[], Readable]],
    result_streams: Sequence[ResultFile | Callable[[], Readable]],
    merged: Writable,
    unfinished: Writable,
    *,
    workdir: Path,
    not_succeeded: Writable | None = None,
    follow_up_rounds: Sequence[FollowUpRound] = (),
    bucket_bytes: int = DEFAULT_BUCKET_BYTES,
    max_line_bytes: int = MAX_LINE_BYTES,
    max_result_line_bytes: int = MAX_RESULT_LINE_BYTES,
) -> MergeSummary:
    """Write one merged line per input request, in input order, to `merged`; the input line of
    every unfinished request to `unfinished`, and of every request that did not succeed
    (failed, unfinished or unplaced) to `not_succeeded`.

    `input_streams` are the job's parts in order (a bare opener is a completed batch): their
    normalised inputs, the bytes sent to OpenAI. `result_streams` open the output and error
    files, in any order. `follow_up_rounds` describe rounds 1, 2, ... of follow-up batches,
    whose files come as results of those rounds. Spill files live in a fresh directory under
    `workdir`, removed before returning.
    """
    if bucket_bytes <= 0:
        raise ValueError("bucket_bytes must be > 0")
    parts = [item if isinstance(item, PartInput) else PartInput(item) for item in input_streams]
    files = [item if isinstance(item, ResultFile) else ResultFile(item) for item in result_streams]
    index = _index_inputs(parts, max_line_bytes)
    spill_dir = Path(tempfile.mkdtemp(prefix="merge-", dir=workdir))
    try:
        sorter = _ResultSorter(index, spill_dir, bucket_bytes)
        for result_file in files:
            sorter.add(result_file, max_result_line_bytes)
        spills = sorter.finish()
        judge = _Judge(parts, follow_up_rounds, sorter.unplaced, sorter.unfinished_in)
        del index, sorter  # pass 3 needs neither the custom_id map nor the best-status array
        sinks = _Sinks(merged, unfinished, not_succeeded)
        tally = _write_in_order(parts, spills, sinks, judge, max_line_bytes)
    finally:
        shutil.rmtree(spill_dir, ignore_errors=True)
    return tally.summary(judge.unplaced_lines)


# Pass 1: number the requests.


@dataclass(frozen=True)
class _InputIndex:
    line_by_id: dict[bytes, int]
    total: int
    input_bytes: int


def _index_inputs(parts: Sequence[PartInput], max_line_bytes: int) -> _InputIndex:
    line_by_id: dict[bytes, int] = {}
    input_bytes = 0
    number = 0
    for number, _, raw in _numbered_inputs(parts, max_line_bytes):
        input_bytes += len(raw) + 1
        key = custom_id_digest(_input_custom_id(number, raw))
        if line_by_id.setdefault(key, number) != number:
            raise ValueError(f"input line {number} repeats the custom_id of line {line_by_id[key]}")
    return _InputIndex(line_by_id, number, input_bytes)


def _numbered_inputs(
    parts: Sequence[PartInput], max_line_bytes: int
) -> Iterator[tuple[int, int, bytes]]:
    """Every request line of every part, numbered from 1 across the whole job, with its part."""
    number = 0
    for part_index, part in enumerate(parts):
        for line in _lines_of(part.open, max_line_bytes):
            number += 1
            if line.raw is None:
                raise ValueError(f"input line {number} exceeds {max_line_bytes} bytes")
            yield number, part_index, line.raw


def _input_custom_id(number: int, raw: bytes) -> str:
    request = json_object(raw)
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
    code: str | None  # a failure's code or an unplaced request's reason


@dataclass
class _Spill:
    """Merged records for line numbers [first, end), appended to a file at `path`."""

    first: int
    end: int
    path: Path
    size: int = 0


@dataclass
class _UnplacedLines:
    """Result lines that placed no request: counted by reason, the first few listed, and the
    parts and rounds whose files hold a line that may be any request's."""

    by_reason: dict[str, int] = field(default_factory=dict)
    listed: list[dict[str, Any]] = field(default_factory=list)
    unreadable_parts: set[int] = field(default_factory=set)
    unreadable_rounds: set[int] = field(default_factory=set)

    def add(self, reason: str, result_file: ResultFile, line: int, custom_id: str | None) -> None:
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        if len(self.listed) < MAX_LISTED_UNPLACED:
            where = {"part": result_file.part, "round": result_file.round, "line": line}
            self.listed.append({"reason": reason, "custom_id": custom_id, **where})
        if reason == UNREADABLE_RESULT_LINE:
            if result_file.round == 0:  # a file of no known part may be any part's
                self.unreadable_parts.add(-1 if result_file.part is None else result_file.part)
            else:
                self.unreadable_rounds.add(result_file.round)
        if self.by_reason[reason] <= 5:
            logger.warning("result line not placed", extra={"reason": reason, "id": custom_id})


class _ResultSorter:
    def __init__(self, index: _InputIndex, spill_dir: Path, bucket_bytes: int) -> None:
        self._line_by_id = index.line_by_id
        # The best status recorded so far for each line number (0: none), one byte a request.
        self._best = bytearray(index.total + 1)
        # Bit r set: a result of round r said the request never ran. One byte a request.
        self.unfinished_in = bytearray(index.total + 1)
        self._bucket_bytes = bucket_bytes
        self._spill_dir = spill_dir
        # Results are guessed to be about as large as their requests; finish() corrects the guess.
        estimate = -(-index.input_bytes // bucket_bytes)
        self._spills = _partition(
            1, index.total + 1, min(max(estimate, 1), MAX_OPEN_SPILL_FILES), spill_dir
        )
        self._writer = _SpillWriter(self._spills)
        self.unplaced = _UnplacedLines()
        self.superseded = 0
        self._bodies = 0

    def add(self, result_file: ResultFile, max_result_line_bytes: int) -> None:
        stream = result_file.open()
        try:
            lines = iter_lines_or_long(stream, max_line_bytes=max_result_line_bytes)
            for number, line in enumerate(lines, start=1):
                if isinstance(line, LongLine):
                    self._add_long(line, result_file, number)
                elif line.strip():
                    self._add_line(line, result_file, number)
        finally:
            close_stream(stream)

    def finish(self) -> list[_Spill]:
        """Close the spill files and return them, in line order, none above `bucket_bytes`
        unless it holds a single line number."""
        self._writer.close()
        if self.unplaced.by_reason or self.superseded:
            logger.warning(
                "results that were not merged",
                extra={"unplaced": self.unplaced.by_reason, "superseded": self.superseded},
            )
        return _split_large(self._spills, self._bucket_bytes, self._spill_dir)

    def _add_line(self, raw: bytes, result_file: ResultFile, line: int) -> None:
        result = json_object(raw)
        custom_id = result.get("custom_id") if result else None
        if result is None or not isinstance(custom_id, str):
            self.unplaced.add(UNREADABLE_RESULT_LINE, result_file, line, None)
            return
        number = self._number_of(custom_id, result_file, line)
        outcome = _classify(result)
        if number is not None and not (
            result_file.duplicate and outcome.status is Status.UNFINISHED
        ):
            self._place(number, custom_id, outcome, result_file.round)

    def _add_long(self, long_line: LongLine, result_file: ResultFile, line: int) -> None:
        """A line too long to hold: scanned in pieces, its body copied to a file of its own."""
        self._bodies += 1
        body_path = self._spill_dir / f"body-{self._bodies}.json"
        with body_path.open("wb", buffering=COPY_BYTES) as body:
            scanned = scan_long_line(long_line.pieces(), body)
        custom_id = scanned.custom_id
        logger.info("streamed a long result line", extra={"bytes": scanned.body_bytes})
        number = None
        if not isinstance(custom_id, str):
            self.unplaced.add(UNREADABLE_RESULT_LINE, result_file, line, None)
        else:
            number = self._number_of(custom_id, result_file, line)
        if number is None or custom_id is None:
            body_path.unlink()
            return
        if scanned.problem is not None:
            logger.warning("long result line unreadable", extra={"problem": scanned.problem})
            body_path.unlink()
            self._place(number, custom_id, _unplaced_outcome(UNREADABLE_RESULT_LINE), 0)
            return
        outcome = _classify(_stand_in(scanned))
        streamed = BODY in scanned.present and outcome.status >= Status.FAILED
        if not self._place(
            number, custom_id, outcome, result_file.round, body_path if streamed else None
        ):
            body_path.unlink(missing_ok=True)

    def _number_of(self, custom_id: str, result_file: ResultFile, line: int) -> int | None:
        number = self._line_by_id.get(custom_id_digest(custom_id))
        if number is None:
            self.unplaced.add(UNKNOWN_CUSTOM_ID, result_file, line, custom_id)
        return number

    def _place(
        self, number: int, custom_id: str, outcome: _Outcome, round_number: int,
        body_path: Path | None = None,
    ) -> bool:  # fmt: skip
        """Spill the outcome if it beats what the request has; True if it was spilled."""
        if outcome.status is Status.UNFINISHED:
            self.unfinished_in[number] |= 1 << min(round_number, 7)
        # Only a strictly better result is spilled, so within a spill file the last record wins.
        if outcome.status <= self._best[number]:
            self.superseded += 1
            return False
        self._best[number] = outcome.status
        self._writer.write(number, _record(number, custom_id, outcome, body_path))
        return True


def _stand_in(scanned: ScannedLine) -> dict[str, Any]:
    """The scanned line as `_classify` reads a parsed one, the body reduced to its error."""
    response: Any = scanned.get(("response",))
    if ("response",) in scanned.present and ("response",) not in scanned.values:
        body_error = scanned.get((*BODY, "error"))
        body = {"error": body_error} if body_error is not None else {}
        response = {"status_code": scanned.get(("response", "status_code")), "body": body}
    return {"custom_id": scanned.custom_id, "error": scanned.get(("error",)), "response": response}


def _unplaced_outcome(reason: str) -> _Outcome:
    fate = unplaced(reason)
    return _Outcome(fate.status, None, None, fate.error, fate.code)


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


def _record(number: int, custom_id: str, outcome: _Outcome, body_path: Path | None) -> bytes:
    """A spill record: line number, status and code, then the merged line itself, or (when the
    body is in a file of its own) `@` and the JSON list [merged line before the body, the body's
    path, merged line after it].

    Tabs separate the fields: JSON escapes any tab inside a string, so none can occur in them.
    """
    code = b"" if outcome.code is None else json.dumps(outcome.code).encode()
    if body_path is None:
        merged = _merged_line(number, custom_id, outcome)
    else:
        before, after = _merged_around_body(number, custom_id, outcome)
        merged = _STREAMED + json.dumps([before, str(body_path), after]).encode() + b"\n"
    return b"%d\t%d\t%s\t%s" % (number, outcome.status, code, merged)


def _document(number: int, custom_id: str, outcome: _Outcome) -> dict[str, Any]:
    return {
        "line": number,
        "custom_id": custom_id,
        "status": outcome.status.label,
        "status_code": outcome.status_code,
        "response": outcome.response,
        "error": outcome.error,
    }


def _merged_line(number: int, custom_id: str, outcome: _Outcome) -> bytes:
    return _dumps(_document(number, custom_id, outcome)) + b"\n"


def _merged_around_body(number: int, custom_id: str, outcome: _Outcome) -> tuple[str, str]:
    """The merged line's text before and after its response body, in `_merged_line`'s form."""
    document = _document(number, custom_id, outcome)
    before = {key: document[key] for key in ("line", "custom_id", "status", "status_code")}
    head = _dumps(before)[:-1] + b',"response":'
    tail = b',"error":' + _dumps(document["error"]) + b"}\n"
    return head.decode(), tail.decode()


def _dumps(value: Any) -> bytes:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode()
    except UnicodeEncodeError:
        # A lone surrogate, from a \ud800-style escape, has no UTF-8 form: keep it escaped.
        return json.dumps(value, separators=(",", ":")).encode()


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


class _Judge:
    """Each request's fate from its best result (if any), its batch and the follow-up rounds."""

    def __init__(
        self,
        parts: Sequence[PartInput],
        follow_up_rounds: Sequence[FollowUpRound],
        unplaced_lines: _UnplacedLines,
        unfinished_in: bytearray,
    ) -> None:
        self._parts = parts
        self._rounds = [
            FollowUpRound(r.not_run, r.unreadable_lines or n in unplaced_lines.unreadable_rounds)
            for n, r in enumerate(follow_up_rounds, start=1)
        ]
        self._unreadable_parts = unplaced_lines.unreadable_parts
        self._unfinished_in = unfinished_in
        self.unplaced_lines = unplaced_lines

    def fate(self, number: int, part: int, record: bytes | None) -> Fate | None:
        """The fate of a request; None when its spill record stands as it is."""
        if record is None:
            batch = self._parts[part]
            beside = part in self._unreadable_parts or -1 in self._unreadable_parts
            fate = without_result(batch.batch_status, batch.batch_error, beside)
        elif Status(int(record.split(b"\t", 2)[1])) is not Status.UNFINISHED:
            return None
        else:
            fate = None
        reason = after_follow_ups(self._unfinished_in[number], self._rounds)
        if reason is not None and (fate is None or fate.status is Status.UNFINISHED):
            return unplaced(reason)
        return fate


@dataclass
class _Sinks:
    merged: Writable
    unfinished: Writable
    not_succeeded: Writable | None


@dataclass
class _Tally:
    total: int = 0
    by_status: dict[Status, int] = field(default_factory=lambda: dict.fromkeys(Status, 0))
    failed_by_code: dict[str, int] = field(default_factory=dict)
    unplaced_by_reason: dict[str, int] = field(default_factory=dict)

    def count(self, status: Status, code: str | None) -> None:
        self.total += 1
        self.by_status[status] += 1
        counts = {Status.FAILED: self.failed_by_code, Status.UNPLACED: self.unplaced_by_reason}
        if code is not None and status in counts:
            counts[status][code] = counts[status].get(code, 0) + 1

    def summary(self, lines: _UnplacedLines) -> MergeSummary:
        return MergeSummary(
            total=self.total,
            succeeded=self.by_status[Status.SUCCEEDED],
            failed=self.by_status[Status.FAILED],
            unfinished=self.by_status[Status.UNFINISHED],
            failed_by_code=dict(sorted(self.failed_by_code.items())),
            unmatched_results=lines.by_reason.get(UNKNOWN_CUSTOM_ID, 0),
            unreadable_results=lines.by_reason.get(UNREADABLE_RESULT_LINE, 0),
            unplaced=self.by_status[Status.UNPLACED],
            unplaced_by_reason=dict(sorted(self.unplaced_by_reason.items())),
            unplaced_results=list(lines.listed),
        )


def _write_in_order(
    parts: Sequence[PartInput],
    spills: list[_Spill],
    sinks: _Sinks,
    judge: _Judge,
    max_line_bytes: int,
) -> _Tally:
    tally = _Tally()
    remaining = iter(spills)
    records: dict[int, bytes] = {}
    records_end = 1
    for number, part, raw in _numbered_inputs(parts, max_line_bytes):
        while number >= records_end:
            spill = next(remaining, None)
            if spill is None:
                raise ValueError("the inputs grew between the passes of the merge")
            records = _load(spill)
            records_end = spill.end
        record = records.pop(number, None)
        fate = judge.fate(number, part, record)
        if fate is not None or record is None:
            assert fate is not None
            status, code = fate.status, fate.code
            outcome = _Outcome(fate.status, None, None, fate.error, fate.code)
            sinks.merged.write(_merged_line(number, _input_custom_id(number, raw), outcome))
        else:
            status, code = _write_record(record, sinks.merged)
        if status is Status.UNFINISHED:
            sinks.unfinished.write(raw + b"\n")
        if status is not Status.SUCCEEDED and sinks.not_succeeded is not None:
            sinks.not_succeeded.write(raw + b"\n")
        tally.count(status, code)
    if next(remaining, None) is not None or records_end != tally.total + 1:
        raise ValueError("the inputs shrank between the passes of the merge")
    return tally


def _write_record(record: bytes, merged: Writable) -> tuple[Status, str | None]:
    """Write a spill record's merged line, copying a streamed body from its own file."""
    _, status, code, line = record.split(b"\t", 3)
    if line.startswith(_STREAMED):
        before, body_path, after = json.loads(line[len(_STREAMED) :])
        merged.write(before.encode())
        with Path(body_path).open("rb") as body:
            while chunk := body.read(COPY_BYTES):
                merged.write(chunk)
        Path(body_path).unlink()
        merged.write(after.encode())
    else:
        merged.write(line)
    return Status(int(status)), json.loads(code) if code else None


def _load(spill: _Spill) -> dict[int, bytes]:
    """One spill file's records by line number; the later of two records for a line wins."""
    with spill.path.open("rb") as records:
        loaded = {_record_line(record): record for record in records}
    spill.path.unlink()  # free the disk as the merge goes; /tmp may be small
    return loaded


# Shared helpers.


def _lines_of(open_stream: Callable[[], Readable], max_line_bytes: int) -> Iterator[Line]:
    """The lines of a freshly opened stream, which is closed afterwards if it can be."""
    stream = open_stream()
    try:
        yield from iter_lines(stream, max_line_bytes=max_line_bytes)
    finally:
        close_stream(stream)


def _dict_or_none(value: object) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None
