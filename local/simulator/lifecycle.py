"""The batch state machine as a pure function of time.

A batch's whole future is fixed when it is created (its scripted outcome, its validation
result, its size); only `release` and `cancel` add facts later. `timeline` turns those facts
into the list of status transitions, and `snapshot_at` reads that list at a given moment.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

OUTCOMES = (
    "completed",
    "expired",
    "token_limit_exceeded",
    "all_failed",
    "stuck_validating",
    "stuck_finalizing",
)
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
CANCELLABLE = frozenset({"validating", "in_progress", "finalizing"})

# Batch object field that records the moment each status was entered.
TIMESTAMP_FIELD = {
    "in_progress": "in_progress_at",
    "finalizing": "finalizing_at",
    "completed": "completed_at",
    "failed": "failed_at",
    "expired": "expired_at",
    "cancelling": "cancelling_at",
    "cancelled": "cancelled_at",
}


@dataclass(frozen=True)
class Timings:
    """Durations in simulated seconds."""

    validating: float = 60.0
    in_progress: float = 600.0
    finalizing: float = 60.0
    completion_window: float = 86400.0

    @property
    def cancelling(self) -> float:
        # OpenAI takes a little while to wind a batch down; reuse the finalizing delay.
        return self.finalizing


@dataclass(frozen=True)
class Outcome:
    kind: str = "completed"
    finished_fraction: float = 0.5
    # How many finished requests (the first in processing order) OpenAI loses: they appear in
    # neither the output nor the error file, as real batches have been seen to do.
    missing_lines: int = 0


# Picks a batch's outcome from its metadata when it is created; None falls back to the queue.
OutcomeChooser = Callable[[dict[str, str] | None], Outcome | None]


class OutcomeQueue:
    """Scripted outcomes for the next created batches, first in first out; or, when a chooser
    is set, picked per batch from its metadata, so that concurrent creates (a soak's many jobs)
    get the outcome scripted for their own job whatever order they arrive in."""

    def __init__(self) -> None:
        self._queue: deque[Outcome] = deque()
        self._lock = threading.Lock()
        self._chooser: OutcomeChooser | None = None

    def choose_with(self, chooser: OutcomeChooser | None) -> None:
        """Pick each created batch's outcome with `chooser` (None: the queue alone)."""
        with self._lock:
            self._chooser = chooser

    def push(
        self, kind: str, count: int = 1, finished_fraction: float = 0.5, missing_lines: int = 0
    ) -> None:
        outcome = checked_outcome(kind, finished_fraction, missing_lines)
        with self._lock:
            self._queue.extend(outcome for _ in range(count))

    def pop(self, metadata: dict[str, str] | None = None) -> Outcome:
        with self._lock:
            chooser = self._chooser
        chosen = chooser(metadata) if chooser is not None else None
        if chosen is not None:
            return checked_outcome(chosen.kind, chosen.finished_fraction, chosen.missing_lines)
        with self._lock:
            return self._queue.popleft() if self._queue else Outcome()

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._queue)


def checked_outcome(kind: str, finished_fraction: float, missing_lines: int) -> Outcome:
    if kind not in OUTCOMES:
        raise ValueError(f"unknown outcome {kind!r}; expected one of {OUTCOMES}")
    if not 0.0 <= finished_fraction <= 1.0:
        raise ValueError("finished_fraction must be within [0, 1]")
    if missing_lines < 0:
        raise ValueError("missing_lines cannot be negative")
    return Outcome(kind, finished_fraction, missing_lines)


@dataclass
class BatchFacts:
    """Everything that decides a batch's course."""

    created_at: float
    outcome: Outcome
    passes_validation: bool
    total: int
    released_at: float | None = None
    cancelled_at: float | None = None


@dataclass(frozen=True)
class Snapshot:
    status: str
    timestamps: dict[str, int]
    total: int  # request_counts.total (0 until the batch is in progress)
    finished: int  # lines that have a result (output or per-line error)
    terminal_at: float | None  # when the current terminal status began, if terminal
    expires_at: int = 0
    transitions: list[tuple[float, str]] = field(default_factory=list)


def timeline(facts: BatchFacts, timings: Timings) -> list[tuple[float, str]]:
    """Every (moment, status) transition the batch will go through."""
    created = facts.created_at
    expires = created + timings.completion_window
    kind = facts.outcome.kind

    validated = created + timings.validating
    if kind == "stuck_validating":
        validated = max(validated, facts.released_at) if facts.released_at else math.inf

    events: list[tuple[float, str]] = [(created, "validating")]
    if validated >= expires:
        events.append((expires, "expired"))
    elif not facts.passes_validation or kind == "token_limit_exceeded":
        events.append((validated, "failed"))
    else:
        events.append((validated, "in_progress"))
        processed = validated + timings.in_progress
        done = processed + timings.finalizing
        if kind == "stuck_finalizing":
            done = max(done, facts.released_at) if facts.released_at else math.inf
        if kind != "expired" and processed < expires:
            events.append((processed, "finalizing"))
        if kind != "expired" and done < expires:
            events.append((done, "completed"))
        else:
            events.append((expires, "expired"))

    if facts.cancelled_at is not None:
        cut = facts.cancelled_at
        events = [(moment, status) for moment, status in events if moment <= cut]
        events.append((cut, "cancelling"))
        events.append((cut + timings.cancelling, "cancelled"))
    return events


def finished_lines(
    facts: BatchFacts, timings: Timings, events: list[tuple[float, str]], now: float
) -> int:
    """How many lines have a result by `now`: grows linearly while in progress."""
    started = next((moment for moment, status in events if status == "in_progress"), None)
    if started is None or now < started:
        return 0
    stop = now
    if facts.cancelled_at is not None:
        stop = min(stop, facts.cancelled_at)
    if facts.outcome.kind == "expired":
        target = math.floor(facts.total * facts.outcome.finished_fraction)
        span = timings.completion_window - (started - facts.created_at)
    else:
        target = facts.total
        span = timings.in_progress
    expiry = next((moment for moment, status in events if status == "expired"), math.inf)
    stop = min(stop, expiry)
    if span <= 0:
        return target
    return min(target, math.floor(target * (stop - started) / span))


def snapshot_at(facts: BatchFacts, timings: Timings, now: float) -> Snapshot:
    events = timeline(facts, timings)
    reached = [(moment, status) for moment, status in events if moment <= now]
    moment, status = reached[-1]
    timestamps = {
        TIMESTAMP_FIELD[name]: int(when) for when, name in reached if name in TIMESTAMP_FIELD
    }
    in_progress = "in_progress_at" in timestamps
    return Snapshot(
        status=status,
        timestamps=timestamps,
        total=facts.total if in_progress else 0,
        finished=finished_lines(facts, timings, events, now),
        terminal_at=moment if status in TERMINAL else None,
        expires_at=int(facts.created_at + timings.completion_window),
        transitions=events,
    )
