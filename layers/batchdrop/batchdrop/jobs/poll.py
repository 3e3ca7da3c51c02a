"""One poll tick: keep every active batch's record true and hand finished jobs to the finisher.

The tick costs one Query of the sparse active index plus one OpenAI call per active batch, made
concurrently. Every write is guarded by the record's version, so overlapping ticks never regress
a record or act twice; a batch whose refresh fails simply stays active for the next tick.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from batchdrop import SERVICE
from batchdrop.domain.emails import stuck_notice
from batchdrop.domain.model import TERMINAL_BATCH_STATUSES
from batchdrop.errors import NoticeRefused, StaleRecordError
from batchdrop.jobs.duplicate_batches import DuplicateBatchSweeper
from batchdrop.jobs.finish_queue import FinishQueue
from batchdrop.jobs.launch import BatchLauncher, batch_metadata, moved_to, resubmitted_to
from batchdrop.jobs.outbox import NoticeOutbox
from batchdrop.ports import BatchAPI, JobRepository
from batchdrop.records import Batch, BatchFields, BatchRecord, openai_fields, requests_run

logger = Logger(service=SERVICE, child=True)

# Enqueued-token-limit failures free up as other batches finish: wait, then try again.
TOKEN_LIMIT_ERROR = "token_limit_exceeded"  # noqa: S105 - an error code, not a secret
TOKEN_LIMIT_FIRST_WAIT_SECONDS = 10 * 60
TOKEN_LIMIT_MAX_WAIT_SECONDS = 2 * 60 * 60
TOKEN_LIMIT_MAX_RESUBMITS = 6
# Stop starting refreshes when less time than this is left in the invocation.
REFRESH_RESERVE_SECONDS = 20.0
# A launch younger than any invocation may still be running; leave it to finish.
LAUNCH_LEASE_SECONDS = 20 * 60
_TERMINAL_METRICS = {
    "completed": "BatchesCompleted",
    "failed": "BatchesFailed",
    "expired": "BatchesExpired",
    "cancelled": "BatchesCancelled",
}


class Finisher(Protocol):
    def finish(self, job_id: str, time_left: Callable[[], float]) -> str: ...


class Resumer(Protocol):
    def run(self, time_left: Callable[[], float]) -> dict[str, str]: ...


class Cleanup(Protocol):
    def run(self, time_left: Callable[[], float]) -> dict[str, str]: ...


@dataclass
class TickSummary:
    active: int = 0
    refreshed: int = 0
    changed: int = 0
    errors: int = 0
    deferred: int = 0
    resubmitted: int = 0
    finished_jobs: dict[str, str] = field(default_factory=dict)
    cleanups: dict[str, str] = field(default_factory=dict)
    resumed_submissions: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "active": self.active,
            "refreshed": self.refreshed,
            "changed": self.changed,
            "errors": self.errors,
            "deferred": self.deferred,
            "resubmitted": self.resubmitted,
            "finished_jobs": self.finished_jobs,
            "cleanups": self.cleanups,
            "resumed_submissions": self.resumed_submissions,
        }


class Poller:
    def __init__(
        self,
        *,
        store: JobRepository,
        api: BatchAPI,
        launcher: BatchLauncher,
        duplicates: DuplicateBatchSweeper,
        outbox: NoticeOutbox,
        finisher: Finisher,
        cleanup: Cleanup,
        resumer: Resumer,
        metrics: Metrics,
        concurrency: int,
        stuck_after_seconds: int,
        finish_attempts_before_attention: int = 5,
    ) -> None:
        self._store = store
        self._api = api
        self._launcher = launcher
        self._duplicates = duplicates
        self._outbox = outbox
        self._finisher = finisher
        self._cleanup = cleanup
        self._resumer = resumer
        self._metrics = metrics
        self._concurrency = concurrency
        self._stuck_after = stuck_after_seconds
        self._finishing = FinishQueue(
            store=store,
            finisher=finisher,
            outbox=outbox,
            metrics=metrics,
            attempts_before_attention=finish_attempts_before_attention,
        )

    def tick(self, time_left: Callable[[], float]) -> TickSummary:
        summary = TickSummary()
        items = list(self._store.active_batches())
        summary.active = len(items)
        self._metrics.add_metric("PollTickActive", MetricUnit.Count, len(items))
        swept = self._duplicates.sweep_safely(items, time_left)
        # A job is handed to the finisher only once every one of its batches is final.
        ready = {item["job_id"]: True for item in items}
        with ThreadPoolExecutor(max_workers=self._concurrency) as pool:
            futures: list[tuple[BatchRecord, Future[str]]] = []
            for item in items:
                futures.append((item, pool.submit(self._refresh_safely, item, time_left)))
            for item, future in futures:
                outcome = future.result()
                if outcome == "deferred":
                    summary.deferred += 1  # the next tick picks it up
                    ready[item["job_id"]] = False
                    continue
                summary.refreshed += outcome != "error"
                summary.errors += outcome == "error"
                summary.changed += outcome in {"changed", "final", "resubmitted"}
                summary.resubmitted += outcome == "resubmitted"
                if outcome != "final":
                    ready[item["job_id"]] = False
        if swept is None:
            # A duplicate left to the next tick may have run requests by then: once the
            # refreshes have given OpenAI a moment, sweep again.
            self._duplicates.sweep_safely(items, time_left)
        # Every ready job gets a turn, oldest attempt first; none can hold up the others.
        summary.finished_jobs = self._finishing.run(
            [job for job, is_ready in ready.items() if is_ready], time_left
        )
        # A resumed submission validates and uploads a whole file, the longest work here.
        summary.resumed_submissions = self._resumer.run(time_left)
        # Last: deleting reported jobs' files waits for nobody, so it takes what time is left.
        summary.cleanups = self._clean_up_safely(time_left)
        logger.info("tick done", extra=summary.as_dict())
        return summary

    def _clean_up_safely(self, time_left: Callable[[], float]) -> dict[str, str]:
        """Deleting reported jobs' files on OpenAI: whatever fails is for the next tick."""
        try:
            return self._cleanup.run(time_left)
        except Exception:
            logger.exception("deleting files on OpenAI failed; the next tick tries again")
            self._metrics.add_metric("OpenAIFileDeletesFailed", MetricUnit.Count, 1)
            return {}

    # --- one batch ---------------------------------------------------------------------------

    def _refresh_safely(self, item: BatchRecord, time_left: Callable[[], float]) -> str:
        """Refresh one batch; any failure leaves it active for the next tick, never lost."""
        if time_left() < REFRESH_RESERVE_SECONDS:
            return "deferred"  # checked as the refresh starts: queued work may wait a while
        try:
            return self._refresh(item)
        except StaleRecordError:
            return "unchanged"  # an overlapping tick recorded the same change first
        except Exception:
            logger.exception(
                "batch refresh failed; it stays active",
                extra={"job_id": item["job_id"], "batch_id": item.get("batch_id")},
            )
            return "error"

    def _refresh(self, item: BatchRecord) -> str:
        """ "final" when the batch is (already or now) final, else what happened to it."""
        if item.get("final"):
            return "final"  # waiting for its job's other batches or for the finisher
        retry_at = item.get("retry_at")
        if retry_at is not None:
            if item.get("cancel_requested"):
                return self._cancel_waiting(item)
            return self._adopt_duplicate(item) or self._resubmit_when_due(item, retry_at)
        if "batch_id" not in item:
            return self._launch_interrupted(item)
        batch = self._api.retrieve_batch(item["batch_id"])
        status = batch["status"]
        if item.get("cancel_requested") and status not in TERMINAL_BATCH_STATUSES | {"cancelling"}:
            batch = self._api.cancel_batch(item["batch_id"])
            status = batch["status"]
        self._warn_if_stuck(item, batch)
        unchanged = status == item.get("status") and _counts(batch) == _counts(item["openai"])
        # A batch can be recorded already ended (adopted, or failing fast): it must still be
        # judged final or scheduled for a retry, so only a live batch may stay as it is.
        if unchanged and status not in TERMINAL_BATCH_STATUSES:
            return "unchanged"
        changes: BatchRecord = {"status": status, "openai": openai_fields(batch)}
        if status in TERMINAL_BATCH_STATUSES:
            changes.update(self._terminal_changes(item, batch))
        self._store.update_batch(
            item["job_id"], item["index"], changes, expected_version=int(item["version"])
        )
        self._log_change(item, batch, changes)
        return "final" if changes.get("final") else "changed"

    def _cancel_waiting(self, item: BatchRecord) -> str:
        """A batch waiting to be resubmitted is not resubmitted once its job is cancelled; one a
        crashed tick may already have created is adopted, and cancelled by the next refresh."""
        token = item.get("pending_token")
        adopted = self._launcher.find(token, _pending_since(item)) if token else None
        changes: BatchRecord = (
            moved_to(item, adopted)
            if adopted is not None
            else {"retry_at": None, "pending_token": None, "pending_since": None,
                  "status": "cancelled", "final": True}
        )  # fmt: skip
        self._store.update_batch(
            item["job_id"], item["index"], changes, expected_version=int(item["version"])
        )
        return "final" if adopted is None else "changed"

    def _terminal_changes(self, item: BatchRecord, batch: Batch) -> BatchRecord:
        """A batch has ended: either it is final, or it must wait and be tried again."""
        attempts = int(item.get("resubmits", 0))
        if _failed_on_token_limit(batch) and attempts < TOKEN_LIMIT_MAX_RESUBMITS:
            wait = min(TOKEN_LIMIT_FIRST_WAIT_SECONDS * 2**attempts, TOKEN_LIMIT_MAX_WAIT_SECONDS)
            logger.info(
                "enqueued-token limit reached; will resubmit",
                extra={"batch_id": batch["id"], "wait_seconds": wait, "attempt": attempts + 1},
            )
            return {"retry_at": self._store.now() + wait}
        self._metrics.add_metric(_TERMINAL_METRICS[batch["status"]], MetricUnit.Count, 1)
        return {"final": True}

    def _adopt_duplicate(self, item: BatchRecord) -> str | None:
        """A part waiting out the token limit whose submission has a duplicate (a create that
        landed late) that runs, or ran anything, takes that batch as its own instead of
        being resubmitted: what it ran was paid for and must never be sent again. None when
        there is no such duplicate."""
        own = {item.get("batch_id"), *item.get("previous_batch_ids", [])}
        for batch_id in sorted(set(item.get("duplicate_batch_ids", ())) - own):
            batch = self._api.retrieve_batch(batch_id)
            ran = requests_run(batch)
            if batch["status"] in TERMINAL_BATCH_STATUSES and not ran:
                continue  # ended without running anything: nothing to keep
            self._store.update_batch(
                item["job_id"], item["index"], moved_to(item, batch),
                expected_version=int(item["version"]),
            )  # fmt: skip
            logger.info(
                "a duplicate ran the part's requests: adopted instead of resubmitting",
                extra={"job_id": item["job_id"], "batch_id": batch_id},
            )
            return "changed"
        return None

    def _resubmit_when_due(self, item: BatchRecord, retry_at: int) -> str:
        now = self._store.now()
        if now < int(retry_at):
            return "unchanged"
        token = item.get("pending_token")
        if token is None:
            # Remember the token before creating, so a crash in between adopts, not duplicates.
            token = uuid.uuid4().hex
            item = self._take_launch(item, {"pending_token": token, "pending_since": now})
            look_first = False
        elif _launch_leased(item, _pending_since(item), now):
            return "unchanged"  # another tick may still be creating it
        else:
            item = self._take_launch(item, {"launch_taken_at": now})
            look_first = True
        batch = self._launch(item, token, _pending_since(item), look_first=look_first)
        self._store.update_batch(
            item["job_id"],
            item["index"],
            resubmitted_to(item, batch),
            expected_version=int(item["version"]),
        )
        logger.info("resubmitted", extra={"job_id": item["job_id"], "batch_id": batch["id"]})
        return "resubmitted"

    def _take_launch(self, item: BatchRecord, changes: BatchRecord) -> BatchRecord:
        """Make this tick the one that launches the part's batch: a write checked against the
        version the tick read, so of overlapping ticks that read the same record only one gets
        on to create (the others' StaleRecordError leaves the part "unchanged" for them).
        Returns the record as written."""
        self._store.update_batch(
            item["job_id"], item["index"], changes, expected_version=int(item["version"])
        )
        return {**item, **changes, "version": int(item["version"]) + 1}

    def _launch(
        self, item: BatchRecord, token: str, recorded_at: int, *, look_first: bool
    ) -> Batch:
        job = self._store.get_job(item["job_id"]) or {}
        return self._launcher.create_or_adopt(
            file_id=str(item["file_id"]),
            endpoint=str(job.get("endpoint")),
            metadata=batch_metadata(item["job_id"], item["index"], token, job.get("metadata")),
            recorded_at=recorded_at,
            look_first=look_first,
            output_expiry_seconds=job.get("output_expiry_seconds"),
        )

    def _launch_interrupted(self, item: BatchRecord) -> str:
        """A follow-up whose file was uploaded but whose batch was never recorded: finish the
        launch, adopting the batch if it was created. Recent ones may still be mid-launch."""
        now = self._store.now()
        if _launch_leased(item, int(item["created_at"]), now):
            return "unchanged"
        item = self._take_launch(item, {"launch_taken_at": now})
        batch = self._launch(
            item, str(item["submission_token"]), int(item["created_at"]), look_first=True
        )
        self._store.record_batch(item["job_id"], item["index"], batch)
        return "changed"

    def _warn_if_stuck(self, item: BatchRecord, batch: Batch) -> None:
        since = _stuck_since(batch)
        if since is None:
            return
        stuck_for = self._store.now() - int(since)
        if stuck_for < self._stuck_after:
            return
        job = self._store.get_job(item["job_id"]) or {}
        notice = stuck_notice(
            filename=str(job.get("filename", "")),
            source_uri=f"s3://{job.get('source_bucket')}/{job.get('source_key')}",
            batch_id=batch["id"],
            status=batch["status"],
            minutes=stuck_for // 60,
            endpoint=str(batch.get("endpoint", "")),
        )
        # One warning per batch and status; polling goes on regardless, even if SNS refuses it.
        try:
            self._outbox.send_once(item["job_id"], f"stuck_{batch['id']}_{batch['status']}", notice)
        except NoticeRefused:
            self._metrics.add_metric("NoticesRefused", MetricUnit.Count, 1)

    def _log_change(self, item: BatchRecord, batch: Batch, changes: BatchRecord) -> None:
        logger.info(
            "batch changed",
            extra={
                "job_id": item["job_id"],
                "batch_id": batch["id"],
                "from": item.get("status"),
                "to": batch["status"],
                "request_counts": batch.get("request_counts"),
                "final": changes.get("final", False),
            },
        )


def _launch_leased(item: BatchRecord, began_at: int, now: int) -> bool:
    """Whether a launch that began at `began_at` may still be under way, in the tick that began
    it or in the last one that took it over: either may still be creating its batch."""
    taken_at = max(began_at, int(item.get("launch_taken_at") or 0))
    return now - taken_at < LAUNCH_LEASE_SECONDS


def _pending_since(item: BatchRecord) -> int:
    """When the pending resubmission's token was recorded."""
    since = item.get("pending_since")
    assert since is not None, "a pending token is recorded with its time"
    return int(since)


def _stuck_since(batch: Batch) -> int | None:
    """Since when a batch has been in a status it can get stuck in: validating since it was
    created, finalizing since it began to; None in any other status."""
    if batch["status"] == "validating":
        return batch.get("created_at")
    if batch["status"] == "finalizing":
        return batch.get("finalizing_at")
    return None


def _failed_on_token_limit(batch: Batch) -> bool:
    if batch["status"] != "failed":
        return False
    errors = (batch.get("errors") or {}).get("data") or []
    return any(error.get("code") == TOKEN_LIMIT_ERROR for error in errors)


def _counts(batch: BatchFields) -> tuple[int, int, int]:
    counts = batch.get("request_counts") or {}
    return (counts.get("total", 0), counts.get("completed", 0), counts.get("failed", 0))
