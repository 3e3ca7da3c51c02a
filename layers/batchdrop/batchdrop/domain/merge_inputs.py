"""What the merge must know of a job's batch records: how each batch ended, and its round.

The merge decides which requests may be sent again from how their batch ended (`fates.py`), so
each part's input goes with its batch's status, each result file with its part or round, and
each follow-up round with whether all of its batches left their absent requests unrun.
"""

from __future__ import annotations

from collections.abc import Sequence

from batchdrop.domain.fates import NOT_RUN_BATCH_STATUSES, RETRYABLE_BATCH_ERRORS, FollowUpRound
from batchdrop.records import BatchRecord


def is_part(record: BatchRecord) -> bool:
    """A part of the dropped file, as against a follow-up batch of its unfinished requests."""
    return bool(record.get("kind", "part") == "part")


def batch_error(record: BatchRecord) -> str | None:
    """A failed batch's first error code (None for any other batch)."""
    if record.get("status") != "failed":
        return None
    data = (record.get("openai", {}).get("errors") or {}).get("data") or []
    codes = [str(error.get("code")) for error in data if error.get("code")]
    return codes[0] if codes else None


def failed_for_good(record: BatchRecord) -> bool:
    """A failed batch whose requests sending again would not help."""
    return record.get("status") == "failed" and batch_error(record) not in RETRYABLE_BATCH_ERRORS


def part_ending(part: BatchRecord, copies: Sequence[BatchRecord]) -> tuple[str, str | None]:
    """How a part's batches ended, taken as one, when duplicates of it ran too: a request in
    none of their files may go again only if none of them could have run it. So a batch that
    ran decides, then one that failed for good, and only then the part's own."""
    held = [part, *(copy for copy in copies if copy["index"] == part["index"])]
    ran = [r for r in held if r.get("status") not in NOT_RUN_BATCH_STATUSES | {"failed"}]
    chosen = (ran or [r for r in held if failed_for_good(r)] or [part])[0]
    return str(chosen["status"]), batch_error(chosen)


def round_of(record: BatchRecord) -> int:
    return int(record.get("round", 0))


def follow_up_rounds(records: Sequence[BatchRecord]) -> list[FollowUpRound]:
    """Rounds 1, 2, ... of follow-ups, each not run when none of its batches ran anything."""
    latest = max((round_of(record) for record in records), default=0)
    return [
        FollowUpRound(
            not_run=all(
                record.get("status") in NOT_RUN_BATCH_STATUSES
                or (record.get("status") == "failed" and not failed_for_good(record))
                for record in records
                if round_of(record) == number
            )
        )
        for number in range(1, latest + 1)
    ]
