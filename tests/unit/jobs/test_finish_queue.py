"""The finish queue's decisions: ready jobs take turns, oldest attempt first; a failure, or a
killed attempt, is counted; after N in a row the job is set aside as needs_attention, with one
email, and ticks stop working on it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from batchdrop.errors import StaleRecordError
from batchdrop.jobs.finish import FINISH_RESERVE_SECONDS
from batchdrop.jobs.finish_queue import KILLED
from tests.support import Killed
from tests.unit.fakes.batch_api import refused
from tests.unit.fakes.world import INVOCATION_SECONDS, Options, World

ATTEMPTS = 3


@pytest.fixture
def world() -> World:
    return World(Options(finish_attempts_before_attention=ATTEMPTS))


def ready_job(world: World, key: str) -> str:
    """A job whose one batch has completed."""
    job_id = world.submit(key, 2).job_id
    world.api.complete(str(world.store.part(job_id, 0)["batch_id"]))
    return job_id


def downloads_fail(world: World, times: int = 1) -> None:
    world.api.fail_next("file_stream", refused(503, "server_error"), times=times)


class RecordingFinisher:
    """The real finisher, with the order of the jobs it was asked to finish."""

    def __init__(self, world: World) -> None:
        self._real = world.finisher()
        self.order: list[str] = []

    def finish(self, job_id: str, time_left: Callable[[], float]) -> str:
        self.order.append(job_id)
        return self._real.finish(job_id, time_left)


def test_a_job_that_fails_to_finish_does_not_hold_up_another(world: World) -> None:
    bad, good = sorted([ready_job(world, "requests/a.jsonl"), ready_job(world, "requests/b.jsonl")])
    downloads_fail(world)  # the first download is the first job's

    summary = world.tick()

    assert summary.finished_jobs == {bad: "error", good: "completed"}
    failed = world.store.job(bad)
    assert (failed["status"], failed["finish_failures"]) == ("active", 1)
    assert "503" in failed["last_finish_error"]
    assert "finish_attempt_until" not in failed  # the attempt ended, with its outcome
    assert world.metrics.counts["FinishFailed"] == 1
    assert world.publisher.statuses() == ["completed"]


def test_the_job_that_failed_last_waits_behind_one_never_tried(world: World) -> None:
    bad = ready_job(world, "requests/a.jsonl")
    downloads_fail(world)
    world.tick()
    later = sorted(ready_job(world, f"requests/late{n}.jsonl") for n in range(3))
    finisher = RecordingFinisher(world)

    world.poller(finisher=finisher).tick(lambda: INVOCATION_SECONDS)

    assert finisher.order == [*later, bad]


def test_a_success_clears_the_count_of_failures(world: World) -> None:
    job_id = ready_job(world, "requests/a.jsonl")
    downloads_fail(world, times=ATTEMPTS - 1)
    for _ in range(ATTEMPTS - 1):
        assert world.tick().finished_jobs == {job_id: "error"}

    assert world.tick().finished_jobs == {job_id: "completed"}
    job = world.store.job(job_id)
    assert job["finish_failures"] == 0
    assert "last_finish_error" not in job


def test_n_failures_in_a_row_set_the_job_aside_with_one_email_and_the_metric(
    world: World,
) -> None:
    job_id = ready_job(world, "requests/held up.jsonl")
    downloads_fail(world, times=1000)

    results = [world.tick().finished_jobs for _ in range(ATTEMPTS)]

    assert results == [{job_id: "error"}] * (ATTEMPTS - 1) + [{job_id: "needs_attention"}]
    job = world.store.job(job_id)
    assert (job["status"], job["finish_failures"]) == ("needs_attention", ATTEMPTS)
    assert "expires_at" not in job  # kept, not expiring
    assert list(world.store.active_batches()) == []  # ticks stop retrying it
    assert world.store.part(job_id, 0)["parked_sk"]  # where `batchdrop retry` puts it back
    (email,) = world.publisher.sent
    assert email.attributes["status"] == "needs_attention"
    assert "held up.jsonl needs attention" in email.subject
    assert (world.metrics.counts["FinishFailed"], world.metrics.counts["JobsNeedingAttention"]) == (
        ATTEMPTS,
        1,
    )

    calls = len(world.api.calls)
    for _ in range(3):
        assert world.tick().finished_jobs == {}
    assert len(world.api.calls) == calls  # no more work on it
    assert len(world.publisher.sent) == 1


def test_a_set_aside_cut_short_is_completed_by_the_next_turn(world: World) -> None:
    job_id = ready_job(world, "requests/a.jsonl")
    downloads_fail(world, times=1000)
    for _ in range(ATTEMPTS - 1):
        world.tick()

    def killed(*_args: object) -> None:
        raise Killed("the invocation ended mid set-aside")

    world.store.before("park_batches", killed)
    with pytest.raises(Killed):
        world.tick()
    assert world.store.job(job_id)["status"] == "needs_attention"
    assert len(list(world.store.active_batches())) == 1

    assert world.tick().finished_jobs == {job_id: "needs_attention"}
    assert list(world.store.active_batches()) == []
    assert world.publisher.statuses() == ["needs_attention"]
    assert world.metrics.counts["JobsNeedingAttention"] == 1


def test_a_killed_attempt_is_left_alone_until_its_deadline_then_counted_as_a_failure(
    world: World,
) -> None:
    bad, good = sorted([ready_job(world, "requests/a.jsonl"), ready_job(world, "requests/b.jsonl")])
    world.api.fail_next("file_stream", Killed("out of memory"))
    with pytest.raises(Killed):
        world.tick()  # the invocation dies: nothing after the bad job's turn runs
    assert world.store.job(good)["status"] == "active"
    assert "finish_attempt_until" in world.store.job(bad)

    world.clock.advance(60)
    assert world.tick().finished_jobs == {good: "completed"}  # its deadline is not past yet

    world.clock.advance(INVOCATION_SECONDS)
    assert world.tick().finished_jobs == {bad: "completed"}
    assert world.metrics.counts["FinishFailed"] == 1
    assert world.store.job(bad)["finish_failures"] == 0  # the success cleared it


def test_killed_attempts_count_towards_needs_attention(world: World) -> None:
    job_id = ready_job(world, "requests/a.jsonl")
    world.api.fail_next("file_stream", Killed("out of memory"), times=1000)
    with pytest.raises(Killed):
        world.tick()
    for _ in range(ATTEMPTS - 1):
        world.clock.advance(INVOCATION_SECONDS)
        with pytest.raises(Killed):
            world.tick()

    world.clock.advance(INVOCATION_SECONDS)
    assert world.tick().finished_jobs == {job_id: "needs_attention"}
    job = world.store.job(job_id)
    assert job["finish_failures"] == ATTEMPTS
    assert job["last_finish_error"] == KILLED


def test_an_outcome_email_sns_refuses_ends_in_needs_attention_without_a_loop(
    world: World,
) -> None:
    job_id = ready_job(world, "requests/a.jsonl")
    world.publisher.refuse = lambda notice: notice.attributes["status"] == "completed"

    for _ in range(ATTEMPTS + 2):
        world.tick()

    job = world.store.job(job_id)
    assert job["status"] == "needs_attention"
    assert job["notice_outcome"]["state"] == "refused"
    assert world.publisher.attempts == 2  # the outcome once, the needs-attention email once
    assert world.publisher.statuses() == ["needs_attention"]


def test_a_needs_attention_email_that_is_refused_too_still_sets_the_job_aside(
    world: World,
) -> None:
    job_id = ready_job(world, "requests/a.jsonl")
    world.publisher.refuse = lambda _notice: True

    for _ in range(ATTEMPTS + 2):
        world.tick()

    assert world.store.job(job_id)["status"] == "needs_attention"
    assert list(world.store.active_batches()) == []
    assert world.publisher.attempts == 2
    assert world.metrics.counts["JobsNeedingAttention"] == 1
    assert world.metrics.counts["NoticesRefused"] == 1


def test_no_turn_starts_without_room_for_a_finish(world: World) -> None:
    job_id = ready_job(world, "requests/a.jsonl")
    world.tick(lambda: 30.0)  # the batch is recorded final, the job waits
    left = iter([INVOCATION_SECONDS, INVOCATION_SECONDS, FINISH_RESERVE_SECONDS - 1])

    summary = world.tick(lambda: next(left, FINISH_RESERVE_SECONDS - 1))

    assert summary.finished_jobs == {}
    assert "finish_attempted_at" not in world.store.job(job_id)  # no attempt was begun
    assert world.tick().finished_jobs == {job_id: "completed"}


class OvertakenFinisher:
    """A finish whose outcome an overlapping invocation recorded first."""

    def finish(self, job_id: str, time_left: Callable[[], float]) -> str:  # noqa: ARG002
        raise StaleRecordError(f"job {job_id} changed underneath us")


def test_an_outcome_recorded_first_by_another_invocation_is_no_failure(world: World) -> None:
    job_id = ready_job(world, "requests/a.jsonl")
    downloads_fail(world)
    world.tick()

    summary = world.poller(finisher=OvertakenFinisher()).tick(lambda: INVOCATION_SECONDS)

    assert summary.finished_jobs == {}
    job = world.store.job(job_id)
    assert job["finish_failures"] == 1  # neither counted again nor cleared
    assert "finish_attempt_until" not in job  # the attempt is closed


def test_a_job_still_submitting_gets_no_turn(world: World) -> None:
    job_id = ready_job(world, "requests/a.jsonl")
    world.store.update_job(job_id, {"status": "submitting"})
    finisher = RecordingFinisher(world)

    assert world.poller(finisher=finisher).tick(lambda: INVOCATION_SECONDS).finished_jobs == {}
    assert finisher.order == []
