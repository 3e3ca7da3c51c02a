"""The safety net behind exactly-once creates: batches that share a submission token.

The launcher waits for an ambiguous create to land before it creates again, but a listing can lag
longer than any wait, and a crashed submit can be retried before its last create landed. Each
such race leaves two batches with one token, both billed. Once per tick this lists recent batches
and cancels every batchdrop batch whose token is carried by the batch recorded on its part.

Twins whose part records neither (their launch died, or is still deciding) are not left to run
until the launch is resumed: the sweep records one on the part, with the same conditional write
the launch uses, so whichever records first wins and the other's batch is the duplicate.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from batchdrop import SERVICE
from batchdrop.domain.model import TERMINAL_BATCH_STATUSES
from batchdrop.errors import OpenAIError, StaleRecordError
from batchdrop.jobs.launch import part_reference, resubmitted_to
from batchdrop.ports import BatchAPI, JobRepository
from batchdrop.records import Batch, BatchRecord, requests_run

logger = Logger(service=SERVICE, child=True)

# How much older than its recorded batch a duplicate may be: a launch spans at most a few
# invocations (submit's two Lambda retries; the poll's 20-minute launch lease and one more run).
DUPLICATE_LOOKBACK_SECONDS = 60 * 60
# A tick with less time than this left skips the sweep; the next tick sweeps instead.
SWEEP_RESERVE_SECONDS = 60.0
_LEFT_ALONE = TERMINAL_BATCH_STATUSES | {"cancelling"}


class DuplicateBatchSweeper:
    """Finds and cancels duplicate batches: one listing per tick, bounded by the oldest active
    batch, and one consistent read of a job's parts only when that job has a duplicate."""

    def __init__(self, *, api: BatchAPI, store: JobRepository, metrics: Metrics) -> None:
        self._api = api
        self._store = store
        self._metrics = metrics

    def sweep_safely(self, items: list[BatchRecord], time_left: Callable[[], float]) -> int | None:
        """Sweep; a failure is logged and counted, never stops the tick, and returns None."""
        if time_left() < SWEEP_RESERVE_SECONDS:
            return 0
        try:
            return self.sweep(items)
        except Exception:
            logger.exception("the duplicate-batch sweep failed")
            self._metrics.add_metric("DuplicateSweepFailed", MetricUnit.Count, 1)
            return None

    def sweep(self, items: list[BatchRecord]) -> int:
        """Cancel the duplicates of the active items' batches; how many were cancelled."""
        created = [int(item["openai"]["created_at"]) for item in items if _has_batch(item)]
        if not created and next(self._store.submitting_jobs(), None) is None:
            return 0  # nothing launched or launching: an idle tick calls nobody
        # Back past the oldest active batch, or past now: twins of a launch that died before
        # recording either belong to no active batch.
        horizon = min([*created, self._store.now()]) - DUPLICATE_LOOKBACK_SECONDS
        return sum(self._resolve(group) for group in self._shared_tokens(horizon))

    def _shared_tokens(self, horizon: int) -> Iterable[list[Batch]]:
        """batchdrop's batches made since `horizon`, grouped by a token two or more carry."""
        by_token: dict[str, list[Batch]] = defaultdict(list)
        for batch in self._api.list_batches():
            if batch["created_at"] < horizon:
                break  # newest first: everything further back predates every active batch
            metadata = batch.get("metadata") or {}
            if part_reference(metadata) is not None:
                by_token[metadata["submission_token"]].append(batch)
        return [group for group in by_token.values() if len(group) > 1]

    def _resolve(self, group: list[Batch]) -> int:
        """Keep the batch its part records (or has in its history); cancel the rest, and record
        them all on the part."""
        reference = part_reference(group[0].get("metadata") or {})
        assert reference is not None  # every batch of a group carries batchdrop's metadata
        job_id, index = reference
        recorded = [p for p in self._store.batches(job_id) if int(p["index"]) == index]
        part: BatchRecord = recorded[0] if recorded else {}
        known = {part.get("batch_id"), *part.get("previous_batch_ids", [])}
        if not known.intersection(batch["id"] for batch in group):
            kept = self._record_one(part, group)
            if kept is None:
                return 0
            part, known = kept, {*known, kept["batch_id"]}
        extra = [batch for batch in group if batch["id"] not in known]
        # A part waiting out the token limit keeps a live duplicate: it got through, and the
        # poller adopts it instead of resubmitting (one is kept; the others go).
        keep = 1 if part.get("retry_at") is not None else 0
        live = [batch["id"] for batch in extra if batch["status"] not in _LEFT_ALONE][keep:]
        cancelled = [batch_id for batch_id in live if self._cancel(batch_id)]
        found = [batch["id"] for batch in extra]
        # Recorded even when already ended: what a duplicate ran was paid for, so the finisher
        # merges its results with the part's own and never sends those requests again.
        if cancelled or not set(found) <= set(part.get("duplicate_batch_ids", ())):
            self._store.note_duplicates(job_id, index, found, cancelled)
        if cancelled:
            self._metrics.add_metric("DuplicateBatchesCancelled", MetricUnit.Count, len(cancelled))
            logger.warning(
                "cancelled duplicate batches",
                extra={"job_id": job_id, "part": index, "kept": part.get("batch_id"),
                       "cancelled": cancelled},
            )  # fmt: skip
        return len(cancelled)

    def _record_one(self, part: BatchRecord, group: list[Batch]) -> BatchRecord | None:
        """Twins of a launch that recorded neither: record the one to keep on the part, as its
        launch would have (the part's first batch, or its pending resubmission). The part as it
        now is; None when the token is not the part's to launch, or a launch recorded first."""
        token = (group[0].get("metadata") or {})["submission_token"]
        keep = min(group, key=_keeping_order)
        job_id, index = part.get("job_id", ""), int(part.get("index", 0))
        try:
            if "batch_id" not in part and part.get("submission_token") == token:
                self._store.record_batch(job_id, index, keep)
                changes: BatchRecord = {"batch_id": keep["id"]}
            elif "batch_id" in part and part.get("pending_token") == token:
                changes = resubmitted_to(part, keep)
                self._store.update_batch(
                    job_id, index, changes, expected_version=int(part["version"])
                )
            else:
                logger.info(
                    "batches share a token their part does not launch",
                    extra={"job_id": job_id, "part": index, "batch_ids": [b["id"] for b in group]},
                )
                return None
        except StaleRecordError:
            return None  # its launch recorded one meanwhile: the next sweep settles the rest
        logger.warning(
            "recorded one of the twins of an unfinished launch",
            extra={"job_id": job_id, "part": index, "kept": keep["id"]},
        )
        return {**part, **changes}

    def _cancel(self, batch_id: str) -> bool:
        try:
            self._api.cancel_batch(batch_id)
        except OpenAIError:
            logger.exception("could not cancel a duplicate batch", extra={"batch_id": batch_id})
            self._metrics.add_metric("DuplicateSweepFailed", MetricUnit.Count, 1)
            return False
        return True


def _keeping_order(batch: Batch) -> tuple[bool, int, int, str]:
    """Which twin to keep first: a live one, then the one that ran the most (what it ran was
    paid for), then the oldest (the furthest along)."""
    return (batch["status"] in _LEFT_ALONE, -requests_run(batch), batch["created_at"], batch["id"])


def _has_batch(item: BatchRecord) -> bool:
    return "batch_id" in item and "created_at" in (item.get("openai") or {})
