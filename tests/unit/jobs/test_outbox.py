"""The outbox: one email per job and kind, across crashes, failures and overlapping senders."""

from __future__ import annotations

import pytest

from batchdrop.errors import NoticeRefused
from batchdrop.jobs.outbox import CLAIM_LEASE_SECONDS
from batchdrop.ports import Notice
from tests.support import Killed
from tests.unit.fakes.world import World

JOB = "job-1"
NOTICE = Notice("batchdrop: x.jsonl completed", "body", {"status": "completed"})


@pytest.fixture
def world() -> World:
    world = World()
    world.store.create_job(JOB, {"status": "active"})
    return world


def test_a_notice_is_published_once_however_often_it_is_sent(world: World) -> None:
    outbox = world.outbox()

    assert [outbox.send_once(JOB, "outcome", NOTICE) for _ in range(3)] == [True] * 3

    assert world.publisher.sent == [NOTICE]
    notice = world.store.job(JOB)["notice_outcome"]
    assert (notice["state"], notice["message_id"]) == ("sent", "message-1")


def test_each_kind_of_notice_is_sent_once_of_its_own(world: World) -> None:
    outbox = world.outbox()

    outbox.send_once(JOB, "outcome", NOTICE)
    outbox.send_once(JOB, "stuck_batch-1_validating", NOTICE)
    outbox.send_once(JOB, "stuck_batch-1_validating", NOTICE)

    assert len(world.publisher.sent) == 2


def test_a_claim_held_by_another_sender_is_left_alone_until_its_lease_lapses(
    world: World,
) -> None:
    """A sender killed mid-publish leaves its claim pending: nobody sends until the claim's
    lease has passed, then the next sender takes it over."""
    world.publisher.fail_next(Killed())
    with pytest.raises(Killed):
        world.outbox().send_once(JOB, "outcome", NOTICE)
    assert world.store.job(JOB)["notice_outcome"]["state"] == "pending"

    world.clock.advance(CLAIM_LEASE_SECONDS)
    assert world.outbox().send_once(JOB, "outcome", NOTICE) is False  # not yet past the lease
    assert world.publisher.sent == []

    world.clock.advance(1)
    assert world.outbox().send_once(JOB, "outcome", NOTICE) is True
    assert world.publisher.sent == [NOTICE]
    assert world.publisher.attempts == 2


def test_a_failed_publish_gives_the_claim_back_so_the_next_call_sends(world: World) -> None:
    world.publisher.fail_next(ConnectionError("SNS unreachable"))

    with pytest.raises(ConnectionError):
        world.outbox().send_once(JOB, "outcome", NOTICE)
    assert "notice_outcome" not in world.store.job(JOB)

    assert world.outbox().send_once(JOB, "outcome", NOTICE) is True
    assert world.publisher.sent == [NOTICE]


def test_a_refused_notice_is_recorded_and_never_published_again(world: World) -> None:
    world.publisher.refuse = lambda _notice: True

    for _ in range(3):
        with pytest.raises(NoticeRefused):
            world.outbox().send_once(JOB, "outcome", NOTICE)

    assert world.publisher.attempts == 1
    notice = world.store.job(JOB)["notice_outcome"]
    assert notice["state"] == "refused"
    assert "InvalidParameter" in notice["reason"]


def test_a_claim_taken_over_meanwhile_is_not_given_back_by_the_slow_sender(world: World) -> None:
    """The slow sender's claim lapsed and another took it over before its publish failed: the
    release is conditional on the claim still being its own, so the new claim stands."""

    def take_over(*_args: object) -> None:
        world.clock.advance(CLAIM_LEASE_SECONDS + 1)
        assert world.store.claim_notice(JOB, "outcome", CLAIM_LEASE_SECONDS) is not None

    world.store.before("release_notice", take_over)
    world.publisher.fail_next(ConnectionError("SNS unreachable"))

    with pytest.raises(ConnectionError):
        world.outbox().send_once(JOB, "outcome", NOTICE)

    assert world.store.job(JOB)["notice_outcome"] == {
        "state": "pending",
        "claimed_at": world.store.now(),
    }
