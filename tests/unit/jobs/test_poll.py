"""The Poller's decisions, one tick at a time: what a batch's change is recorded as, when a
batch that hit the enqueued-token limit goes again, what a cancel does to a waiting batch,
one warning for a stuck batch, and what a tick leaves for the next when time runs short."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from batchdrop.domain.limits import Limits
from batchdrop.jobs.poll import (
    LAUNCH_LEASE_SECONDS,
    REFRESH_RESERVE_SECONDS,
    TOKEN_LIMIT_FIRST_WAIT_SECONDS,
    TOKEN_LIMIT_MAX_RESUBMITS,
    TOKEN_LIMIT_MAX_WAIT_SECONDS,
    TickSummary,
)
from batchdrop.records import openai_fields
from tests.support import Crash
from tests.unit.fakes.batch_api import ambiguous
from tests.unit.fakes.world import Options, World

TOKEN_LIMIT = "token_limit_exceeded"
STUCK_AFTER = 120 * 60


def submitted(world: World, key: str = "requests/chat.jsonl", requests: int = 3) -> str:
    outcome = world.submit(key, requests)
    return outcome.job_id


def batch_of(world: World, job_id: str, index: int = 0) -> str:
    return str(world.store.part(job_id, index)["batch_id"])


def cancel(world: World, job_id: str) -> None:
    """What `batchdrop cancel` records: the job first, then each of its batches."""
    world.store.update_job(job_id, {"cancel_requested": True})
    for part in world.parts(job_id):
        world.store.update_batch(job_id, int(part["index"]), {"cancel_requested": True})


# --- a batch's change ---------------------------------------------------------------------------


def test_a_tick_with_nothing_active_calls_nobody(world: World) -> None:
    summary = world.tick()

    assert summary.active == 0
    assert world.api.calls == []


def test_a_live_batch_that_moved_on_is_recorded_and_its_job_waits(world: World) -> None:
    job_id = submitted(world)
    world.api.progress(batch_of(world, job_id), "in_progress")

    summary = world.tick()
    again = world.tick()

    assert (summary.changed, again.changed, again.refreshed) == (1, 0, 1)
    part = world.store.part(job_id, 0)
    assert (part["status"], part["openai"]["status"]) == ("in_progress", "in_progress")
    assert "final" not in part
    assert summary.finished_jobs == {}


def test_a_job_is_finished_only_once_every_one_of_its_batches_is_final() -> None:
    world = World(Options(limits=Limits(max_requests=2)))
    job_id = submitted(world, requests=4)
    world.api.complete(batch_of(world, job_id, 0))

    assert world.tick().finished_jobs == {}
    assert world.store.part(job_id, 0)["final"] is True

    world.api.complete(batch_of(world, job_id, 1))
    assert world.tick().finished_jobs == {job_id: "completed"}


def test_a_batch_recorded_already_ended_is_still_judged_final(world: World) -> None:
    """Adopted after it had completed: its record says "completed" from the start."""
    job_id = submitted(world)
    batch_id = batch_of(world, job_id)
    world.api.complete(batch_id)
    batch = world.api.retrieve_batch(batch_id)
    world.store.update_batch(job_id, 0, {"status": "completed", "openai": openai_fields(batch)})

    summary = world.tick()

    assert summary.finished_jobs == {job_id: "completed"}


def test_a_change_another_tick_recorded_first_is_not_recorded_twice(world: World) -> None:
    job_id = submitted(world)
    world.api.complete(batch_of(world, job_id))

    def overlapping_tick(*_args: object) -> None:
        world.store.update_batch(job_id, 0, {"status": "completed"})  # moves the version on

    world.store.before("update_batch", overlapping_tick)
    summary = world.tick()

    assert (summary.changed, summary.errors, summary.refreshed) == (0, 0, 1)
    assert summary.finished_jobs == {}  # the next tick judges the batch afresh
    assert world.tick().finished_jobs == {job_id: "completed"}


def test_a_refresh_that_fails_leaves_its_batch_active_and_the_others_go_on(world: World) -> None:
    failing = submitted(world, "requests/a.jsonl")
    fine = submitted(world, "requests/b.jsonl")
    world.api.complete(batch_of(world, failing))
    world.api.complete(batch_of(world, fine))
    world.api.fail_next("retrieve_batch", ambiguous(503, "server_error"))

    summary = world.tick()

    assert (summary.errors, summary.refreshed) == (1, 1)
    assert len(summary.finished_jobs) == 1
    left = next(job for job in (failing, fine) if job not in summary.finished_jobs)
    assert world.store.job(left)["status"] == "active"
    assert world.tick().finished_jobs == {left: "completed"}


# --- the enqueued-token limit -------------------------------------------------------------------


def test_a_batch_failed_on_the_token_limit_waits_then_goes_again_with_a_new_token(
    world: World,
) -> None:
    job_id = submitted(world)
    first = batch_of(world, job_id)
    world.api.fail(first, TOKEN_LIMIT)

    summary = world.tick()

    part = world.store.part(job_id, 0)
    assert part["retry_at"] == world.store.now() + TOKEN_LIMIT_FIRST_WAIT_SECONDS
    assert "final" not in part
    assert (summary.changed, summary.finished_jobs) == (1, {})
    assert world.publisher.sent == []  # a failure that is retried is not the outcome

    world.clock.advance(TOKEN_LIMIT_FIRST_WAIT_SECONDS - 1)
    assert world.tick().resubmitted == 0
    assert world.api.count("create_batch") == 1

    world.clock.advance(1)
    assert world.tick().resubmitted == 1

    part = world.store.part(job_id, 0)
    second = part["batch_id"]
    assert second != first
    assert (part["previous_batch_ids"], part["resubmits"], part["status"]) == (
        [first],
        1,
        "validating",
    )
    assert not {"retry_at", "pending_token", "pending_since"} & part.keys()
    tokens = [world.api.batches[b]["metadata"]["submission_token"] for b in (first, second)]
    assert tokens[0] != tokens[1]
    assert world.api.batches[second]["input_file_id"] == part["file_id"]  # the same file


def test_token_limit_waits_double_up_to_a_cap_and_the_last_failure_is_final(
    world: World,
) -> None:
    job_id = submitted(world)
    waits = []
    for _ in range(TOKEN_LIMIT_MAX_RESUBMITS):
        world.api.fail(batch_of(world, job_id), TOKEN_LIMIT)
        world.tick()
        wait = world.store.part(job_id, 0)["retry_at"] - world.store.now()
        waits.append(wait)
        world.clock.advance(wait)
        assert world.tick().resubmitted == 1

    world.api.fail(batch_of(world, job_id), TOKEN_LIMIT)
    summary = world.tick()

    assert waits == [
        min(TOKEN_LIMIT_FIRST_WAIT_SECONDS * 2**n, TOKEN_LIMIT_MAX_WAIT_SECONDS)
        for n in range(TOKEN_LIMIT_MAX_RESUBMITS)
    ]
    assert waits[-1] == TOKEN_LIMIT_MAX_WAIT_SECONDS
    assert summary.finished_jobs == {job_id: "failed"}
    assert world.api.count("create_batch") == 1 + TOKEN_LIMIT_MAX_RESUBMITS
    assert world.metrics.counts["BatchesFailed"] == 1  # only the failure that is final


def test_a_resubmission_interrupted_after_its_token_was_recorded_is_left_then_adopted(
    world: World,
) -> None:
    """The token is recorded before the create: a tick that crashed in between leaves a part
    another tick must not create for while it may still be launching, then adopts by it."""
    job_id = submitted(world)
    world.api.fail(batch_of(world, job_id), TOKEN_LIMIT)
    world.tick()
    world.clock.advance(TOKEN_LIMIT_FIRST_WAIT_SECONDS)
    world.api.fail_next("create_batch", Crash("the tick died mid-create"), takes_effect=True)

    assert world.tick().errors == 1
    landed = list(world.api.batches)[-1]
    token = world.store.part(job_id, 0)["pending_token"]
    assert world.api.batches[landed]["metadata"]["submission_token"] == token

    world.clock.advance(LAUNCH_LEASE_SECONDS - 1)
    assert world.tick().resubmitted == 0
    world.clock.advance(1)
    assert world.tick().resubmitted == 1

    assert world.store.part(job_id, 0)["batch_id"] == landed
    assert world.api.count("create_batch") == 2  # the first, and the one that landed


# --- cancelling ---------------------------------------------------------------------------------


def test_cancelling_a_batch_that_waits_for_token_capacity_ends_it_without_a_resubmission(
    world: World,
) -> None:
    job_id = submitted(world)
    world.api.fail(batch_of(world, job_id), TOKEN_LIMIT)
    world.tick()
    cancel(world, job_id)

    summary = world.tick()

    part = world.store.part(job_id, 0)
    assert (part["status"], part["final"]) == ("cancelled", True)
    assert "retry_at" not in part
    assert summary.finished_jobs == {job_id: "cancelled"}
    world.clock.advance(TOKEN_LIMIT_MAX_WAIT_SECONDS)
    world.tick()
    assert world.api.count("create_batch") == 1
    assert world.publisher.statuses() == ["cancelled"]


def test_cancelling_a_waiting_batch_whose_resubmission_landed_adopts_and_cancels_it(
    world: World,
) -> None:
    job_id = submitted(world)
    world.api.fail(batch_of(world, job_id), TOKEN_LIMIT)
    world.tick()
    world.clock.advance(TOKEN_LIMIT_FIRST_WAIT_SECONDS)
    world.api.fail_next("create_batch", Crash("the tick died mid-create"), takes_effect=True)
    world.tick()
    landed = list(world.api.batches)[-1]
    cancel(world, job_id)

    assert world.tick().changed == 1  # adopted: the part now waits on the landed batch
    assert world.store.part(job_id, 0)["batch_id"] == landed
    world.tick()

    assert world.api.count("cancel_batch") == 1
    assert world.api.batches[landed]["status"] == "cancelling"
    assert world.store.part(job_id, 0)["status"] == "cancelling"
    assert world.api.count("create_batch") == 2


def test_a_cancel_request_cancels_a_live_batch_on_openai_once(world: World) -> None:
    job_id = submitted(world)
    cancel(world, job_id)

    world.tick()
    world.tick()

    assert world.api.count("cancel_batch") == 1
    assert world.store.part(job_id, 0)["status"] == "cancelling"


# --- a stuck batch ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["validating", "finalizing"])
def test_a_stuck_batch_warns_once_and_polling_goes_on(status: str, world: World) -> None:
    job_id = submitted(world)
    batch_id = batch_of(world, job_id)
    if status == "finalizing":
        world.api.progress(batch_id, "finalizing")

    world.clock.advance(STUCK_AFTER - 1)
    world.tick()
    assert world.publisher.sent == []
    for _ in range(3):
        world.clock.advance(60)
        world.tick()

    (warning,) = world.publisher.sent
    assert f"has been {status} for 120 minutes" in warning.subject
    assert batch_id in warning.body
    assert warning.attributes["status"] == "stuck"
    world.api.complete(batch_id)
    assert world.tick().finished_jobs == {job_id: "completed"}


def test_a_batch_stuck_in_each_status_in_turn_warns_once_for_each(world: World) -> None:
    job_id = submitted(world)
    batch_id = batch_of(world, job_id)
    world.clock.advance(STUCK_AFTER)
    world.tick()
    world.api.progress(batch_id, "finalizing")
    world.clock.advance(STUCK_AFTER)
    world.tick()
    world.tick()

    assert world.publisher.statuses() == ["stuck", "stuck"]
    assert ["validating" in n.subject for n in world.publisher.sent] == [True, False]


def test_a_stuck_warning_sns_refuses_is_counted_and_never_stops_polling(world: World) -> None:
    job_id = submitted(world)
    world.publisher.refuse = lambda notice: notice.attributes["status"] == "stuck"
    world.clock.advance(STUCK_AFTER)

    world.tick()
    world.tick()

    assert world.publisher.attempts == 1
    assert world.metrics.counts["NoticesRefused"] == 2
    world.api.complete(batch_of(world, job_id))
    assert world.tick().finished_jobs == {job_id: "completed"}


# --- time running short -------------------------------------------------------------------------


def test_with_too_little_time_left_a_tick_defers_every_batch_and_calls_nobody(
    world: World,
) -> None:
    job_id = submitted(world)
    world.api.complete(batch_of(world, job_id))
    calls = len(world.api.calls)

    summary = world.tick(lambda: REFRESH_RESERVE_SECONDS - 1)

    assert (summary.active, summary.deferred, summary.refreshed) == (1, 1, 0)
    assert summary.finished_jobs == {}
    assert len(world.api.calls) == calls
    assert world.tick().finished_jobs == {job_id: "completed"}  # the next tick does it


def test_with_time_to_refresh_but_not_to_finish_the_job_waits_for_the_next_tick(
    world: World,
) -> None:
    job_id = submitted(world)
    world.api.complete(batch_of(world, job_id))

    summary = world.tick(lambda: 30.0)

    assert summary.changed == 1
    assert world.store.part(job_id, 0)["final"] is True
    assert summary.finished_jobs == {}
    assert world.api.count("list_batches") == 0  # nor is there time to sweep for duplicates
    assert world.store.job(job_id)["status"] == "active"
    assert world.tick().finished_jobs == {job_id: "completed"}


# --- a follow-up whose launch was interrupted ---------------------------------------------------


def _follow_up_left_unlaunched(world: World) -> tuple[str, int]:
    """A follow-up round recorded its part, then every create failed: no batch is recorded."""
    job_id = submitted(world)
    world.store.add_follow_up(
        job_id,
        1,
        {"kind": "follow_up", "round": 1, "file_id": world.store.part(job_id, 0)["file_id"],
         "submission_token": "tok-1", "request_count": 3, "status": "uploaded"},
    )  # fmt: skip
    return job_id, 1


def _resubmission_left_unlaunched(world: World) -> tuple[str, int]:
    """A token-limit resubmission recorded its token, then its tick died before the create."""
    job_id = submitted(world)
    world.api.fail(batch_of(world, job_id), TOKEN_LIMIT)
    world.tick()
    world.clock.advance(TOKEN_LIMIT_FIRST_WAIT_SECONDS)
    world.api.fail_next("create_batch", Crash("the tick died before OpenAI had the create"))
    assert world.tick().errors == 1
    return job_id, 0


def test_a_follow_up_recorded_without_its_batch_is_launched_once_its_lease_lapses(
    world: World,
) -> None:
    job_id, index = _follow_up_left_unlaunched(world)

    world.clock.advance(LAUNCH_LEASE_SECONDS - 1)
    world.tick()
    assert "batch_id" not in world.store.part(job_id, index)
    world.clock.advance(1)
    world.tick()

    batch_id = world.store.part(job_id, index)["batch_id"]
    assert world.api.batches[batch_id]["metadata"]["submission_token"] == "tok-1"
    assert world.api.count("create_batch") == 2


LEFT_UNLAUNCHED = [_follow_up_left_unlaunched, _resubmission_left_unlaunched]


@pytest.mark.parametrize("left_unlaunched", LEFT_UNLAUNCHED)
def test_a_tick_that_overlaps_the_one_taking_over_a_lapsed_launch_creates_nothing(
    left_unlaunched: Callable[[World], tuple[str, int]], world: World
) -> None:
    """Seed 5021 of the soak: two ticks found the same launch lapsed, both looked for its
    batch before either had created it, and both created one: two live batches, one token."""
    job_id, index = left_unlaunched(world)
    world.clock.advance(LAUNCH_LEASE_SECONDS)
    creates = world.api.count("create_batch")
    overlapping: list[TickSummary] = []
    world.api.before("create_batch", lambda: overlapping.append(world.tick()))

    world.tick()

    assert len(overlapping) == 1  # the second tick ran while the first was creating
    assert world.api.count("create_batch") == creates + 1
    assert world.store.part(job_id, index)["batch_id"] == list(world.api.batches)[-1]


@pytest.mark.parametrize("left_unlaunched", LEFT_UNLAUNCHED)
def test_of_two_ticks_that_find_a_launch_lapsed_only_the_first_to_take_it_creates(
    left_unlaunched: Callable[[World], tuple[str, int]], world: World
) -> None:
    """Both read the part before either took the launch over: the slower one's take is
    refused by the record's version, so it leaves the launch to the other."""
    job_id, index = left_unlaunched(world)
    world.clock.advance(LAUNCH_LEASE_SECONDS)
    creates = world.api.count("create_batch")
    faster: list[TickSummary] = []
    world.store.before("update_batch", lambda *_, **__: faster.append(world.tick()))

    slower = world.tick()

    assert len(faster) == 1  # it took the launch just before the slower tick's own take
    assert (faster[0].changed, slower.changed) == (1, 0)
    assert world.api.count("create_batch") == creates + 1
    assert world.store.part(job_id, index)["batch_id"] == list(world.api.batches)[-1]


def test_a_duplicate_that_ran_requests_is_adopted_not_sent_again_after_the_token_limit(
    world: World,
) -> None:
    """Seed 5002 of the soak: the part's create was refused for the token limit, but a create
    that landed late made a duplicate with the same token, which ran one request before the
    sweep cancelled it. The token-limit resubmission must not send that request again: the
    part takes the duplicate as its batch, and only what never ran is left unfinished."""
    world = World(Options(resubmit_unfinished=True))
    job_id = submitted(world, requests=2)
    first = batch_of(world, job_id)
    metadata = world.api.batches[first]["metadata"]
    late = world.api.add_batch(
        metadata=metadata,
        created_at=world.store.now(),
        input_file_id=world.api.batches[first]["input_file_id"],
        endpoint="/v1/chat/completions",
    )["id"]
    world.api.progress(late, "in_progress")
    world.api.fail(first, TOKEN_LIMIT)
    world.tick()  # the part waits for the limit; the sweep cancels the duplicate
    assert world.api.batches[late]["status"] == "cancelling"
    world.api.run_partly(late, "cancelled", ran=1)  # req-0 ran before the cancel took
    world.clock.advance(TOKEN_LIMIT_FIRST_WAIT_SECONDS)

    for _ in range(6):
        world.tick()
        world.clock.advance(60)
        for batch_id, batch in list(world.api.batches.items()):
            if batch["status"] == "validating":
                world.api.complete(batch_id)

    sent = [
        request["custom_id"]
        for batch_id in world.api.batches
        if batch_id not in (first, late)
        for request in world.api.input_lines(batch_id)
    ]
    assert "req-0" not in sent  # it ran in the duplicate, and was paid for there
    assert sent == ["req-1"]  # only what never ran went again
    job = world.store.job(job_id)
    assert (job["status"], job["succeeded"], job["unfinished"]) == ("completed", 2, 0)


def test_a_live_duplicate_of_a_part_waiting_out_the_token_limit_is_kept_and_adopted(
    world: World,
) -> None:
    job_id = submitted(world, requests=2)
    first = batch_of(world, job_id)
    world.api.fail(first, TOKEN_LIMIT)
    world.tick()  # the part now waits out the limit
    late = world.api.add_batch(
        metadata=world.api.batches[first]["metadata"],
        created_at=world.store.now(),
        input_file_id=world.api.batches[first]["input_file_id"],
        endpoint="/v1/chat/completions",
    )["id"]
    world.api.progress(late, "in_progress")

    world.tick()  # found by the sweep and kept (this tick's records were read before it)
    world.tick()  # adopted

    part = world.store.part(job_id, 0)
    assert (part["batch_id"], part["previous_batch_ids"]) == (late, [first])
    assert "retry_at" not in part
    assert world.api.batches[late]["status"] == "in_progress"  # not cancelled
    world.api.complete(late)
    assert world.tick().finished_jobs == {job_id: "completed"}
    assert world.api.count("create_batch") == 1  # never resubmitted
    assert [r["status"] for r in world.result(job_id)] == ["succeeded", "succeeded"]
