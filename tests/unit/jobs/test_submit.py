"""The Submitter's decisions: one job per dropped object, its batches created exactly once
(a retry reuses a recorded file and adopts a created batch by its token), refusals reported
once, and one attempt at a time under a lease."""

from __future__ import annotations

import pytest

from batchdrop.domain.limits import Limits
from batchdrop.domain.model import JobStatus
from batchdrop.jobs.submit import SUBMIT_LEASE_SECONDS, NoticePendingError
from tests.support import Crash, Killed, jsonl, request_lines
from tests.unit.fakes.batch_api import refused
from tests.unit.fakes.world import BUCKET, Options, World

KEY = "requests/team/chat.jsonl"


def crash(*_args: object) -> None:
    raise Crash("the process died here")


def kill(*_args: object) -> None:
    raise Killed("the runtime killed the process here")


def test_a_dropped_file_becomes_one_active_job_with_its_batch_recorded(world: World) -> None:
    source = world.drop(KEY, jsonl(request_lines(3)))

    outcome = world.submitter().submit(source)

    assert (outcome.status, outcome.job_status, outcome.request_count) == ("submitted", "active", 3)
    (batch_id,) = outcome.batch_ids
    job = world.store.job(source.job_id)
    assert job["status"] == "active"
    assert (job["endpoint"], job["request_count"], job["batch_count"]) == (
        "/v1/chat/completions",
        3,
        1,
    )
    assert "lease_until" not in job  # the submission is over: no lease, out of the index
    assert list(world.store.submitting_jobs()) == []
    (part,) = world.parts(source.job_id)
    assert part["batch_id"] == batch_id
    metadata = world.api.batches[batch_id]["metadata"]
    assert metadata["submission_token"] == part["submission_token"]
    assert metadata == {  # batchdrop's bookkeeping: two pairs, leaving the user 14 of 16
        "batchdrop_part": f"{source.job_id}/0",
        "submission_token": part["submission_token"],
    }
    assert world.api.input_lines(batch_id) == request_lines(3)
    assert [item["batch_id"] for item in world.store.active_batches()] == [batch_id]
    assert world.publisher.sent == []  # the email waits for the outcome


def test_a_file_over_one_batch_is_split_into_parts_each_with_its_batch() -> None:
    world = World(Options(limits=Limits(max_requests=2)))
    source = world.drop(KEY, jsonl(request_lines(5)))

    outcome = world.submitter().submit(source)

    assert len(outcome.batch_ids) == 3
    parts = world.parts(source.job_id)
    assert [(p["index"], p["first_line"], p["request_count"]) for p in parts] == [
        (0, 1, 2),
        (1, 3, 2),
        (2, 5, 1),
    ]
    assert [world.api.batches[p["batch_id"]]["metadata"]["batchdrop_part"] for p in parts] == [
        f"{source.job_id}/0",
        f"{source.job_id}/1",
        f"{source.job_id}/2",
    ]
    assert world.store.job(source.job_id)["planned_parts"] == [
        {"index": 0, "first_line": 1, "requests": 2},
        {"index": 1, "first_line": 3, "requests": 2},
        {"index": 2, "first_line": 5, "requests": 1},
    ]
    assert world.api.input_lines(outcome.batch_ids[2]) == request_lines(5)[4:]


def test_a_retry_after_a_crash_before_the_batch_was_recorded_adopts_it_by_its_token(
    world: World,
) -> None:
    source = world.drop(KEY, jsonl(request_lines(3)))
    world.store.before("record_batch", crash)
    with pytest.raises(Crash):
        world.submitter().submit(source)
    assert world.api.count("create_batch") == 1
    (created,) = world.api.batches

    outcome = world.submitter().submit(source)  # Lambda's retry of the same event

    assert outcome.status == "submitted"
    assert outcome.batch_ids == [created]
    assert world.api.count("create_batch") == 1  # adopted, not created again
    assert world.api.count("upload_file") == 1  # the recorded file was reused


def test_a_retry_after_a_crash_before_the_create_reuses_the_file_and_creates_once(
    world: World,
) -> None:
    source = world.drop(KEY, jsonl(request_lines(3)))
    world.api.fail_next("create_batch", Crash("the process died here"))
    with pytest.raises(Crash):
        world.submitter().submit(source)

    outcome = world.submitter().submit(source)

    assert outcome.status == "submitted"
    assert world.api.count("upload_file") == 1
    assert world.api.count("list_batches") == 1  # it looked for the token before creating
    assert len(world.api.batches) == 1


def test_a_failed_attempt_gives_its_lease_back_with_its_error(world: World) -> None:
    source = world.drop(KEY, jsonl(request_lines(3)))
    world.api.fail_next("create_batch", refused(400, "invalid_request_error"))

    with pytest.raises(Exception, match="invalid_request_error"):
        world.submitter().submit(source)

    job = world.store.job(source.job_id)
    assert job["status"] == "submitting"
    assert job["lease_until"] == world.store.now()  # free to be taken at once by a retry
    assert job["last_error"].startswith("OpenAIError: OpenAI API error 400")
    assert [item["job_id"] for item in world.store.submitting_jobs()] == [source.job_id]


def test_a_delivery_while_another_attempt_holds_the_lease_leaves_the_job_to_it(
    world: World,
) -> None:
    """An attempt killed mid-way gives nothing back: its lease holds for its full length."""
    source = world.drop(KEY, jsonl(request_lines(3)))
    world.store.before("record_file", kill)
    with pytest.raises(Killed):
        world.submitter().submit(source)

    world.clock.advance(SUBMIT_LEASE_SECONDS - 1)
    outcome = world.submitter().submit(source)

    assert (outcome.status, outcome.job_status) == ("in_progress", "submitting")
    assert world.metrics.counts["SubmissionsLeftToLeaseHolder"] == 1
    assert world.api.count("create_batch") == 0

    world.clock.advance(1)  # the lease has lapsed: the next delivery takes the job on
    assert world.submitter().submit(source).status == "submitted"
    assert world.api.count("upload_file") == 2  # the killed attempt never recorded its file


def test_a_duplicate_delivery_of_a_submitted_object_does_nothing_more(world: World) -> None:
    source = world.drop(KEY, jsonl(request_lines(3)))
    first = world.submitter().submit(source)
    calls = list(world.api.calls)

    again = world.submitter().submit(source)

    assert (again.status, again.job_status) == ("duplicate", "active")
    assert again.batch_ids == first.batch_ids
    assert world.api.calls == calls


def test_a_delivery_that_finds_no_record_records_the_job_with_a_lapsed_lease(
    world: World,
) -> None:
    """Another attempt holds the event but wrote no record yet (or was killed first): the job
    is recorded so the poller resumes it if that attempt never does."""
    source = world.drop(KEY, jsonl(request_lines(3)))

    outcome = world.submitter().in_progress(source)

    assert outcome.status == "in_progress"
    job = world.store.job(source.job_id)
    assert (job["status"], job["lease_until"]) == ("submitting", 0)
    assert [item["job_id"] for item in world.store.submitting_jobs()] == [source.job_id]


@pytest.mark.parametrize(
    ("key", "body", "code"),
    [
        ("requests/empty.jsonl", b"", "empty_file"),
        ("requests/folder/", b"", "folder_marker"),
        ("requests/big.jsonl", jsonl(request_lines(40)), "file_too_large"),
        ("requests/bad.jsonl", b'{"custom_id": "a"}\n', "unsupported_url"),
    ],
)
def test_a_refused_file_is_reported_and_emailed_once_and_nothing_is_sent(
    key: str, body: bytes, code: str
) -> None:
    world = World(Options(limits=Limits(max_file_bytes=1000)))
    source = world.drop(key, body)

    outcome = world.submitter().submit(source)
    again = world.submitter().submit(source)

    assert (outcome.status, again.status) == ("rejected", "duplicate")
    job = world.store.job(source.job_id)
    assert job["status"] == "rejected"
    assert code in job["counts_by_code"]
    assert "expires_at" in job  # a finished job's record expires
    report = world.objects.read_json(BUCKET, job["report_key"])
    assert report is not None
    assert report[0]["source"] == f"s3://{BUCKET}/{key}"
    (email,) = world.publisher.sent
    assert email.attributes == {"status": "rejected"}
    assert "rejected" in email.subject
    assert world.api.calls == []  # nothing was uploaded, early or not


def test_a_redelivery_sends_a_refusal_whose_email_a_crash_held_back(world: World) -> None:
    source = world.drop(KEY, b"not json\n")
    world.publisher.fail_next(Crash("the process died before publishing"))
    with pytest.raises(Crash):
        world.submitter().submit(source)
    assert world.store.job(source.job_id)["status"] == "rejected"

    outcome = world.submitter().submit(source)

    assert outcome.status == "duplicate"
    assert len(world.publisher.sent) == 1


def test_a_refusal_whose_email_another_sender_holds_fails_the_event_until_it_is_out(
    world: World,
) -> None:
    source = world.drop(KEY, b"not json\n")

    def another_sender(job_id: str, kind: str) -> None:
        world.store.claim_notice(job_id, kind, lease_seconds=1200)

    world.store.before("claim_notice", another_sender)

    with pytest.raises(NoticePendingError):
        world.submitter().submit(source)
    assert world.store.job(source.job_id)["status"] == JobStatus.REJECTED
    assert world.publisher.sent == []
