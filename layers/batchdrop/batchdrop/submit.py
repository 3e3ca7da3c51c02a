"""Turn one dropped S3 object into exactly one job on OpenAI: batches, or a clear refusal.

The steps are ordered so that a crash anywhere leaves a record a retry can resume from:
claim the job, validate the whole file (nothing is paid for yet), then per batch part: upload the
file and record its id, create the batch (its metadata carries a token) and record the batch.
A retry reuses recorded files and adopts a batch created just before a crash, found by its token.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from batchdrop.messages import rejection_notice
from batchdrop.model import JobStatus, SourceObject, report_key
from batchdrop.notices import NoticeOutbox
from batchdrop.openai_api import OpenAIBatchAPI, OpenAIError, RetryPolicy
from batchdrop.s3io import S3Objects
from batchdrop.store import JobStore
from batchdrop.validation import (
    Part,
    ValidationReport,
    normalised_lines,
    validate_stream,
)

logger = Logger(child=True)

WRITE_BUFFER_BYTES = 1024 * 1024  # lines are sent in ~1 MiB writes, not one syscall each
ADOPTION_WINDOW_SECONDS = 600  # how far before a part's record a matching batch may be
METADATA_VALUE_LIMIT = 512  # OpenAI's limit per metadata value


@dataclass(frozen=True)
class SubmitOutcome:
    job_id: str
    status: str  # "submitted", "rejected" or "duplicate"
    job_status: str
    batch_ids: list[str] = field(default_factory=list)
    request_count: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Submitter:
    def __init__(
        self,
        *,
        input_prefix: str,
        objects: S3Objects,
        store: JobStore,
        api: OpenAIBatchAPI,
        outbox: NoticeOutbox,
        metrics: Metrics,
        retry: RetryPolicy | None = None,
        validation_limits: dict[str, int] | None = None,
    ) -> None:
        self._input_prefix = input_prefix
        self._objects = objects
        self._store = store
        self._api = api
        self._outbox = outbox
        self._metrics = metrics
        self._retry = retry or RetryPolicy()
        self._limits = validation_limits or {}

    def submit(self, source: SourceObject) -> SubmitOutcome:
        job_id = source.job_id
        logger.append_keys(job_id=job_id, key=source.key)
        claimed = self._store.create_job(job_id, _source_fields(source))
        job = self._store.get_job(job_id) or {}
        status = job.get("status", JobStatus.SUBMITTING)
        if status == JobStatus.REJECTED:
            # A crash may have come between recording the refusal and emailing it.
            self._notify_rejection(job_id, job)
        if status != JobStatus.SUBMITTING:
            logger.info("duplicate delivery of an object already handled", extra={"status": status})
            return SubmitOutcome(job_id, "duplicate", str(status), _batch_ids(self._store, job_id))
        if not claimed:
            logger.info("resuming a submission an earlier attempt left unfinished")

        refusal = _refusal_before_reading(source)
        if refusal is not None:
            return self._reject(source, job_id, refusal)
        report = validate_stream(
            self._objects.open(source.bucket, source.key, source.version_id), **self._limits
        )
        if not report.ok:
            return self._reject(source, job_id, report.to_dict())
        return self._submit_parts(source, job_id, report)

    # --- the happy path --------------------------------------------------------------------------

    def _submit_parts(
        self, source: SourceObject, job_id: str, report: ValidationReport
    ) -> SubmitOutcome:
        assert report.endpoint is not None  # a valid report always names one
        recorded = {item["index"]: item for item in self._store.batches(job_id)}
        batch_ids: list[str] = []
        for part in report.parts:
            item = recorded.get(part.index, {})
            if "batch_id" in item:
                batch_ids.append(item["batch_id"])
                continue
            if "file_id" not in item:
                item = self._upload_part(source, job_id, part, len(report.parts))
            batch = self._create_or_adopt_batch(source, job_id, part, item, report.endpoint)
            self._store.record_batch(job_id, part.index, batch)
            logger.info(
                "batch created",
                extra={"batch_id": batch["id"], "part": part.index, "requests": part.line_count},
            )
            batch_ids.append(batch["id"])
            self._metrics.add_metric("BatchesSubmitted", MetricUnit.Count, 1)
        self._store.update_job(
            job_id,
            {
                "status": JobStatus.ACTIVE,
                "endpoint": report.endpoint,
                "model": report.model,
                "request_count": report.request_count,
                "batch_count": len(report.parts),
                "bytes": report.raw_bytes,
                "submitted_at": int(time.time()),
            },
            expected_status=JobStatus.SUBMITTING,
        )
        self._metrics.add_metric("RequestsSubmitted", MetricUnit.Count, report.request_count)
        logger.info("job submitted", extra={"batches": batch_ids})
        return SubmitOutcome(job_id, "submitted", JobStatus.ACTIVE, batch_ids, report.request_count)

    def _upload_part(
        self, source: SourceObject, job_id: str, part: Part, part_count: int
    ) -> dict[str, Any]:
        filename = _part_filename(source.filename, part.index, part_count)
        if len(part.chunks) == 1:  # the plan cut chunks at the upload part limit (64 MB)
            uploaded = self._api.upload_file(
                filename, part.size, lambda: self._normalised(source, part.start, part.end)
            )
        else:
            uploaded = self._upload_in_parts(source, filename, part)
        fields = {
            "file_id": uploaded["id"],
            "submission_token": uuid.uuid4().hex,
            "first_line": part.first_line,
            "request_count": part.line_count,
            "bytes": part.size,
        }
        # Recorded before the batch is created: a retry reuses the file instead of re-uploading.
        self._store.record_file(job_id, part.index, fields)
        self._metrics.add_metric("BytesUploaded", MetricUnit.Bytes, part.size)
        return {"index": part.index, **fields, "created_at": int(time.time())}

    def _upload_in_parts(self, source: SourceObject, filename: str, part: Part) -> dict[str, Any]:
        """The Uploads API, for files over 64 MB: each chunk is one streamed part."""
        upload = self._api.create_upload(filename, part.size)
        try:
            part_ids = [
                self._api.add_upload_part(
                    upload["id"],
                    chunk.size,
                    lambda chunk=chunk: self._normalised(source, chunk.start, chunk.end),  # type: ignore[misc]
                )["id"]
                for chunk in part.chunks
            ]
            completed = self._api.complete_upload(upload["id"], part_ids)
        except Exception:
            self._cancel_upload_quietly(upload["id"])
            raise
        file: dict[str, Any] = completed["file"]
        return file

    def _cancel_upload_quietly(self, upload_id: str) -> None:
        try:
            self._api.cancel_upload(upload_id)
        except OpenAIError:
            logger.warning("could not cancel an abandoned upload", extra={"upload_id": upload_id})

    def _normalised(self, source: SourceObject, start: int, end: int) -> Iterator[bytes]:
        body = self._objects.open(
            source.bucket, source.key, source.version_id, start=start, end=end
        )
        return _coalesce(normalised_lines(body, range_start=start), WRITE_BUFFER_BYTES)

    def _create_or_adopt_batch(
        self,
        source: SourceObject,
        job_id: str,
        part: Part,
        item: dict[str, Any],
        endpoint: str,
    ) -> dict[str, Any]:
        token = str(item["submission_token"])
        metadata = {
            "batchdrop_job": job_id,
            "batchdrop_part": str(part.index),
            "source_key": source.key[-METADATA_VALUE_LIMIT:],
            "submission_token": token,
        }
        # A record that already has a file may have been interrupted right after creating.
        look_first = item.get("status") == "uploaded" and "batch_id" not in item
        for attempt in range(self._retry.attempts):
            if look_first or attempt > 0:
                adopted = self._find_batch(token, int(item["created_at"]))
                if adopted is not None:
                    logger.info("adopted a batch created before an interruption")
                    return adopted
            try:
                return self._api.create_batch(str(item["file_id"]), endpoint, metadata)
            except OpenAIError as error:
                if not error.retryable or attempt == self._retry.attempts - 1:
                    raise
                logger.warning("batch create failed; will look before retrying", extra={
                    "status": error.status, "code": error.code,
                })  # fmt: skip
                self._retry.sleep(self._retry.delay(attempt, None))
        raise AssertionError("unreachable")  # pragma: no cover

    def _find_batch(self, token: str, recorded_at: int) -> dict[str, Any] | None:
        for batch in self._api.list_batches():
            if (batch.get("metadata") or {}).get("submission_token") == token:
                return batch
            if batch["created_at"] < recorded_at - ADOPTION_WINDOW_SECONDS:
                return None  # newest first: everything further is older than our file
        return None

    # --- refusals ------------------------------------------------------------------------------

    def _reject(self, source: SourceObject, job_id: str, report: dict[str, Any]) -> SubmitOutcome:
        key = report_key(source.key, self._input_prefix)
        self._objects.put_json(source.bucket, key, {"source": _source_uri(source), **report})
        self._store.update_job(
            job_id,
            {
                "status": JobStatus.REJECTED,
                "report_key": key,
                "problem_count": report["problem_count"],
                "counts_by_code": report["counts_by_code"],
                "problems_preview": report["problems"][:10],
            },
            expected_status=JobStatus.SUBMITTING,
            finished=True,
        )
        self._metrics.add_metric("FilesRejected", MetricUnit.Count, 1)
        logger.info("file rejected", extra={"problems": report["problem_count"]})
        job = self._store.get_job(job_id) or {}
        self._notify_rejection(job_id, job)
        return SubmitOutcome(job_id, "rejected", JobStatus.REJECTED)

    def _notify_rejection(self, job_id: str, job: dict[str, Any]) -> None:
        bucket, key = job["source_bucket"], job["report_key"]
        notice = rejection_notice(
            source_uri=f"s3://{job['source_bucket']}/{job['source_key']}",
            filename=job["filename"],
            input_prefix=self._input_prefix,
            problem_count=int(job["problem_count"]),
            counts_by_code=job["counts_by_code"],
            problems=job["problems_preview"],
            report_uri=f"s3://{bucket}/{key}",
            report_link=self._objects.presigned_url(bucket, key),
        )
        self._outbox.send_once(job_id, "outcome", notice)


def _refusal_before_reading(source: SourceObject) -> dict[str, Any] | None:
    """Objects refused on their name or size alone, with the reason in report form."""
    if source.key.endswith("/"):
        code, message = "folder_marker", "this is a folder marker, not a request file"
    elif source.size == 0:
        code, message = "empty_file", "line 1: the file is empty; it must hold at least one request"
    else:
        return None
    return {
        "ok": False,
        "summary": f"Rejected: {message}. Nothing was submitted.",
        "problem_count": 1,
        "counts_by_code": {code: 1},
        "truncated": False,
        "problems": [{"line": 1, "code": code, "message": message}],
    }


def _source_fields(source: SourceObject) -> dict[str, Any]:
    return {
        "status": JobStatus.SUBMITTING,
        "source_bucket": source.bucket,
        "source_key": source.key,
        "source_version": source.version_id,
        "source_etag": source.etag,
        "source_size": source.size,
        "filename": source.filename,
    }


def _source_uri(source: SourceObject) -> str:
    return f"s3://{source.bucket}/{source.key}"


def _batch_ids(store: JobStore, job_id: str) -> list[str]:
    return [item["batch_id"] for item in store.batches(job_id) if "batch_id" in item]


def _part_filename(filename: str, index: int, count: int) -> str:
    stem = filename.removesuffix(".jsonl")
    return f"{stem}.jsonl" if count == 1 else f"{stem}.part{index + 1}of{count}.jsonl"


def _coalesce(pieces: Iterable[bytes], size: int) -> Iterator[bytes]:
    buffer: list[bytes] = []
    buffered = 0
    for piece in pieces:
        buffer.append(piece)
        buffered += len(piece)
        if buffered >= size:
            yield b"".join(buffer)
            buffer, buffered = [], 0
    if buffer:
        yield b"".join(buffer)
