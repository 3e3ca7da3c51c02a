"""Resuming submissions no attempt will finish: a tick takes a lapsed lease and carries the job
on from its records, later after each failure, and past its bounds gives up with one email."""

from __future__ import annotations

import pytest

from batchdrop.domain.limits import Limits
from batchdrop.jobs.resume import RESUME_FIRST_WAIT_SECONDS, RESUME_RESERVE_SECONDS
from batchdrop.jobs.submit import SUBMIT_LEASE_SECONDS
from tests.support import Killed, jsonl, request_lines
from tests.unit.fakes.batch_api import refused
from tests.unit.fakes.world import Options, World

KEY = "requests/resume.jsonl"


def killed_submission(world: World, requests: int = 3) -> str:
    """A submission killed as it created its batch, its file recorded."""
    source = world.drop(KEY, jsonl(request_lines(requests)))
    world.api.fail_next("create_batch", Killed("killed mid-create"))
    with pytest.raises(Killed):
        world.submitter().submit(source)
    return source.job_id


def test_a_killed_submission_is_resumed_from_its_records_once_its_lease_lapses(
    world: World,
) -> None:
    job_id = killed_submission(world)

    world.clock.advance(SUBMIT_LEASE_SECONDS - 1)
    assert world.tick().resumed_submissions == {}  # the attempt might still be alive
    world.clock.advance(1)
    assert world.tick().resumed_submissions == {job_id: "submitted"}

    job = world.store.job(job_id)
    assert (job["status"], job["resumes"]) == ("active", 1)
    assert world.api.count("upload_file") == 1  # the recorded file was reused
    assert len(world.api.batches) == 1
    assert list(world.store.submitting_jobs()) == []


def test_a_resumption_waits_for_a_tick_with_room_to_finish_it(world: World) -> None:
    job_id = killed_submission(world)
    world.clock.advance(SUBMIT_LEASE_SECONDS)

    assert world.tick(lambda: RESUME_RESERVE_SECONDS - 1).resumed_submissions == {}
    assert world.tick().resumed_submissions == {job_id: "submitted"}


def test_resumptions_that_fail_are_tried_again_later_each_time(world: World) -> None:
    job_id = killed_submission(world)
    world.api.fail_next("create_batch", refused(400, "invalid_request_error"), times=3)
    waits = []
    for _ in range(3):
        world.clock.advance(SUBMIT_LEASE_SECONDS)
        assert world.tick().resumed_submissions == {job_id: "error"}
        waits.append(world.store.job(job_id)["lease_until"] - world.store.now())

    assert waits == [RESUME_FIRST_WAIT_SECONDS * 2**n for n in range(3)]
    assert "invalid_request_error" in world.store.job(job_id)["last_error"]
    assert world.metrics.counts["SubmissionResumesFailed"] == 3


def test_a_lease_another_tick_took_first_is_left_to_it(world: World) -> None:
    job_id = killed_submission(world)
    world.clock.advance(SUBMIT_LEASE_SECONDS)

    def overlapping_tick(*_args: object) -> None:
        world.store.take_submit_lease(job_id, SUBMIT_LEASE_SECONDS, resume=True)

    world.store.before("take_submit_lease", overlapping_tick)

    assert world.tick().resumed_submissions == {job_id: "taken"}
    assert len(world.api.batches) == 0


def test_past_its_resumptions_a_submission_with_nothing_created_fails_with_one_email() -> None:
    world = World(Options(submit_resume_limit=1))
    job_id = killed_submission(world)
    world.api.fail_next("create_batch", refused(400, "invalid_request_error"))
    world.clock.advance(SUBMIT_LEASE_SECONDS)
    world.tick()  # the one resumption allowed, which fails

    world.clock.advance(SUBMIT_LEASE_SECONDS)
    assert world.tick().resumed_submissions == {job_id: "gave_up"}

    job = world.store.job(job_id)
    assert job["status"] == "failed"
    assert "expires_at" in job
    assert list(world.store.submitting_jobs()) == []
    assert world.store.part(job_id, 0)["status"] == "not_submitted"
    (email,) = world.publisher.sent
    assert email.subject == "batchdrop: resume.jsonl could not be submitted"
    assert "invalid_request_error" in email.body
    world.clock.advance(SUBMIT_LEASE_SECONDS)
    world.tick()
    assert len(world.publisher.sent) == 1


def test_a_submission_given_up_part_way_tracks_what_was_created_to_its_end() -> None:
    world = World(Options(submit_resume_limit=0, limits=Limits(max_requests=2)))
    source = world.drop(KEY, jsonl(request_lines(4)))
    world.api.fail_next("create_batch", refused(400, "invalid_request_error"), after=1)
    with pytest.raises(Exception, match="invalid_request_error"):
        world.submitter().submit(source)  # part 0's batch is created, part 1's refused
    (created,) = world.api.batches

    assert world.tick().resumed_submissions == {source.job_id: "gave_up"}

    job = world.store.job(source.job_id)
    assert (job["status"], job["batch_count"], job["request_count"]) == ("active", 1, 2)
    assert job["not_submitted_from_line"] == 3
    assert world.store.part(source.job_id, 1)["status"] == "not_submitted"
    (email,) = world.publisher.sent
    assert email.subject == "batchdrop: resume.jsonl could not be fully submitted"
    assert "from line 3" in email.body
    assert job["notice_submission_abandoned"]["state"] == "sent"

    world.api.complete(created)
    assert world.tick().finished_jobs == {source.job_id: "completed"}
    job = world.store.job(source.job_id)
    assert (job["total"], job["succeeded"]) == (2, 2)  # the job is what was submitted
    assert "Never submitted: the requests from line 3" in world.publisher.sent[-1].body


def test_a_resumption_carries_on_from_the_first_part_without_a_batch() -> None:
    world = World(Options(limits=Limits(max_requests=2)))
    source = world.drop(KEY, jsonl(request_lines(6)))
    world.api.fail_next("create_batch", Killed("killed mid-create"), after=1)
    with pytest.raises(Killed):
        world.submitter().submit(source)  # part 0's batch recorded; killed creating part 1's
    world.clock.advance(SUBMIT_LEASE_SECONDS)

    assert world.tick().resumed_submissions == {source.job_id: "submitted"}

    assert world.api.count("create_batch") == 2 + 2  # part 0, the killed create, parts 1 and 2
    parts = world.parts(source.job_id)
    assert [world.api.batches[p["batch_id"]]["metadata"]["batchdrop_part"] for p in parts] == [
        f"{source.job_id}/0",
        f"{source.job_id}/1",
        f"{source.job_id}/2",
    ]
    assert len(world.api.batches) == 3


def test_a_give_up_email_sns_refuses_still_ends_the_submission() -> None:
    world = World(Options(submit_resume_limit=0))
    job_id = killed_submission(world)
    world.publisher.refuse = lambda _notice: True
    world.clock.advance(SUBMIT_LEASE_SECONDS)

    assert world.tick().resumed_submissions == {job_id: "gave_up"}
    assert world.store.job(job_id)["status"] == "failed"
    assert world.metrics.counts["NoticesRefused"] == 1


def test_a_give_up_whose_email_another_sender_holds_waits_for_it() -> None:
    world = World(Options(submit_resume_limit=0))
    job_id = killed_submission(world)
    world.store.claim_notice(job_id, "outcome", 1200)
    world.clock.advance(SUBMIT_LEASE_SECONDS)

    assert world.tick().resumed_submissions == {job_id: "not_ready"}
    assert world.store.job(job_id)["status"] == "submitting"
    assert world.publisher.sent == []
