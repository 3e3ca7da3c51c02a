"""Check a Batch API input file line by line, and plan its split into batches as it goes.

A valid file's report carries its split plan (`split_plan`); a rejected file's report lists its
problems for the person who dropped it. Memory stays bounded whatever the file's size.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from batchdrop.domain.body_rules import DEFAULT_MODELS, body_problems
from batchdrop.domain.duplicate_ids import (
    DEFAULT_RUN_BYTES,
    Duplicate,
    DuplicateFinder,
    custom_id_digest,
)
from batchdrop.domain.limits import DEFAULT_LIMITS, Limits
from batchdrop.domain.lines import DEFAULT_READ_BYTES, Line, Readable, iter_lines, line_content
from batchdrop.domain.split_plan import Part, SplitPlanner

SUPPORTED_ENDPOINTS = frozenset(
    {
        "/v1/responses",
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/completions",
        "/v1/moderations",
        "/v1/images/generations",
        "/v1/images/edits",
        "/v1/videos",
    }
)
EMBEDDINGS_ENDPOINT = "/v1/embeddings"
# Long custom_ids or model names are cut short in messages so the report stays readable.
_QUOTED_VALUE_CHARS = 60


def embedding_input_count(value: object) -> int:
    """The inputs OpenAI counts in one embeddings request's `input`: a string or a single token
    array (a list of integers) is one; an array of strings or of token arrays, one per element."""
    if isinstance(value, list) and value and not _is_token(value[0]):
        return len(value)
    return 1


def _is_token(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def file_too_large(size: int, max_file_bytes: int) -> str:
    """The detail of the `file_too_large` problem, found before reading or while reading."""
    return (
        f"the file is {size:,} bytes, more than the {max_file_bytes:,} bytes one file may hold; "
        "split it into several files"
    )


@dataclass(frozen=True)
class Problem:
    line: int
    code: str
    message: str


@dataclass(frozen=True)
class ValidationReport:
    problems: tuple[Problem, ...]
    problem_count: int
    counts_by_code: dict[str, int]
    request_count: int
    raw_bytes: int
    endpoint: str | None
    model: str | None
    parts: tuple[Part, ...]
    # The parts' raw bytes are already what is uploaded (no BOM, no CRLF, a final newline),
    # so an uploader may forward them as they are instead of rewriting every line.
    verbatim: bool = True

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    @property
    def truncated(self) -> bool:
        return self.problem_count > len(self.problems)

    def summary(self) -> str:
        if self.ok:
            batches = "1 batch" if len(self.parts) == 1 else f"{len(self.parts):,} batches"
            return (
                f"Valid: {_plural(self.request_count, 'request')} for model {self.model!r} on "
                f"{self.endpoint} ({self.raw_bytes:,} bytes), to be sent as {batches}."
            )
        shown = " (the first ones are listed)" if self.truncated else ""
        return (
            f"Rejected: found {_plural(self.problem_count, 'problem')}{shown}; "
            "fix them and upload the file again. Nothing was submitted."
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready report for the person who dropped the file."""
        return {
            "ok": self.ok,
            "summary": self.summary(),
            "request_count": self.request_count,
            "raw_bytes": self.raw_bytes,
            "endpoint": self.endpoint,
            "model": self.model,
            "problem_count": self.problem_count,
            "counts_by_code": dict(sorted(self.counts_by_code.items())),
            "truncated": self.truncated,
            "problems": [
                {"line": p.line, "code": p.code, "message": p.message} for p in self.problems
            ],
            "batches": [
                {
                    "index": part.index,
                    "first_line": part.first_line,
                    "line_count": part.line_count,
                    "bytes": part.size,
                }
                for part in self.parts
            ],
        }


class Validator:
    """Checks lines fed in order, in memory that does not grow with them: custom_ids for the
    duplicate check spill to `spill_dir` (see `duplicates`), so those problems are known only
    at `finish`. Close it (or use it as a context manager) to remove the spill files.

    The limits' `max_file_bytes` and `max_file_requests` cap the whole file (None: no cap). Past
    the request cap the lines are still checked, but no longer for duplicates, so that the spill
    files stay bounded by the cap as well."""

    def __init__(
        self,
        limits: Limits = DEFAULT_LIMITS,
        *,
        spill_dir: Path | None = None,
        duplicate_run_bytes: int = DEFAULT_RUN_BYTES,
    ) -> None:
        self.limits = limits
        self.max_line_bytes = limits.max_line_bytes
        self._planner = SplitPlanner(
            limits.max_requests,
            limits.max_batch_bytes,
            limits.max_upload_part_bytes,
            limits.max_embedding_inputs,
        )
        self._problems: list[Problem] = []
        self._problem_count = 0
        self._counts: dict[str, int] = {}
        self._duplicates = DuplicateFinder(spill_dir, run_bytes=duplicate_run_bytes)
        self._found_duplicates: tuple[list[Problem], int] | None = None
        self._line_count = 0
        self._request_count = 0
        self._raw_bytes = 0
        self._endpoint: str | None = None
        self._model: str | None = None
        # Whitespace-only lines are forgiven at the end of the file, so judge them only once a
        # later request shows they were in the middle. They are consecutive: a start suffices.
        self._blank_run_start: int | None = None
        self._verbatim = True

    def feed(self, line: Line) -> None:
        if line.number != self._line_count + 1:
            raise ValueError(f"expected line {self._line_count + 1}, got line {line.number}")
        self._line_count = line.number
        self._raw_bytes += line.size
        if line.raw is None:
            self._end_blank_run(line.number)
            self._count_request(line.number)
            self._report(
                line.number,
                "line_too_long",
                f"{line.size:,} bytes long; a request line may be at most "
                f"{self.max_line_bytes:,} bytes",
            )
            return
        content = line_content(line.raw, at_file_start=line.offset == 0)
        if not content or content.isspace():
            if self._blank_run_start is None:
                self._blank_run_start = line.number
            return
        self._end_blank_run(line.number)
        self._count_request(line.number)
        if len(content) != len(line.raw) or line.size != len(content) + 1:
            self._verbatim = False  # a BOM or "\r" stripped, or a final newline added
        request = self._parse(line.number, content)
        inputs = 0
        if request is not None:
            self._check_fields(line.number, request)
            inputs = self._embedding_inputs(line.number, request)
        self._planner.add(line.number, line.offset, line.size, len(content) + 1, inputs)

    @property
    def one_raw_part_so_far(self) -> bool:
        """No problem yet, nothing to rewrite, and every request fits the first batch."""
        return self._problem_count == 0 and self._verbatim and self._planner.part_count <= 1

    def finish(self) -> ValidationReport:
        """Report on everything fed so far; trailing whitespace-only lines are ignored.

        The duplicate check ends here: nothing fed afterwards is checked for duplicates."""
        if self._found_duplicates is None:
            try:
                self._found_duplicates = self._listed_duplicates()
            finally:
                self._duplicates.close()
        listed_duplicates, duplicate_count = self._found_duplicates
        problems = self._problems + listed_duplicates
        counts = dict(self._counts)
        problem_count = self._problem_count + duplicate_count
        if duplicate_count:
            counts["duplicate_custom_id"] = duplicate_count
        max_file_bytes = self.limits.max_file_bytes
        if max_file_bytes is not None and self._raw_bytes > max_file_bytes:
            problem_count += 1
            counts["file_too_large"] = 1
            detail = file_too_large(self._raw_bytes, max_file_bytes)
            problems.append(Problem(1, "file_too_large", f"line 1: {detail}"))
        # Duplicates are found last but listed in line order, before their line's other problems
        # (the order in which a line's checks run). The sort is stable.
        problems.sort(key=lambda p: (p.line, p.code != "duplicate_custom_id"))
        if self._request_count == 0:
            problem_count += 1
            counts["empty_file"] = 1
            problems.append(
                Problem(1, "empty_file", "line 1: the file holds no requests (it is empty)")
            )
        return ValidationReport(
            problems=tuple(problems[: self.limits.max_listed_problems]),
            problem_count=problem_count,
            counts_by_code=counts,
            request_count=self._request_count,
            raw_bytes=self._raw_bytes,
            endpoint=self._endpoint,
            model=self._model,
            parts=self._planner.parts() if problem_count == 0 else (),
            verbatim=self._verbatim,
        )

    def close(self) -> None:
        """Remove the duplicate check's spill files (`finish` does too)."""
        self._duplicates.close()

    def __enter__(self) -> Validator:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _listed_duplicates(self) -> tuple[list[Problem], int]:
        """The duplicates with the lowest lines (as many as are listed), and how many there are.
        They come in digest order, so only a bounded heap of the lowest lines is kept."""
        count = 0

        def counted() -> Iterator[Duplicate]:
            nonlocal count
            for duplicate in self._duplicates.duplicates():
                count += 1
                yield duplicate

        every = counted()
        lowest = heapq.nsmallest(self.limits.max_listed_problems, every, key=lambda d: d.line)
        for _ in every:  # nsmallest(0, ...) reads nothing; the rest must be counted too
            pass
        problems = [
            Problem(
                d.line,
                "duplicate_custom_id",
                f"line {d.line}: custom_id {_quote(d.custom_id)} was already used on line "
                f"{d.first_line}",
            )
            for d in lowest
        ]
        return problems, count

    def _count_request(self, number: int) -> None:
        self._request_count += 1
        cap = self.limits.max_file_requests
        if cap is not None and self._request_count == cap + 1:
            self._report(
                number,
                "too_many_requests",
                f"the file holds more than {cap:,} requests, the most one "
                "file may hold; split it into several files",
            )

    def _embedding_inputs(self, number: int, request: dict[str, object]) -> int:
        body = request.get("body")
        if request.get("url") != EMBEDDINGS_ENDPOINT or not isinstance(body, dict):
            return 0
        count = embedding_input_count(body.get("input"))
        most = self.limits.max_embedding_inputs
        if count > most:
            self._report(
                number,
                "too_many_inputs",
                f"input holds {count:,} embedding inputs, more than the {most:,} one "
                "batch may hold; split it across several requests",
            )
        return count

    def _end_blank_run(self, number: int) -> None:
        if self._blank_run_start is None:
            return
        for blank in range(self._blank_run_start, number):
            self._report(blank, "blank_line", "blank line; remove it (one request per line)")
        self._blank_run_start = None

    def _report(self, number: int, code: str, detail: str) -> None:
        self._problem_count += 1
        self._counts[code] = self._counts.get(code, 0) + 1
        if len(self._problems) < self.limits.max_listed_problems:
            self._problems.append(Problem(number, code, f"line {number}: {detail}"))

    def _parse(self, number: int, content: bytes) -> dict[str, object] | None:
        """The request as a JSON object, or None once its problem is reported."""
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError as error:
            byte = content[error.start]
            self._report(
                number,
                "invalid_utf8",
                f"not valid UTF-8 (byte 0x{byte:02x} at position {error.start + 1}); "
                "save the file as UTF-8",
            )
            return None
        try:
            request: object = json.loads(text, parse_constant=_reject_constant)
        except ValueError as error:
            detail = error.msg if isinstance(error, json.JSONDecodeError) else str(error)
            where = f" at column {error.colno}" if isinstance(error, json.JSONDecodeError) else ""
            self._report(number, "invalid_json", f"not valid JSON ({detail}{where})")
            return None
        except RecursionError:
            self._report(number, "invalid_json", "not valid JSON (nested too deeply)")
            return None
        if not isinstance(request, dict):
            self._report(
                number,
                "not_an_object",
                f"must be a JSON object with custom_id, method, url and body, "
                f"not a JSON {_json_type(request)}",
            )
            return None
        return request

    def _check_fields(self, number: int, request: dict[str, object]) -> None:
        self._check_custom_id(number, request)
        self._check_method(number, request)
        self._check_url(number, request)
        self._check_body(number, request)

    def _check_custom_id(self, number: int, request: dict[str, object]) -> None:
        if "custom_id" not in request:
            self._report(number, "missing_custom_id", "custom_id is missing")
            return
        custom_id = request["custom_id"]
        if not isinstance(custom_id, str):
            self._report(
                number,
                "custom_id_not_string",
                f"custom_id must be a string, not a JSON {_json_type(custom_id)}",
            )
            return
        if not custom_id:
            self._report(number, "empty_custom_id", "custom_id is empty")
            return
        cap = self.limits.max_file_requests
        if cap is None or self._request_count <= cap:
            self._duplicates.add(custom_id_digest(custom_id), number, custom_id)

    def _check_method(self, number: int, request: dict[str, object]) -> None:
        method = request.get("method")
        if method != "POST":
            problem = "is missing" if "method" not in request else f"is {_quote(method)}"
            self._report(number, "invalid_method", f'method {problem}; it must be "POST"')

    def _check_url(self, number: int, request: dict[str, object]) -> None:
        url = request.get("url")
        if not isinstance(url, str) or url not in SUPPORTED_ENDPOINTS:
            problem = "is missing" if "url" not in request else f"{_quote(url)} is not supported"
            supported = ", ".join(sorted(SUPPORTED_ENDPOINTS))
            self._report(number, "unsupported_url", f"url {problem}; use one of {supported}")
        elif self._endpoint is None:
            self._endpoint = url
        elif url != self._endpoint:
            self._report(
                number,
                "mixed_url",
                f"url {url!r} differs from {self._endpoint!r} used by earlier lines; "
                "a batch file must use one url",
            )

    def _check_body(self, number: int, request: dict[str, object]) -> None:
        body = request.get("body")
        if not isinstance(body, dict):
            problem = "is missing" if "body" not in request else f"is a JSON {_json_type(body)}"
            self._report(
                number, "body_not_object", f"body {problem}; it must be a JSON object (the request)"
            )
            return
        url = request.get("url")
        endpoint = url if isinstance(url, str) and url in SUPPORTED_ENDPOINTS else ""
        for rule_broken in body_problems(endpoint, body):
            self._report(number, rule_broken.code, rule_broken.detail)
        model = body.get("model", DEFAULT_MODELS.get(endpoint))
        if not isinstance(model, str) or not model:
            problem = "is missing" if "model" not in body else f"is {_quote(model)}"
            self._report(
                number, "missing_model", f"body.model {problem}; it must name a model, as a string"
            )
        elif self._model is None:
            self._model = model
        elif model != self._model:
            self._report(
                number,
                "mixed_model",
                f"model {_quote(model)} differs from {_quote(self._model)} used by earlier "
                "lines; a batch file must use one model",
            )


def validate_stream(
    stream: Readable,
    limits: Limits = DEFAULT_LIMITS,
    *,
    read_size: int = DEFAULT_READ_BYTES,
    after_each_line: Callable[[Validator, Line], None] | None = None,
) -> ValidationReport:
    """Validate a whole stream and, when it is valid, plan its split into batches.

    `after_each_line` sees the validator once each line is fed (an upload keeps pace by it).
    The duplicate check's spill files go to the system's temporary directory and are removed
    however validation ends.
    """
    with Validator(limits) as validator:
        for line in iter_lines(stream, max_line_bytes=limits.max_line_bytes, read_size=read_size):
            validator.feed(line)
            if after_each_line is not None:
                after_each_line(validator, line)
        return validator.finish()


def _reject_constant(name: str) -> object:
    # Python's json accepts NaN and Infinity; standard JSON (and OpenAI) does not.
    raise ValueError(f"{name} is not allowed in JSON")


def _json_type(value: object) -> str:
    match value:
        case None:
            return "null"
        case bool():
            return "boolean"
        case int() | float():
            return "number"
        case str():
            return "string"
        case list():
            return "array"
        case _:
            return "object"


def _quote(value: object) -> str:
    if not isinstance(value, str):
        return json.dumps(value)[:_QUOTED_VALUE_CHARS]
    if len(value) > _QUOTED_VALUE_CHARS:
        return repr(value[:_QUOTED_VALUE_CHARS]) + "…"
    return repr(value)


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"
