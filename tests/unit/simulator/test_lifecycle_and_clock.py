"""Direct checks of the pure pieces: the lifecycle timeline, clocks, key masking."""

from __future__ import annotations

import pytest

from local.simulator import ManualClock, ScaledClock, Timings
from local.simulator.errors import incorrect_api_key, mask_key
from local.simulator.lifecycle import BatchFacts, Outcome, snapshot_at

T = Timings(validating=10, in_progress=100, finalizing=10, completion_window=1000)


def _facts(kind: str = "completed", passes: bool = True) -> BatchFacts:
    return BatchFacts(
        created_at=0.0, outcome=Outcome(kind, 0.5), passes_validation=passes, total=10
    )


@pytest.mark.parametrize(
    ("now", "status", "finished"),
    [
        (0, "validating", 0),
        (10, "in_progress", 0),
        (60, "in_progress", 5),
        (110, "finalizing", 10),
        (120, "completed", 10),
    ],
)
def test_completed_timeline(now: float, status: str, finished: int) -> None:
    snap = snapshot_at(_facts(), T, now)
    assert (snap.status, snap.finished) == (status, finished)


def test_stuck_validating_past_the_window_expires() -> None:
    snap = snapshot_at(_facts("stuck_validating"), T, 1000)
    assert (snap.status, snap.timestamps) == ("expired", {"expired_at": 1000})


def test_cancel_during_validating_never_starts() -> None:
    facts = _facts()
    facts.cancelled_at = 5
    snap = snapshot_at(facts, T, 15)
    assert (snap.status, snap.total, snap.finished) == ("cancelled", 0, 0)
    assert snap.timestamps == {"cancelling_at": 5, "cancelled_at": 15}


def test_manual_clock_only_moves_forward() -> None:
    clock = ManualClock(start=100)
    assert clock.advance(5) == 105
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)


def test_scaled_clock_runs_faster_than_real_time() -> None:
    clock = ScaledClock(speed=1000, start=0)
    first = clock.now()
    while clock.now() == first:
        pass
    assert clock.now() > first


def test_rejected_keys_are_masked() -> None:
    assert mask_key("sk-abcdefghijklmnop1234") == "sk-...1234"
    assert mask_key("short") == "*****"
    assert "abcdefghijklmnop" not in incorrect_api_key("sk-abcdefghijklmnop1234").message
