"""Turn one dropped S3 object into exactly one job on OpenAI: batches, or a clear refusal.

The steps are ordered so that a crash anywhere leaves a record a retry can resume from:
claim the job, validate the whole file (nothing is paid for yet; a file that can go as it is
uploads meanwhile, see `early_upload`), record the plan, then per batch part: upload the file
and record its id, create the batch (its metadata carries a token) and record the batch.
A retry reuses recorded files and adopts a batch created just before a crash, found by its token.

One attempt works on a job at a time, under a lease longer than the function's timeout. A failed
attempt gives the lease back; a killed one cannot, so its lease lapses and the poller resumes the
job (`resume`), the same way, from the same records.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from batchdrop import SERVICE
from batchdrop.domain.emails import rejection_notice
from batchdrop.domain.file_options import FileOptions, read_options, refusal_report
from batchdrop.domain.limits import DEFAULT_LIMITS, Limits
from batchdrop.domain.model import JobStatus, SourceObject, report_key, results_prefix
from batchdrop.domain.split_plan import Part
from batchdrop.domain.validation import ValidationReport, file_too_large, validate_stream
from batchdrop.jobs.early_upload import EarlyUpload, may_upload_early
from batchdrop.jobs.launch import BatchLauncher, ObjectVersion, batch_metadata, part_filename
from batchdrop.jobs.outbox import NoticeOutbox
from batchdrop.ports import JobRepository, ObjectStore
from batchdrop.records import BatchRecord, JobRecord

logger = Logger(service=SERVICE, child=True)

# Longer than the submit function's 900 s timeout, so a live attempt is never overtaken; an
# attempt that was killed is resumed by the poller once it lapses.
SUBMIT_LEASE_SECONDS = 20 * 60


class NoticePendingError(RuntimeError):
    """The refusal is recorded but its email is not known to be out; Lambda retries."""


@dataclass(frozen=True)
class SubmitOutcome:
    job_id: str
    status: str  # "submitted", "rejected", "duplicate" or "in_progress"
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
        objects: ObjectStore,
        store: JobRepository,
        launcher: BatchLauncher,
        outbox: NoticeOutbox,
        metrics: Metrics,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self._input_prefix = input_prefix
        self._objects = objects
        self._store = store
        self._launcher = launcher
        self._outbox = outbox
        self._metrics = metrics
        self._limits = limits

    def submit(self, source: SourceObject) -> SubmitOutcome:
        """Submit a delivered object: claim its job, or take over one an earlier attempt left."""
        job_id = source.job_id
        logger.append_keys(job_id=job_id, key=source.key)
        held_until = self._store.now() + SUBMIT_LEASE_SECONDS
        if self._store.create_job(job_id, self._new_job(source, lease_until=held_until)):
            return self._attempt(source, held_until, fresh=True, retry_at=self._store.now())
        job = self._store.get_job(job_id) or {}
        status = job.get("status", JobStatus.SUBMITTING)
        if status == JobStatus.REJECTED:
            # A crash may have come between recording the refusal and emailing it.
            self._notify_rejection(job_id, job)
        if status != JobStatus.SUBMITTING:
            logger.info("duplicate delivery of an object already handled", extra={"status": status})
            return SubmitOutcome(job_id, "duplicate", str(status), _batch_ids(self._store, job_id))
        taken = self._store.take_submit_lease(job_id, SUBMIT_LEASE_SECONDS, resume=False)
        if taken is None:
            return self._left_to_lease_holder(job_id)
        logger.info("resuming a submission an earlier attempt left unfinished")
        return self._attempt(
            source, int(taken["lease_until"]), fresh=False, retry_at=self._store.now()
        )

    def resume(self, job: JobRecord, *, retry_at: int) -> SubmitOutcome:
        """Carry on with a submission whose lease the caller (the poller) has just taken, from
        what its records say; a failure lets the lease be taken again from `retry_at`."""
        source = SourceObject(
            bucket=job["source_bucket"],
            key=job["source_key"],
            size=int(job["source_size"]),
            etag=job["source_etag"],
            sequencer=job.get("source_sequencer", ""),
            version_id=job.get("source_version"),
        )
        logger.append_keys(job_id=job["job_id"], key=source.key)
        return self._attempt(
            source, int(job["lease_until"]), fresh=False, retry_at=retry_at, job_id=job["job_id"]
        )

    def in_progress(self, source: SourceObject) -> SubmitOutcome:
        """What to report for a delivery that finds another attempt at work on the same object.
        It may let the event go only once the job's record guarantees an end, so it records the
        job if that attempt has not yet, with a lease already lapsed: the attempt takes it at
        once if alive, and the poller resumes the job if the attempt was killed first."""
        self._store.create_job(source.job_id, self._new_job(source, lease_until=0))
        job = self._store.get_job(source.job_id) or {}
        if job.get("status") == JobStatus.SUBMITTING:
            return self._left_to_lease_holder(source.job_id)
        return SubmitOutcome(source.job_id, "duplicate", str(job.get("status")))

    def _new_job(self, source: SourceObject, *, lease_until: int) -> JobRecord:
        """A job record as first written, with its own results folder."""
        now = self._store.now()
        return {
            **_source_fields(source, lease_until),
            "results_prefix": results_prefix(source.key, self._input_prefix, now, source.job_id),
        }

    def _left_to_lease_holder(self, job_id: str) -> SubmitOutcome:
        logger.info(
            "another attempt holds this submission; it, or the poller once its lease lapses, "
            "takes the job to its end"
        )
        self._metrics.add_metric("SubmissionsLeftToLeaseHolder", MetricUnit.Count, 1)
        return SubmitOutcome(job_id, "in_progress", JobStatus.SUBMITTING)

    def _attempt(
        self,
        source: SourceObject,
        held_until: int,
        *,
        fresh: bool,
        retry_at: int,
        job_id: str | None = None,
    ) -> SubmitOutcome:
        """One attempt under the lease. A failure gives the lease back with its error; a killed
        process gives nothing back, and the poller takes over once the lease lapses."""
        job_id = job_id or source.job_id
        try:
            return self._submit_claimed(source, job_id, fresh=fresh)
        except Exception as error:
            self._store.release_submit_lease(job_id, held_until, retry_at, _describe(error))
            raise

    def _submit_claimed(self, source: SourceObject, job_id: str, *, fresh: bool) -> SubmitOutcome:
        refusal = _refusal_before_reading(source, self._limits.max_file_bytes)
        if refusal is not None:
            return self._reject(source, job_id, refusal)
        options = read_options(
            self._objects.user_metadata(source.bucket, source.key, source.version_id)
        )
        if isinstance(options, list):
            return self._reject(source, job_id, refusal_report(options))
        # A resumed submission may have a file recorded already: only a fresh one starts early.
        early = self._start_early_upload(source, options) if fresh else None
        try:
            report = validate_stream(
                self._objects.open(source.bucket, source.key, source.version_id),
                self._limits,
                after_each_line=early.keep_pace if early else None,
            )
            early_file_id = early.file_id_for(report) if early else None
        finally:
            if early is not None:
                early.close()  # however validation ended, its upload thread ends here
        if not report.ok:
            return self._reject(source, job_id, report.to_dict())
        return self._submit_parts(source, job_id, report, options, early_file_id)

    def _start_early_upload(self, source: SourceObject, options: FileOptions) -> EarlyUpload | None:
        if not may_upload_early(source.size, self._limits):
            return None
        return EarlyUpload(
            self._launcher,
            ObjectVersion(source.bucket, source.key, source.version_id),
            source.size,
            part_filename(source.filename, 0, 1),
            self._limits.max_upload_part_bytes,
            expiry_seconds=options.input_expiry_seconds,
        )

    # --- the happy path --------------------------------------------------------------------------

    def _submit_parts(
        self,
        source: SourceObject,
        job_id: str,
        report: ValidationReport,
        options: FileOptions,
        early_file_id: str | None,
    ) -> SubmitOutcome:
        assert report.endpoint is not None  # a valid report always names one
        self._store.update_job(
            job_id, _plan_fields(report, options), expected_status=JobStatus.SUBMITTING
        )
        recorded = {item["index"]: item for item in self._store.batches(job_id)}
        batch_ids: list[str] = []
        for part in report.parts:
            item = recorded.get(part.index, {})
            if "batch_id" in item:
                batch_ids.append(item["batch_id"])
                continue
            if "file_id" not in item:
                item = self._upload_part(source, job_id, part, report, options, early_file_id)
            batch = self._launcher.create_or_adopt(
                file_id=str(item["file_id"]),
                endpoint=report.endpoint,
                metadata=batch_metadata(
                    job_id, part.index, str(item["submission_token"]), options.metadata
                ),
                recorded_at=int(item["created_at"]),
                # A file recorded by an earlier attempt may already have its batch.
                look_first=item.get("status") == "uploaded",
                output_expiry_seconds=options.output_expiry_seconds,
            )
            self._store.record_batch(job_id, part.index, batch)
            logger.info(
                "batch created",
                extra={"batch_id": batch["id"], "part": part.index, "requests": part.line_count},
            )
            batch_ids.append(batch["id"])
            self._metrics.add_metric("BatchesSubmitted", MetricUnit.Count, 1)
        self._store.update_job(
            job_id,
            {"status": JobStatus.ACTIVE, "submitted_at": self._store.now()},
            expected_status=JobStatus.SUBMITTING,
        )
        self._metrics.add_metric("RequestsSubmitted", MetricUnit.Count, report.request_count)
        logger.info("job submitted", extra={"batches": batch_ids})
        return SubmitOutcome(job_id, "submitted", JobStatus.ACTIVE, batch_ids, report.request_count)

    def _upload_part(
        self,
        source: SourceObject,
        job_id: str,
        part: Part,
        report: ValidationReport,
        options: FileOptions,
        uploaded_early: str | None,
    ) -> BatchRecord:
        file_id = uploaded_early or self._launcher.upload(
            ObjectVersion(source.bucket, source.key, source.version_id),
            part,
            part_filename(source.filename, part.index, len(report.parts)),
            verbatim=report.verbatim,
            expiry_seconds=options.input_expiry_seconds,
        )
        fields: BatchRecord = {
            "kind": "part",
            "file_id": file_id,
            "submission_token": uuid.uuid4().hex,
            "first_line": part.first_line,
            "request_count": part.line_count,
            "bytes": part.size,
            # The raw byte range, so results can be merged back in input order later.
            "start": part.start,
            "end": part.end,
        }
        # Recorded before the batch is created: a retry reuses the file instead of re-uploading.
        self._store.record_file(job_id, part.index, fields)
        self._metrics.add_metric("BytesUploaded", MetricUnit.Bytes, part.size)
        return {"index": part.index, **fields, "created_at": self._store.now()}

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

    def _notify_rejection(self, job_id: str, job: JobRecord) -> None:
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
        if not self._outbox.send_once(job_id, "outcome", notice):
            # Another attempt holds the email; failing keeps the event until it is known sent.
            raise NoticePendingError(f"the rejection email of job {job_id} is not sent yet")


def _plan_fields(report: ValidationReport, options: FileOptions) -> JobRecord:
    """The plan, recorded before any batch: a resumption, or the email of one that gives up,
    can tell what was meant to be submitted. The file's options go with it: follow-ups and
    resubmissions carry the same metadata and expiry."""
    return {
        "metadata": options.metadata,
        "input_expiry_seconds": options.input_expiry_seconds,
        "output_expiry_seconds": options.output_expiry_seconds,
        "endpoint": report.endpoint,
        "model": report.model,
        "request_count": report.request_count,
        "batch_count": len(report.parts),
        "bytes": report.raw_bytes,
        "planned_parts": [
            {"index": part.index, "first_line": part.first_line, "requests": part.line_count}
            for part in report.parts
        ],
    }


def _refusal_before_reading(
    source: SourceObject, max_file_bytes: int | None
) -> dict[str, Any] | None:
    """Objects refused on their name or size alone, with the reason in report form."""
    if source.key.endswith("/"):
        code, message = "folder_marker", "this is a folder marker, not a request file"
    elif source.size == 0:
        code, message = "empty_file", "line 1: the file is empty; it must hold at least one request"
    elif max_file_bytes is not None and source.size > max_file_bytes:
        code, message = "file_too_large", f"line 1: {file_too_large(source.size, max_file_bytes)}"
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


def _source_fields(source: SourceObject, lease_until: int) -> JobRecord:
    return {
        "status": JobStatus.SUBMITTING,
        "lease_until": lease_until,
        "source_bucket": source.bucket,
        "source_key": source.key,
        "source_version": source.version_id,
        "source_etag": source.etag,
        "source_size": source.size,
        "source_sequencer": source.sequencer,
        "filename": source.filename,
    }


def _describe(error: Exception) -> str:
    """An attempt's error as the record keeps it: OpenAI's words arrive with the key redacted."""
    return f"{type(error).__name__}: {error}"


def _source_uri(source: SourceObject) -> str:
    return f"s3://{source.bucket}/{source.key}"


def _batch_ids(store: JobRepository, job_id: str) -> list[str]:
    return [item["batch_id"] for item in store.batches(job_id) if "batch_id" in item]
