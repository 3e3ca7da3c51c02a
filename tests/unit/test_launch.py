"""BatchLauncher.create_or_adopt after a create whose outcome is unknown: it waits for the
create to land before looking, looks more than once, and bounds what one call may spend."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from batchdrop import runtime
from batchdrop.adapters.openai_api import OpenAIError, RetryPolicy
from batchdrop.jobs.launch import AMBIGUOUS_CREATES_MAX, SETTLE_FRACTIONS, BatchLauncher
from batchdrop.jobs.poll import LAUNCH_LEASE_SECONDS
from local.template_stack import load_template

READ_TIMEOUT = 120.0
TOKEN = "token-1"


class FlakyBatches:
    """Every create fails as if the connection dropped; a create lands only once the list has
    been asked `lands_after_looks` times (None: never)."""

    read_timeout = READ_TIMEOUT

    def __init__(self, lands_after_looks: int | None) -> None:
        self.lands_after_looks = lands_after_looks
        self.creates = 0
        self.looks = 0

    def create_batch(self, *_args: object, **_options: object) -> Any:
        self.creates += 1
        error = OpenAIError(None, "ConnectionError", "connection reset")
        error.ambiguous = True
        raise error

    def list_batches(self) -> Iterator[dict[str, Any]]:
        self.looks += 1
        if self.lands_after_looks is not None and self.looks >= self.lands_after_looks:
            yield {"id": "batch_late", "created_at": 1000, "metadata": {"submission_token": TOKEN}}


def launch(api: FlakyBatches, waits: list[float]) -> dict[str, Any]:
    launcher = BatchLauncher(None, api, RetryPolicy(sleep=waits.append))  # type: ignore[arg-type]
    return launcher.create_or_adopt(
        file_id="file-1",
        endpoint="/v1/chat/completions",
        metadata={"submission_token": TOKEN},
        recorded_at=1000,
        look_first=False,
    )


def test_a_create_that_is_listed_only_at_the_second_look_is_adopted() -> None:
    api = FlakyBatches(lands_after_looks=2)
    waits: list[float] = []

    adopted = launch(api, waits)

    assert adopted["id"] == "batch_late"
    assert api.creates == 1
    assert waits == [READ_TIMEOUT * fraction for fraction in SETTLE_FRACTIONS[:2]]
    assert waits[0] >= READ_TIMEOUT


def test_creates_with_unknown_outcomes_are_bounded_per_call() -> None:
    api = FlakyBatches(lands_after_looks=None)
    waits: list[float] = []

    with pytest.raises(OpenAIError):
        launch(api, waits)

    assert api.creates == AMBIGUOUS_CREATES_MAX
    # Settled and looked after every unknown create but the last, which is left to the
    # caller's own recovery (a Lambda retry, the poll's launch lease).
    assert api.looks == (AMBIGUOUS_CREATES_MAX - 1) * len(SETTLE_FRACTIONS)
    worst = AMBIGUOUS_CREATES_MAX * sum(runtime.openai_timeout) + sum(waits)
    assert worst < 900  # one Lambda invocation, at most


def test_the_poll_launch_lease_outlasts_an_invocation_and_a_late_create() -> None:
    """Another tick takes a launch over once the lease lapses, looking once: by then the
    invocation that began it is over, and its last create has had its timeout twice over."""
    poll = load_template()["Resources"]["PollFunction"]["Properties"]
    read_timeout = runtime.openai_timeout[1]
    assert int(poll["Timeout"]) + 2 * read_timeout <= LAUNCH_LEASE_SECONDS
