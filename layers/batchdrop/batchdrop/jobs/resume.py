"""Resume submissions that no attempt will finish: killed ones, and ones that failed past
Lambda's retries (their event waits in the dead-letter queue).

A submitting job's lease outlives any attempt, so once it lapses nobody is working on the job.
A poll tick then takes the lease and carries the submission on from its records: a recorded
file is never uploaded again, and a created batch is adopted by its token, never created twice.
After too many resumptions, or too long, it gives up: the batches already created are tracked to
their end, and the uploader gets one email saying what was and was not submitted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from batchdrop import SERVICE
from batchdrop.domain.emails import SubmittedPart, abandoned_submission_notice
from batchdrop.domain.model import JobStatus
from batchdrop.errors import NoticeRefused
from batchdrop.jobs.outbox import NoticeOutbox
from batchdrop.ports import JobRepository, Notice
from batchdrop.records import BatchRecord, JobRecord

logger = Logger(service=SERVICE, child=True)

# A resumption validates and uploads the whole file again: it starts only with room to finish.
RESUME_RESERVE_SECONDS = 300.0
# Waits between resumptions that fail (OpenAI down, out of quota): 5, 10, 20 … minutes, capped.
RESUME_FIRST_WAIT_SECONDS = 5 * 60
RESUME_MAX_WAIT_SECONDS = 2 * 60 * 60


class Outcome(Protocol):
    @property
    def status(self) -> str: ...


class Resumable(Protocol):
    def resume(self, job: JobRecord, *, retry_at: int) -> Outcome: ...


class SubmissionResumer:
    def __init__(
        self,
        *,
        store: JobRepository,
        submitter: Resumable,
        outbox: NoticeOutbox,
        metrics: Metrics,
        input_prefix: str,
        max_resumes: int,
        give_up_after_seconds: int,
        lease_seconds: int,
    ) -> None:
        self._store = store
        self._submitter = submitter
        self._outbox = outbox
        self._metrics = metrics
        self._input_prefix = input_prefix
        self._max_resumes = max_resumes
        self._give_up_after = give_up_after_seconds
        self._lease_seconds = lease_seconds

    def run(self, time_left: Callable[[], float]) -> dict[str, str]:
        """Resume every submission whose lease has lapsed, while time allows; job id → what
        became of it ("submitted", "rejected", "gave_up", "error", …)."""
        outcomes: dict[str, str] = {}
        for job in self._store.submitting_jobs():
            if int(job.get("lease_until", 0)) > self._store.now():
                continue  # an attempt may still be at work on it
            if time_left() < RESUME_RESERVE_SECONDS:
                break  # the next tick resumes it
            outcomes[str(job["job_id"])] = self._resume_safely(str(job["job_id"]))
        return outcomes

    def _resume_safely(self, job_id: str) -> str:
        """One job; a failure is logged and counted, and a later tick tries again."""
        job = self._store.take_submit_lease(job_id, self._lease_seconds, resume=True)
        if job is None:
            return "taken"  # an overlapping tick or a late Lambda retry got there first
        try:
            if self._exhausted(job):
                return self._give_up(job)
            logger.info(
                "resuming a submission whose lease lapsed",
                extra={"job_id": job_id, "resumption": job["resumes"]},
            )
            self._metrics.add_metric("SubmissionsResumed", MetricUnit.Count, 1)
            outcome = self._submitter.resume(job, retry_at=self._retry_at(job))
            return str(outcome.status)
        except Exception:
            logger.exception("resuming a submission failed", extra={"job_id": job_id})
            self._metrics.add_metric("SubmissionResumesFailed", MetricUnit.Count, 1)
            return "error"

    def _exhausted(self, job: JobRecord) -> bool:
        too_often = int(job["resumes"]) > self._max_resumes
        too_long = self._store.now() - int(job["created_at"]) > self._give_up_after
        return too_often or too_long

    def _retry_at(self, job: JobRecord) -> int:
        """When a resumption that fails may be tried again: later after each failure."""
        attempt = max(0, int(job["resumes"]) - 1)
        wait = min(RESUME_FIRST_WAIT_SECONDS * 2**attempt, RESUME_MAX_WAIT_SECONDS)
        return self._store.now() + int(wait)

    def _give_up(self, job: JobRecord) -> str:
        """End the submission: what was created is tracked on, and the email goes out first,
        so a crash in between repeats the give-up without repeating the email."""
        job_id = str(job["job_id"])
        parts = sorted(self._store.batches(job_id), key=lambda item: int(item["index"]))
        created = [part for part in parts if "batch_id" in part]
        kind = "submission_abandoned" if created else "outcome"
        try:
            if not self._outbox.send_once(job_id, kind, self._notice(job, created)):
                return "not_ready"  # another sender holds the email; the lease brings us back
        except NoticeRefused:
            # Refused as invalid it would be refused on every try: end the submission anyway.
            logger.error("SNS refused the give-up email", extra={"job_id": job_id})
            self._metrics.add_metric("NoticesRefused", MetricUnit.Count, 1)
        for part in parts:
            if "batch_id" not in part:  # an uploaded file whose batch was never created
                self._store.update_batch(job_id, int(part["index"]), {"status": "not_submitted"})
        self._store.update_job(
            job_id, _abandoned_fields(job, created, self._store.now()),
            expected_status=JobStatus.SUBMITTING, finished=not created,
        )  # fmt: skip
        self._metrics.add_metric("SubmissionsAbandoned", MetricUnit.Count, 1)
        logger.warning(
            "gave up on a submission",
            extra={"job_id": job_id, "batches_created": len(created), "resumes": job["resumes"]},
        )
        return "gave_up"

    def _notice(self, job: JobRecord, created: list[BatchRecord]) -> Notice:
        return abandoned_submission_notice(
            filename=str(job["filename"]),
            source_uri=f"s3://{job['source_bucket']}/{job['source_key']}",
            input_prefix=self._input_prefix,
            planned=[
                SubmittedPart(int(p["index"]), int(p["first_line"]), int(p["requests"]))
                for p in job.get("planned_parts", [])
            ],
            created={int(part["index"]): str(part["batch_id"]) for part in created},
            attempts=int(job["resumes"]),
            hours=max(0, self._store.now() - int(job["created_at"])) // 3600,
            last_error=str(job.get("last_error") or ""),
        )


def _abandoned_fields(job: JobRecord, created: list[BatchRecord], now: int) -> JobRecord:
    """The job after the give-up: failed when nothing ran, else active on what was created."""
    submitted = {int(part["index"]) for part in created}
    not_submitted = [p for p in job.get("planned_parts", []) if int(p["index"]) not in submitted]
    record: JobRecord = {
        "submission_abandoned_at": now,
        "not_submitted_parts": not_submitted,
        "not_submitted_from_line": min((int(p["first_line"]) for p in not_submitted), default=1),
    }
    if not created:
        return record | {"status": JobStatus.FAILED, "finished_at": now}
    return record | {
        "status": JobStatus.ACTIVE,
        "submitted_at": now,
        "batch_count": len(created),
        "request_count": sum(int(part["request_count"]) for part in created),
    }
