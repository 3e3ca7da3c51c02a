"""Batch records: creation, the batch JSON at any moment, cancel/release, and result files.

Result files are written lazily, the first time a batch is observed in a terminal status,
and stamped with the moment that status began.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import Any

from . import errors
from .clock import Clock
from .expiry import checked_lifetime
from .lifecycle import (
    CANCELLABLE,
    TERMINAL,
    BatchFacts,
    Outcome,
    OutcomeQueue,
    Snapshot,
    Timings,
    snapshot_at,
)
from .lines import NO_USAGE, LineContext, digest
from .outputs import SUPPORTED_ENDPOINTS, client_error_body, server_error_body, success_body
from .store import FileStore, IdFactory, StoredFile
from .validation import InputScan, RequestLine, scan_input
from .videos import DOWNLOAD_WINDOW, StoredVideo, VideoVault

COMPLETION_WINDOWS = {"24h": 86400}
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512
ENQUEUED_TOKEN_LIMIT = 2_000_000
UNFINISHED_ERRORS = {
    "expired": (
        "batch_expired",
        "This request could not be executed before the completion window expired.",
    ),
    "cancelled": (
        "batch_cancelled",
        "This request was not executed because the batch was cancelled.",
    ),
}


def line_status(outcome: Outcome, custom_id: str) -> int:
    """HTTP status of one request's result: `fail-` ids are rejected, all_failed fails all."""
    if custom_id.startswith("fail-"):
        return 400
    return 500 if outcome.kind == "all_failed" else 200


@dataclass
class Progress:
    """Running totals along the processing order, so counts at any moment are O(1)."""

    succeeded: list[int] = field(default_factory=lambda: [0])
    input_tokens: list[int] = field(default_factory=lambda: [0])
    cached_tokens: list[int] = field(default_factory=lambda: [0])
    output_tokens: list[int] = field(default_factory=lambda: [0])
    reasoning_tokens: list[int] = field(default_factory=lambda: [0])

    @classmethod
    def along(cls, lines: list[RequestLine], ok: list[bool]) -> Progress:
        counted = [line.usage if flag else NO_USAGE for line, flag in zip(lines, ok, strict=True)]

        def running(values: Iterable[int]) -> list[int]:
            return list(accumulate(values, initial=0))

        return cls(
            succeeded=running(int(flag) for flag in ok),
            input_tokens=running(usage.input_tokens for usage in counted),
            cached_tokens=running(usage.cached_tokens for usage in counted),
            output_tokens=running(usage.output_tokens for usage in counted),
            reasoning_tokens=running(usage.reasoning_tokens for usage in counted),
        )

    def usage(self, finished: int) -> dict[str, Any]:
        inputs, outputs = self.input_tokens[finished], self.output_tokens[finished]
        return {
            "input_tokens": inputs,
            "input_tokens_details": {"cached_tokens": self.cached_tokens[finished]},
            "output_tokens": outputs,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens[finished]},
            "total_tokens": inputs + outputs,
        }


@dataclass(frozen=True)
class Validated:
    """What reading the input file decides: the scan, the processing order, running totals."""

    scan: InputScan
    order: list[RequestLine]
    progress: Progress


@dataclass
class BatchRecord:
    id: str
    sequence: int
    endpoint: str
    input_file_id: str
    completion_window: str
    metadata: dict[str, str] | None
    facts: BatchFacts
    scan: InputScan
    input_path: Path  # private hard link to the input bytes
    order: list[RequestLine]  # processing (and output) order: a seeded shuffle of the input
    progress: Progress
    output_file_id: str | None = None
    error_file_id: str | None = None
    materialized: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    validation: Future[Validated] | None = None  # the content check still under way, if any
    output_lifetime: int | None = None  # `output_expires_after.seconds`, for the result files

    def settle(self) -> None:
        """Wait for the content check, then fill in what depends on it (under `lock`)."""
        if self.validation is None:
            return
        validated = self.validation.result()
        self.scan, self.order, self.progress = validated.scan, validated.order, validated.progress
        self.facts.passes_validation = validated.scan.passes
        self.facts.total = len(validated.scan.lines)
        self.validation = None

    def failure_errors(self) -> list[dict[str, Any]]:
        if self.scan.errors:
            return self.scan.errors
        return [
            {
                "code": "token_limit_exceeded",
                "message": f"Enqueued token limit reached for {self.scan.model} in organization "
                f"org-simulator. Limit: {ENQUEUED_TOKEN_LIMIT:,} enqueued tokens. Please try "
                "again once some in_progress batches have been completed.",
                "param": None,
                "line": None,
            }
        ]


def check_metadata(metadata: object) -> dict[str, str] | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise errors.invalid_request(
            "Invalid type for 'metadata': expected an object.", "metadata", "invalid_type"
        )
    if len(metadata) > MAX_METADATA_PAIRS:
        raise errors.invalid_request(
            "Invalid 'metadata': too many properties. Expected an object with at most "
            f"{MAX_METADATA_PAIRS} properties, but got an object with {len(metadata)} "
            "properties instead.",
            "metadata",
            "object_above_max_properties",
        )
    for key, value in metadata.items():
        if len(key) > MAX_METADATA_KEY:
            raise errors.invalid_request(
                f"Invalid 'metadata': keys can be at most {MAX_METADATA_KEY} characters long, "
                f"but got a key with length {len(key)}.",
                "metadata",
                "string_above_max_length",
            )
        if not isinstance(value, str):
            raise errors.invalid_request(
                f"Invalid type for 'metadata.{key}': expected a string.",
                f"metadata.{key}",
                "invalid_type",
            )
        if len(value) > MAX_METADATA_VALUE:
            raise errors.invalid_request(
                f"Invalid 'metadata.{key}': string too long. Expected a string with maximum "
                f"length {MAX_METADATA_VALUE}, but got a string with length {len(value)} "
                "instead.",
                f"metadata.{key}",
                "string_above_max_length",
            )
    return dict(metadata)


class BatchBook:
    def __init__(
        self,
        files: FileStore,
        ids: IdFactory,
        clock: Clock,
        timings: Timings,
        outcomes: OutcomeQueue,
        seed: int,
        picture_bytes: Callable[[], int | None] = lambda: None,
    ) -> None:
        self.files = files
        self.videos = VideoVault()  # the videos its batches made
        self.picture_bytes = picture_bytes
        self.ids = ids
        self.clock = clock
        self.timings = timings
        self.outcomes = outcomes
        self.seed = seed
        self._batches: dict[str, BatchRecord] = {}
        self._lock = threading.Lock()
        # custom_ids whose result lines every batch leaves out of both its files, as OpenAI
        # has been seen to do; the tests of "never pay twice" need it.
        self.missing_results: set[str] = set()
        self._validators = ThreadPoolExecutor(2, thread_name_prefix="simulator-validation")

    # -- commands ------------------------------------------------------------------------

    def create(self, payload: dict[str, Any]) -> BatchRecord:
        input_file_id, endpoint, window = _create_parameters(payload)
        metadata = check_metadata(payload.get("metadata"))
        output_lifetime = checked_lifetime(
            payload.get("output_expires_after"), "output_expires_after"
        )
        source = self._batch_input(input_file_id)

        batch_id = self.ids.batch()
        input_path = self.files.link_copy(source, f"{batch_id}-input")
        outcome = self.outcomes.pop(metadata)
        with self._lock:
            record = BatchRecord(
                id=batch_id,
                sequence=len(self._batches),
                endpoint=endpoint,
                input_file_id=input_file_id,
                completion_window=window,
                metadata=metadata,
                # What depends on the file's content is a placeholder until `settle`.
                facts=BatchFacts(
                    created_at=self.clock.now(), outcome=outcome, passes_validation=True, total=0
                ),
                scan=InputScan(),
                input_path=input_path,
                order=[],
                progress=Progress(),
                output_lifetime=output_lifetime,
            )
            self._batches[batch_id] = record
        # OpenAI answers at once and reads the file while the batch is `validating`; so does
        # the simulator, so a large file's create costs the client no more than a small one's.
        record.validation = self._validators.submit(
            self._validate, record.id, input_path, endpoint, outcome
        )
        return record

    def _batch_input(self, input_file_id: str) -> StoredFile:
        """The file a batch is created from, refused as OpenAI refuses it."""
        try:
            source = self.files.get(input_file_id)
        except errors.ApiError:
            raise errors.not_found(
                f"No such File object: {input_file_id}", "input_file_id"
            ) from None
        if source.purpose != "batch":
            raise errors.invalid_request(
                f"The file {input_file_id} has purpose {source.purpose!r}, but a batch input "
                "file must be uploaded with purpose 'batch'.",
                "input_file_id",
            )
        return source

    def _validate(
        self, batch_id: str, input_path: Path, endpoint: str, outcome: Outcome
    ) -> Validated:
        scan = scan_input(input_path, endpoint)
        order = list(scan.lines)
        # Seeded shuffle: OpenAI does not preserve input order; tests need reproducibility.
        random.Random(f"{self.seed}:{batch_id}").shuffle(order)  # noqa: S311
        ok = [line_status(outcome, line.custom_id) == 200 for line in order]
        return Validated(scan, order, Progress.along(order, ok))

    def settle_all(self) -> None:
        """Wait until every batch's input has been read."""
        for record in self.newest_first():
            with record.lock:
                record.settle()

    def close(self) -> None:
        self._validators.shutdown(wait=True, cancel_futures=True)

    def get(self, batch_id: str) -> BatchRecord:
        with self._lock:
            record = self._batches.get(batch_id)
        if record is None:
            raise errors.not_found(f"No batch found with id '{batch_id}'.", "batch_id")
        return record

    def newest_first(self) -> list[BatchRecord]:
        with self._lock:
            return sorted(self._batches.values(), key=lambda r: r.sequence, reverse=True)

    def ids_in_order(self) -> list[str]:
        with self._lock:
            return list(self._batches)

    def cancel(self, batch_id: str) -> dict[str, Any]:
        record = self.get(batch_id)
        with record.lock:
            record.settle()
            now = self.clock.now()
            status = snapshot_at(record.facts, self.timings, now).status
            if status in CANCELLABLE:
                record.facts.cancelled_at = now
            elif status != "cancelling":
                raise errors.ApiError(
                    409, f"Cannot cancel a batch with status '{status}'.", param="batch_id"
                )
        return self.render(record)

    def release(self, batch_id: str) -> None:
        record = self.get(batch_id)
        with record.lock:
            if record.facts.released_at is None:
                record.facts.released_at = self.clock.now()

    # -- reading -------------------------------------------------------------------------

    def render(self, record: BatchRecord) -> dict[str, Any]:
        """The Batch object as OpenAI would return it right now."""
        with record.lock:
            now = self.clock.now()
            validating = now < record.facts.created_at + self.timings.validating
            if not validating or record.facts.cancelled_at is not None:
                record.settle()  # past `validating`, everything shown depends on the content
            snap = snapshot_at(record.facts, self.timings, now)
            if snap.status in TERMINAL and not record.materialized:
                self._write_results(record, snap)
        failed = snap.status == "failed"
        finished = snap.finished if record.facts.passes_validation else 0
        succeeded = record.progress.succeeded[finished]
        body: dict[str, Any] = {
            "id": record.id,
            "object": "batch",
            "endpoint": record.endpoint,
            "errors": {"object": "list", "data": record.failure_errors()} if failed else None,
            "input_file_id": record.input_file_id,
            "completion_window": record.completion_window,
            "status": snap.status,
            "output_file_id": record.output_file_id,
            "error_file_id": record.error_file_id,
            "created_at": int(record.facts.created_at),
            "in_progress_at": None,
            "expires_at": snap.expires_at,
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {
                "total": snap.total,
                "completed": succeeded,
                "failed": finished - succeeded,
            },
            "usage": record.progress.usage(finished),
            "model": record.scan.model,
            "metadata": record.metadata,
        }
        body.update(snap.timestamps)
        return body

    # -- results -------------------------------------------------------------------------

    def _write_results(self, record: BatchRecord, snap: Snapshot) -> None:
        record.materialized = True
        if snap.status == "failed" or not record.order:
            return
        assert snap.terminal_at is not None
        stamp = int(snap.terminal_at)
        started = snap.timestamps.get("in_progress_at", stamp)
        outputs = self.files.scratch_path(f"{record.id}-output")
        failures = self.files.scratch_path(f"{record.id}-errors")
        written_ok = written_failed = 0
        with (
            record.input_path.open("rb") as source,
            outputs.open("w", encoding="utf-8") as ok_out,
            failures.open("w", encoding="utf-8") as err_out,
        ):
            for position, line in enumerate(record.order):
                if line.custom_id in self.missing_results:
                    continue  # left out by a test: in neither file
                if position < min(record.facts.outcome.missing_lines, snap.finished):
                    continue  # lost by OpenAI: in neither file
                if position < snap.finished:
                    created = started + position * int(self.timings.in_progress) // len(
                        record.order
                    )
                    result = self._result_line(record, line, source, created, stamp)
                    if result["response"]["status_code"] == 200:
                        ok_out.write(json.dumps(result) + "\n")
                        written_ok += 1
                        continue
                else:
                    code, message = UNFINISHED_ERRORS[snap.status]
                    result = self._envelope(record, line, None, {"code": code, "message": message})
                err_out.write(json.dumps(result) + "\n")
                written_failed += 1
        record.output_file_id = self._register(outputs, written_ok, record, "output", stamp)
        record.error_file_id = self._register(failures, written_failed, record, "error", stamp)

    def _register(
        self, path: Path, lines: int, record: BatchRecord, kind: str, stamp: int
    ) -> str | None:
        if not lines:
            path.unlink(missing_ok=True)
            return None
        name = f"{record.id}_{kind}.jsonl"
        return self.files.add(path, name, "batch_output", stamp, record.output_lifetime).id

    def _result_line(
        self, record: BatchRecord, line: RequestLine, source: Any, created: int, stamp: int
    ) -> dict[str, Any]:
        status = line_status(record.facts.outcome, line.custom_id)
        key = digest(self.seed, record.id, line.custom_id, size=16)
        if status == 200:
            source.seek(line.offset)
            body = json.loads(source.read(line.length))["body"]
            context = LineContext(body, line.usage, key, created, line.custom_id)
            payload = self._answer(record.endpoint, context, stamp)
        elif status == 400:
            payload = client_error_body(line.custom_id)
        else:
            payload = server_error_body()
        response = {"status_code": status, "request_id": f"req_{key}", "body": payload}
        return self._envelope(record, line, response, None)

    def _answer(self, endpoint: str, line: LineContext, stamp: int) -> dict[str, Any]:
        # A batch's videos can be downloaded for a day after the batch has ended.
        until = stamp + DOWNLOAD_WINDOW
        payload = success_body(
            endpoint, line, picture_bytes=self.picture_bytes(), video_until=until
        )
        if endpoint == "/v1/videos":
            self.videos.keep(StoredVideo(payload["id"], payload["seconds"], until))
        return payload

    @staticmethod
    def _envelope(
        record: BatchRecord,
        line: RequestLine,
        response: dict[str, Any] | None,
        error: dict[str, Any] | None,
    ) -> dict[str, Any]:
        return {
            "id": "batch_req_" + digest(record.id, line.custom_id, size=16),
            "custom_id": line.custom_id,
            "response": response,
            "error": error,
        }


def _create_parameters(payload: dict[str, Any]) -> tuple[str, str, str]:
    """A create's input_file_id, endpoint and completion window, each refused as OpenAI does."""
    input_file_id = payload.get("input_file_id")
    endpoint = payload.get("endpoint")
    window = payload.get("completion_window")
    if not isinstance(input_file_id, str) or not input_file_id:
        raise errors.invalid_request(
            "Missing required parameter: 'input_file_id'.",
            "input_file_id",
            "missing_required_parameter",
        )
    if endpoint not in SUPPORTED_ENDPOINTS:
        raise errors.invalid_request(
            f"Invalid value for 'endpoint': {endpoint!r}. Supported values are: "
            f"{', '.join(SUPPORTED_ENDPOINTS)}.",
            "endpoint",
            "invalid_value",
        )
    if window not in COMPLETION_WINDOWS:
        raise errors.invalid_request(
            f"Invalid value for 'completion_window': {window!r}. Supported values are: '24h'.",
            "completion_window",
            "invalid_value",
        )
    assert isinstance(endpoint, str)
    assert isinstance(window, str)
    return input_file_id, endpoint, window
