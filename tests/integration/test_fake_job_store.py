"""The unit tests' in-memory job store keeps the DynamoDB store's rules: the same scripts of
calls, run against both, see the same records, the same refusals and the same index."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest

from batchdrop.adapters.job_store import JobStore, StaleRecordError
from local.template_stack import DeployedStack
from tests.unit.fakes.clock import FakeClock
from tests.unit.fakes.job_store import FakeJobStore

JOB = "job-1"
Script = Callable[[Any, FakeClock], list[Any]]


def attempt(call: Callable[[], Any]) -> Any:
    """What a call returned, or "stale" when its condition did not hold."""
    try:
        result = call()
    except StaleRecordError:
        return "stale"
    return list(result) if hasattr(result, "__next__") else result


def submission(store: Any, clock: FakeClock) -> list[Any]:
    seen = [
        attempt(lambda: store.create_job(JOB, {"status": "submitting", "lease_until": 0})),
        attempt(lambda: store.create_job(JOB, {"status": "submitting"})),
        attempt(lambda: store.take_submit_lease(JOB, 600, resume=True)),
        attempt(lambda: store.take_submit_lease(JOB, 600, resume=False)),
    ]
    held_until = store.get_job(JOB)["lease_until"]
    store.release_submit_lease(JOB, held_until + 1, clock() + 5, "not ours")
    store.release_submit_lease(JOB, held_until, int(clock()) + 5, "OpenAIError: 503")
    seen.append(store.get_job(JOB))
    clock.advance(5)
    seen += [
        attempt(lambda: store.take_submit_lease(JOB, 600, resume=True)),
        attempt(lambda: store.submitting_jobs()),
        attempt(lambda: store.update_job(JOB, {"status": "active"}, expected_status="rejected")),
        attempt(lambda: store.update_job(JOB, {"status": "active"}, expected_status="submitting")),
        attempt(lambda: store.take_submit_lease(JOB, 600, resume=True)),
        attempt(lambda: store.submitting_jobs()),
        store.get_job(JOB),
        attempt(lambda: store.update_job(JOB, {"status": "done"}, finished=True)),
        attempt(lambda: store.update_job("missing", {"status": "done"})),
        store.get_job(JOB),
    ]
    return seen


def batches(store: Any, clock: FakeClock) -> list[Any]:
    store.create_job(JOB, {"status": "active", "cancel_requested": True})
    batch = {"id": "batch-1", "status": "validating", "created_at": int(clock()), "metadata": {}}
    seen = [
        attempt(lambda: store.record_file(JOB, 0, {"file_id": "file-1", "note": None})),
        attempt(lambda: store.record_batch(JOB, 0, batch)),
        attempt(lambda: store.record_batch(JOB, 0, batch)),  # the same batch again: a no-op
        attempt(lambda: store.record_batch(JOB, 0, {**batch, "id": "batch-9"})),
        attempt(lambda: store.record_file(JOB, 0, {"file_id": "file-2"})),
        attempt(lambda: store.record_file(JOB, 1, {"file_id": "file-3"})),
        attempt(lambda: store.record_batch(JOB, 1, {**batch, "id": "batch-2"})),
        attempt(lambda: store.update_batch(JOB, 0, {"status": "x"}, expected_version=1)),
        attempt(lambda: store.update_batch(JOB, 0, {"status": "y"}, expected_version=3)),
        attempt(lambda: store.update_batch(JOB, 0, {"retry_at": None, "n": 1.0, "f": 0.5})),
        attempt(lambda: store.update_batch(JOB, 5, {"status": "x"})),
        attempt(lambda: store.add_follow_up(JOB, 2, {"kind": "follow_up", "round": 1})),
        attempt(lambda: store.add_follow_up(JOB, 2, {"kind": "follow_up"})),
        attempt(lambda: store.note_duplicates(JOB, 0, ["b-2", "b-3"], ["b-2"])),
        attempt(lambda: store.note_duplicates(JOB, 0, ["b-3"], [])),
        store.batches(JOB),
        attempt(lambda: store.active_batches()),
    ]
    clock.advance(60)
    seen += [
        attempt(lambda: store.park_batches(JOB)),
        attempt(lambda: store.park_batches(JOB)),
        attempt(lambda: store.active_batches()),
        attempt(lambda: store.retire_batches(JOB, [0, 2])),
        attempt(lambda: store.retire_batches(JOB, [7])),
        store.batches(JOB),
    ]
    return seen


def finishing_and_notices(store: Any, clock: FakeClock) -> list[Any]:
    store.create_job(JOB, {"status": "active"})

    def mark(until: int | None, open_until: int | None) -> Any:
        changes = {"finish_attempt_until": until}
        return attempt(lambda: store.update_finish_attempt(JOB, changes, open_until=open_until))

    seen = [
        mark(10, open_until=5),
        mark(10, open_until=None),
        mark(20, open_until=None),
        mark(None, open_until=10),
        attempt(lambda: store.claim_notice(JOB, "outcome", 100)),
        attempt(lambda: store.claim_notice(JOB, "outcome", 100)),
        attempt(lambda: store.claim_notice("missing", "outcome", 100)),
    ]
    claimed_at = int(clock())
    clock.advance(100)
    seen.append(attempt(lambda: store.claim_notice(JOB, "outcome", 100)))
    clock.advance(1)
    seen += [
        attempt(lambda: store.claim_notice(JOB, "outcome", 100)),
        attempt(lambda: store.release_notice(JOB, "outcome", claimed_at)),
        store.notice_state(JOB, "outcome"),
        attempt(lambda: store.mark_notice_refused(JOB, "outcome", claimed_at, "old claim")),
        attempt(lambda: store.mark_notice_sent(JOB, "outcome", "m-1")),
        attempt(lambda: store.mark_notice_sent(JOB, "outcome", "m-2")),
        attempt(lambda: store.claim_notice(JOB, "stuck", 100)),
        attempt(lambda: store.mark_notice_refused(JOB, "stuck", int(clock()), "x" * 600)),
        store.notice_state(JOB, "stuck"),
        store.get_job(JOB),
    ]
    return seen


def file_cleanups(store: Any, clock: FakeClock) -> list[Any]:
    store.create_job(JOB, {"status": "completed"})
    pending = {"state": "pending", "left": ["file-2"], "deleted": 1, "attempts": 1}
    done = {"state": "done", "left": [], "deleted": 2, "attempts": 2, "last_error": None}
    seen = [
        attempt(lambda: store.file_cleanups()),
        attempt(lambda: store.schedule_file_cleanup(JOB, ["file-1", "file-2"])),
        attempt(lambda: store.schedule_file_cleanup("missing", ["file-9"])),
        attempt(lambda: store.file_cleanups()),
        attempt(lambda: store.record_file_cleanup(JOB, 0, pending)),
        attempt(lambda: store.record_file_cleanup(JOB, 0, done)),  # another recorded first
        attempt(lambda: store.schedule_file_cleanup(JOB, ["file-1", "file-2"])),  # once only
        store.get_job(JOB),
    ]
    clock.advance(300)
    store.update_job(JOB, {"status": "needs_attention"})  # out of the index, still pending
    seen += [
        attempt(lambda: store.file_cleanups()),
        attempt(lambda: store.schedule_file_cleanup(JOB, ["file-9"])),  # back in, not anew
        attempt(lambda: store.file_cleanups()),
        attempt(lambda: store.record_file_cleanup(JOB, 1, done)),
        attempt(lambda: store.file_cleanups()),
        store.get_job(JOB),
    ]
    return seen


@pytest.mark.parametrize("script", [submission, batches, finishing_and_notices, file_cleanups])
def test_the_fake_job_store_behaves_as_the_dynamodb_one(
    script: Script, stack: DeployedStack
) -> None:
    table = boto3.resource("dynamodb").Table(stack.resource("JobsTable"))
    real_clock, fake_clock = FakeClock(), FakeClock()

    real = script(JobStore(table, clock=real_clock), real_clock)
    fake = script(FakeJobStore(fake_clock), fake_clock)

    assert fake == real
