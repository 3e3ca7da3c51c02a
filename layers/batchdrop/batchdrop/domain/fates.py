"""A request's fate, and what it is when no result line says: the rule that nothing is paid twice.

Only a request OpenAI reports as not run is `unfinished`, and only an unfinished request is ever
sent again: one whose result says `batch_expired` or `batch_cancelled`, one absent from both
files of an expired or cancelled batch, or one of a batch that failed before running anything
for a reason that clears by itself (`token_limit_exceeded`). A request absent from the files of
a batch that completed may well have run (and been paid for), so it is `unplaced`, with its
reason, and is never sent again automatically. So is every request that a result line may be
about but cannot be tied to: the lines that cannot be read make each absent request of their
batch a candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

NOT_RUN_BATCH_STATUSES = frozenset({"expired", "cancelled"})
# A batch failed with one of these ran nothing, and sending the same requests later may work.
RETRYABLE_BATCH_ERRORS = frozenset({"token_limit_exceeded"})
BATCH_FAILED_CODE = "batch_failed"

# Why a request, or a result line, could not be placed.
MISSING_FROM_RESULTS = "missing_from_results"
MISSING_BESIDE_UNREADABLE = "missing_beside_unreadable_results"
UNREADABLE_RESULT_LINE = "unreadable_result_line"
UNKNOWN_CUSTOM_ID = "unknown_custom_id"

_MESSAGES = {
    MISSING_FROM_RESULTS: "OpenAI's files for a batch that ran hold no result for this request; "
    "it may have run, so it is not sent again.",
    MISSING_BESIDE_UNREADABLE: "OpenAI's files for this request's batch hold lines that could "
    "not be read, and one of them may be this request's; it is not sent again.",
    UNREADABLE_RESULT_LINE: "This request's result line could not be read.",
}


class Status(IntEnum):
    """A request's fate; when one request has several results, the higher value wins."""

    UNFINISHED = 1
    UNPLACED = 2
    FAILED = 3
    SUCCEEDED = 4

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Fate:
    status: Status
    code: str | None  # a failure's code or an unplaced request's reason
    error: dict[str, Any] | None


def unplaced(reason: str) -> Fate:
    return Fate(Status.UNPLACED, reason, {"code": reason, "message": _MESSAGES[reason]})


def without_result(batch_status: str, batch_error: str | None, unreadable_beside: bool) -> Fate:
    """The fate of a request with no result line, from how its batch ended."""
    if batch_status == "failed":
        code = batch_error or BATCH_FAILED_CODE
        error = {"code": code, "message": "The batch failed before this request ran."}
        retryable = code in RETRYABLE_BATCH_ERRORS
        return Fate(Status.UNFINISHED if retryable else Status.FAILED, code, error)
    if unreadable_beside:
        return unplaced(MISSING_BESIDE_UNREADABLE)
    if batch_status in NOT_RUN_BATCH_STATUSES:
        return Fate(Status.UNFINISHED, None, None)
    return unplaced(MISSING_FROM_RESULTS)


@dataclass(frozen=True)
class FollowUpRound:
    """A round of follow-up batches, which held every request unfinished before it."""

    # Every batch of the round ended without running its absent requests (expired, cancelled,
    # or failed for a retryable reason). When one completed, an absent request may have run.
    not_run: bool
    unreadable_lines: bool = False


def after_follow_ups(unfinished_in: int, rounds: Sequence[FollowUpRound]) -> str | None:
    """For a request unfinished after round 0, the reason it is unplaced after the follow-up
    rounds, or None while it is still unfinished. `unfinished_in` has bit r set when a result of
    round r said it never ran. (A better result in any round is never passed here.)"""
    for number, follow_up in enumerate(rounds, start=1):
        if unfinished_in & (1 << number):
            continue  # this round reported it as not run, explicitly
        if follow_up.unreadable_lines:
            return MISSING_BESIDE_UNREADABLE
        if not follow_up.not_run:
            return MISSING_FROM_RESULTS
    return None
