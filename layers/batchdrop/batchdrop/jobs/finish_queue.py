"""Every ready job gets its turn at the finisher, and a job that keeps failing is set aside.

Finishing a job can fail in ways that repeat: a download OpenAI never serves, a merge that runs
the invocation out of memory or time, an email SNS refuses. Taken in a fixed order, one such job
would be retried first on every tick and hold up every job behind it, forever and silently. So:

- Jobs take turns by their last attempt, oldest (or never tried) first: a job that just failed
  goes to the back.
- A turn starts only when the time left can cover a finish (`FINISH_RESERVE_SECONDS`), and is
  recorded on the job before it starts (`finish_attempted_at`, and `finish_attempt_until`, the
  invocation's deadline). An attempt still open after its deadline was killed: it counts as a
  failure like one that raised, and until then no other invocation starts a second one.
- Every failure is counted (`finish_failures`, reset by a success) and emits `FinishFailed`. At
  `attempts_before_attention` failures in a row the job is set aside as `needs_attention`: one
  email to the uploader, `JobsNeedingAttention` for the operator's alarm, and its batches leave
  the active index, so ticks stop retrying it. Everything is kept for `batchdrop retry`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Protocol

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from batchdrop import SERVICE
from batchdrop.domain.emails import needs_attention_notice
from batchdrop.domain.model import JobStatus
from batchdrop.errors import NoticeRefused, StaleRecordError
from batchdrop.jobs.finish import FINISH_RESERVE_SECONDS
from batchdrop.jobs.outbox import NoticeOutbox
from batchdrop.ports import JobRepository
from batchdrop.records import JobRecord

logger = Logger(service=SERVICE, child=True)

ATTENTION_NOTICE = "needs_attention"
KILLED = "the attempt ended without an outcome (the invocation was killed: out of memory or time)"
# A job in any of these may be finishing (active) or reporting its recorded outcome.
SETTABLE_ASIDE = {
    JobStatus.ACTIVE,
    JobStatus.COMPLETED,
    JobStatus.FAILED,
    JobStatus.EXPIRED,
    JobStatus.CANCELLED,
}


class Finisher(Protocol):
    def finish(self, job_id: str, time_left: Callable[[], float]) -> str: ...


class FinishQueue:
    def __init__(
        self,
        *,
        store: JobRepository,
        finisher: Finisher,
        outbox: NoticeOutbox,
        metrics: Metrics,
        attempts_before_attention: int,
    ) -> None:
        self._store = store
        self._finisher = finisher
        self._outbox = outbox
        self._metrics = metrics
        self._limit = attempts_before_attention

    def run(self, job_ids: Iterable[str], time_left: Callable[[], float]) -> dict[str, str]:
        """Give each ready job one turn, oldest attempt first, while time allows; what became
        of each job that had its turn ("error" for a failure, "needs_attention" once set aside)."""
        done: dict[str, str] = {}
        queue = self._in_turn(job_ids)
        for position, job in enumerate(queue):
            if time_left() < FINISH_RESERVE_SECONDS:
                waiting = [str(later["job_id"]) for later in queue[position:]]
                logger.info("too little time left to finish more; the next tick will",
                            extra={"waiting": waiting})  # fmt: skip
                break
            result = self._take_turn(job, time_left)
            if result != "not_ready":
                done[str(job["job_id"])] = result
        return done

    def _in_turn(self, job_ids: Iterable[str]) -> list[JobRecord]:
        jobs = [job for job_id in job_ids if (job := self._store.get_job(job_id)) is not None]
        return sorted(jobs, key=lambda job: (int(job.get("finish_attempted_at", 0)), job["job_id"]))

    def _take_turn(self, job: JobRecord, time_left: Callable[[], float]) -> str:
        """One job's turn. Nothing raised here may stop the next job's turn."""
        job_id = str(job["job_id"])
        try:
            if job["status"] == JobStatus.NEEDS_ATTENTION:
                return self._set_aside(job)  # an earlier set-aside stopped part way
            if job["status"] not in SETTABLE_ASIDE:
                return "not_ready"  # still submitting: finishing needs every part
            attempt = self._begin(job, time_left)
            if attempt is None:
                return "not_ready"  # another invocation holds this job's attempt
            if int(attempt["finish_failures"]) >= self._limit:
                return self._set_aside(attempt)
            return self._attempt(attempt, time_left)
        except StaleRecordError:
            return "not_ready"  # an overlapping tick moved the job on first
        except Exception:
            logger.exception("a job's turn failed; the next tick tries again",
                             extra={"job_id": job_id})  # fmt: skip
            return "error"

    def _begin(self, job: JobRecord, time_left: Callable[[], float]) -> JobRecord | None:
        """Record the attempt before it starts. An earlier attempt still open past its deadline
        was killed, and is counted as a failure now."""
        now = self._store.now()
        open_until = job.get("finish_attempt_until")
        if open_until is not None and int(open_until) > now:
            return None
        failures = int(job.get("finish_failures", 0))
        changes: JobRecord = {
            "finish_attempted_at": now,
            "finish_attempt_until": now + math.ceil(time_left()),
        }
        if open_until is not None:
            failures += 1
            changes |= {"finish_failures": failures, "last_finish_error": KILLED}
            self._count_failure(str(job["job_id"]), failures, KILLED)
        open_mark = None if open_until is None else int(open_until)
        self._store.update_finish_attempt(job["job_id"], changes, open_until=open_mark)
        return {**job, **changes, "finish_failures": failures}

    def _attempt(self, job: JobRecord, time_left: Callable[[], float]) -> str:
        job_id, mine = str(job["job_id"]), _deadline(job)
        try:
            result = self._finisher.finish(job_id, time_left)
        except StaleRecordError:
            result = "not_ready"  # an overlapping invocation recorded the outcome first
        except Exception as exc:
            logger.exception("finishing a job failed", extra={"job_id": job_id})
            return self._failed(job, f"{type(exc).__name__}: {exc}")
        closed: JobRecord = {"finish_attempt_until": None}
        if result != "not_ready":
            closed |= {"finish_failures": 0, "last_finish_error": None}
        self._store.update_finish_attempt(job_id, closed, open_until=mine)
        return result

    def _failed(self, job: JobRecord, error: str) -> str:
        job_id = str(job["job_id"])
        failures = int(job["finish_failures"]) + 1
        self._store.update_finish_attempt(
            job_id,
            {"finish_attempt_until": None, "finish_failures": failures,
             "last_finish_error": error[:500]},
            open_until=_deadline(job),
        )  # fmt: skip
        self._count_failure(job_id, failures, error)
        if failures >= self._limit:
            return self._set_aside({**job, "finish_failures": failures, "last_finish_error": error})
        return "error"

    def _count_failure(self, job_id: str, failures: int, error: str) -> None:
        self._metrics.add_metric("FinishFailed", MetricUnit.Count, 1)
        logger.warning(
            "finish failed",
            extra={"job_id": job_id, "failures": failures, "limit": self._limit, "error": error},
        )

    def _set_aside(self, job: JobRecord) -> str:
        """The uploader is told first (once), then the job and its batches are set aside. Each
        step is safe to repeat, so a set-aside cut short is completed by the next tick."""
        job_id = str(job["job_id"])
        self._tell_uploader(job)
        if job["status"] != JobStatus.NEEDS_ATTENTION:
            self._store.update_job(
                job_id,
                {"status": JobStatus.NEEDS_ATTENTION, "needs_attention_at": self._store.now(),
                 "finish_attempt_until": None, "expires_at": None},
                expected_status=set(SETTABLE_ASIDE),
            )  # fmt: skip
            self._metrics.add_metric("JobsNeedingAttention", MetricUnit.Count, 1)
        parked = self._store.park_batches(job_id)
        logger.error(
            "job set aside: it needs attention (batchdrop retry JOB)",
            extra={"job_id": job_id, "failures": job.get("finish_failures"),
                   "last_error": job.get("last_finish_error"), "batches_parked": parked},
        )  # fmt: skip
        return JobStatus.NEEDS_ATTENTION.value

    def _tell_uploader(self, job: JobRecord) -> None:
        """One email; if SNS refuses it as invalid, that is recorded and the job is set aside
        all the same: the operator's alarm does not depend on it, and nothing may loop on it."""
        notice = needs_attention_notice(
            filename=str(job.get("filename", "")),
            source_uri=f"s3://{job.get('source_bucket')}/{job.get('source_key')}",
            attempts=int(job.get("finish_failures", self._limit)),
            last_error=str(job.get("last_finish_error", "")),
            endpoint=str(job.get("endpoint", "")),
        )
        try:
            self._outbox.send_once(str(job["job_id"]), ATTENTION_NOTICE, notice)
        except NoticeRefused:
            self._metrics.add_metric("NoticesRefused", MetricUnit.Count, 1)
            logger.error("the needs-attention email was refused; the job is set aside regardless",
                         extra={"job_id": job["job_id"]})  # fmt: skip


def _deadline(attempt: JobRecord) -> int:
    """The deadline of the attempt `_begin` recorded on the job."""
    until = attempt.get("finish_attempt_until")
    assert until is not None, "an attempt is begun with its deadline"
    return int(until)
