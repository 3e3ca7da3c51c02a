"""The JobFinisher's decisions: every way a job can end, what it writes (once) and the one
email; when it is not ready yet; and when unfinished requests go again as a follow-up."""

from __future__ import annotations

import json

import pytest

from batchdrop.domain.limits import Limits
from batchdrop.jobs.finish import FINISH_RESERVE_SECONDS, MAX_FOLLOW_UP_ROUNDS
from batchdrop.jobs.poll import TOKEN_LIMIT_MAX_RESUBMITS
from tests.support import Crash, request_lines
from tests.unit.fakes.batch_api import not_run_line, result_line
from tests.unit.fakes.world import BUCKET, Options, World, plenty_of_time

KEY = "requests/team/chat.jsonl"


def submitted(world: World, requests: int = 4, key: str = KEY) -> str:
    return world.submit(key, requests).job_id


def batch_of(world: World, job_id: str, index: int = 0) -> str:
    return str(world.store.part(job_id, index)["batch_id"])


def custom_ids(lines: list[dict[str, object]]) -> list[object]:
    return [line["custom_id"] for line in lines]


def summary_of(world: World, job_id: str) -> dict[str, object]:
    prefix = world.store.job(job_id)["results_prefix"]
    found = world.objects.read_json(BUCKET, f"{prefix}summary.json")
    assert found is not None
    document: dict[str, object] = found[0]
    return document


# --- every way a job ends -----------------------------------------------------------------------


def test_a_completed_job_brings_results_home_in_input_order_and_emails_once(world: World) -> None:
    job_id = submitted(world, requests=5)
    batch_id = batch_of(world, job_id)
    # OpenAI writes results in its own order, and a failed request's line among them.
    order = ["req-3", "req-0", "req-4", "req-2"]
    world.api.end(
        batch_id,
        "completed",
        output=[result_line(c, 400 if c == "req-2" else 200) for c in order],
        error=[result_line("req-1", 500)],
        usage={"input_tokens": 7, "output_tokens": 5, "total_tokens": 12},
    )

    summary = world.tick()

    assert summary.finished_jobs == {job_id: "completed"}
    results = world.result(job_id)
    assert custom_ids(results) == [f"req-{n}" for n in range(5)]
    assert [r["line"] for r in results] == [1, 2, 3, 4, 5]
    assert [r["status"] for r in results] == ["succeeded", "failed", "failed"] + ["succeeded"] * 2
    job = world.store.job(job_id)
    assert (job["status"], job["total"], job["succeeded"], job["failed"]) == ("completed", 5, 3, 2)
    assert job["usage"] == {
        "input_tokens": 7,
        "cached_tokens": 0,
        "output_tokens": 5,
        "reasoning_tokens": 0,
        "total_tokens": 12,
    }
    assert job["failed_by_code"] == {"invalid_request": 2}  # the code the body's error gives
    assert job["results_key"] == f"{job['results_prefix']}results.jsonl"
    assert summary_of(world, job_id)["status"] == "completed"
    raw = world.objects.read_jsonl(BUCKET, f"{job['results_prefix']}raw/{batch_id}.output.jsonl")
    assert custom_ids(raw) == order  # OpenAI's file, kept as it came
    (email,) = world.publisher.sent
    assert email.subject == "batchdrop: chat.jsonl completed, 3/5 ok, 2 failed"
    assert email.attributes == {"status": "completed", "endpoint": "/v1/chat/completions"}
    assert f"s3://{BUCKET}/{job['results_key']}" in email.body
    assert list(world.store.active_batches()) == []  # finished jobs leave the index
    latest = world.objects.read_json(BUCKET, "results/team/chat/latest.json")
    assert latest is not None
    assert latest[0]["job_id"] == job_id
    world.tick()
    assert len(world.publisher.sent) == 1  # later ticks email nothing more


def test_completed_with_every_request_failed_has_no_output_file_and_still_ends(
    world: World,
) -> None:
    job_id = submitted(world, requests=3)
    world.api.end(batch_of(world, job_id), "completed", error=[
        result_line(f"req-{n}", 400) for n in range(3)
    ])  # fmt: skip

    assert world.tick().finished_jobs == {job_id: "completed"}

    job = world.store.job(job_id)
    assert (job["succeeded"], job["failed"]) == (0, 3)
    assert "0/3 ok, 3 failed" in world.publisher.sent[0].subject


def test_a_batch_that_failed_for_good_fails_its_job_and_says_why(world: World) -> None:
    job_id = submitted(world, requests=3)
    world.api.fail(batch_of(world, job_id), "invalid_model", "the model does not exist")

    assert world.tick().finished_jobs == {job_id: "failed"}

    job = world.store.job(job_id)
    assert (job["failed"], job["unfinished"]) == (3, 0)
    assert [e["code"] for e in job["batch_errors"]] == ["invalid_model"]
    assert {r["status"] for r in world.result(job_id)} == {"failed"}
    (email,) = world.publisher.sent
    assert email.attributes["status"] == "failed"
    assert "invalid_model" in email.body


def test_a_token_limit_that_never_clears_fails_the_job_with_every_request_unfinished(
    world: World,
) -> None:
    job_id = submitted(world, requests=3)
    world.store.update_batch(job_id, 0, {"resubmits": TOKEN_LIMIT_MAX_RESUBMITS})
    world.api.fail(batch_of(world, job_id), "token_limit_exceeded")

    assert world.tick().finished_jobs == {job_id: "failed"}

    job = world.store.job(job_id)
    assert (job["unfinished"], job["failed"]) == (3, 0)
    assert world.objects.read_jsonl(BUCKET, job["unfinished_key"]) == request_lines(3)
    assert "once other batches finish" in world.publisher.sent[0].body


@pytest.mark.parametrize("status", ["expired", "cancelled"])
def test_a_batch_that_ended_part_way_keeps_its_results_and_lists_the_unfinished(
    status: str, world: World
) -> None:
    job_id = submitted(world, requests=5)
    world.api.run_partly(batch_of(world, job_id), status, ran=2)

    assert world.tick().finished_jobs == {job_id: status}

    job = world.store.job(job_id)
    assert (job["succeeded"], job["unfinished"]) == (2, 3)
    assert [r["status"] for r in world.result(job_id)] == ["succeeded"] * 2 + ["unfinished"] * 3
    assert world.result(job_id, "unfinished.jsonl") == request_lines(5)[2:]  # as they were sent
    (email,) = world.publisher.sent
    assert email.attributes["status"] == status
    assert "3 unfinished" in email.body
    assert job["unfinished_key"] in email.body


def test_a_job_of_several_parts_gets_one_merged_result_and_one_email() -> None:
    world = World(Options(limits=Limits(max_requests=2)))
    job_id = submitted(world, requests=5)
    for index in range(3):
        world.api.complete(batch_of(world, job_id, index))

    assert world.tick().finished_jobs == {job_id: "completed"}

    assert custom_ids(world.result(job_id)) == [f"req-{n}" for n in range(5)]
    assert world.store.job(job_id)["usage"]["total_tokens"] == 3 * 20  # every part's tokens
    (email,) = world.publisher.sent
    assert "(3 batches)" in email.body


def test_a_part_that_failed_while_the_other_completed_gets_a_file_of_its_own() -> None:
    world = World(Options(limits=Limits(max_requests=2)))
    job_id = submitted(world, requests=4)
    world.api.complete(batch_of(world, job_id, 0))
    world.store.update_batch(job_id, 1, {"resubmits": TOKEN_LIMIT_MAX_RESUBMITS})
    world.api.fail(batch_of(world, job_id, 1), "token_limit_exceeded")

    assert world.tick().finished_jobs == {job_id: "failed"}

    job = world.store.job(job_id)
    assert (job["succeeded"], job["unfinished"]) == (2, 2)
    assert world.result(job_id, "not_succeeded.jsonl") == request_lines(4)[2:]
    body = world.publisher.sent[0].body
    assert "not_succeeded.jsonl" in body.split("What to do next:")[1]


# --- not ready yet ------------------------------------------------------------------------------


def test_a_job_is_not_finished_while_a_part_is_not_final(world: World) -> None:
    job_id = submitted(world)

    assert world.finisher().finish(job_id, plenty_of_time) == "not_ready"
    assert world.publisher.sent == []


def test_batches_that_ended_before_their_job_was_submitted_wait_for_it(world: World) -> None:
    job_id = submitted(world)
    world.store.update_batch(job_id, 0, {"final": True, "status": "completed"})
    world.store.update_job(job_id, {"status": "submitting"})

    assert world.finisher().finish(job_id, plenty_of_time) == "not_ready"


def test_a_finish_without_room_for_the_merge_is_left_to_the_next_tick(world: World) -> None:
    job_id = submitted(world)
    world.api.complete(batch_of(world, job_id))
    world.tick(lambda: 30.0)  # time to record the batch final, not to finish its job

    assert world.finisher().finish(job_id, lambda: FINISH_RESERVE_SECONDS - 1) == "not_ready"
    assert world.store.job(job_id)["status"] == "active"
    assert world.finisher().finish(job_id, plenty_of_time) == "completed"


def test_a_job_whose_email_another_sender_holds_stays_active_until_it_is_out(
    world: World,
) -> None:
    job_id = submitted(world)
    world.api.complete(batch_of(world, job_id))
    world.tick(lambda: 30.0)
    world.store.claim_notice(job_id, "outcome", 1200)

    assert world.finisher().finish(job_id, plenty_of_time) == "not_ready"
    assert world.store.job(job_id)["status"] == "completed"  # the outcome is recorded...
    assert len(list(world.store.active_batches())) == 1  # ...but the job stays in view

    world.store.mark_notice_sent(job_id, "outcome", "sent-by-the-other")
    assert world.finisher().finish(job_id, plenty_of_time) == "completed"
    assert list(world.store.active_batches()) == []
    assert world.publisher.sent == []


def test_a_duplicate_batch_still_running_holds_its_job_back(world: World) -> None:
    job_id = submitted(world)
    world.api.complete(batch_of(world, job_id))
    token = world.store.part(job_id, 0)["submission_token"]
    copy = world.api.add_batch(metadata={"submission_token": token}, created_at=0)
    world.store.note_duplicates(job_id, 0, [copy["id"]], [])
    world.tick(lambda: 30.0)

    assert world.finisher().finish(job_id, plenty_of_time) == "not_ready"
    world.api.end(copy["id"], "cancelled")
    assert world.finisher().finish(job_id, plenty_of_time) == "completed"


def test_what_a_duplicate_batch_ran_counts_as_its_parts_and_is_not_sent_again() -> None:
    world = World(Options(resubmit_unfinished=True))
    job_id = submitted(world, requests=3)
    own = batch_of(world, job_id)
    copy = world.api.add_batch(  # the same part's requests, created twice
        metadata=world.api.batches[own]["metadata"],
        created_at=world.store.now(),
        input_file_id=world.api.batches[own]["input_file_id"],
    )["id"]
    world.store.note_duplicates(job_id, 0, [copy], [])
    world.api.run_partly(own, "expired", ran=0)
    world.api.complete(copy)

    assert world.tick().finished_jobs == {job_id: "completed"}

    job = world.store.job(job_id)
    assert (job["succeeded"], job["unfinished"]) == (3, 0)
    assert job["usage"]["total_tokens"] == 20  # the duplicate's tokens were paid for too
    assert world.api.count("create_batch") == 1  # no follow-up: nothing is left unrun


# --- written once -------------------------------------------------------------------------------


def test_a_finish_that_crashed_after_saving_results_never_writes_them_again(
    world: World,
) -> None:
    job_id = submitted(world)
    batch_id = batch_of(world, job_id)
    world.api.complete(batch_id)
    world.objects.fail_next("put_json", Crash("the process died before the summary"))

    assert world.tick().finished_jobs == {job_id: "error"}
    assert world.store.job(job_id)["status"] == "active"
    assert world.tick().finished_jobs == {job_id: "completed"}

    prefix = world.store.job(job_id)["results_prefix"]
    written = {key: world.objects.writes(BUCKET, key) for key in world.objects.keys(BUCKET, prefix)}
    assert set(written.values()) == {1}  # every object was written exactly once
    assert set(written) >= {
        f"{prefix}results.jsonl",
        f"{prefix}summary.json",
        f"{prefix}unfinished.jsonl",
        f"{prefix}raw/{batch_id}.output.jsonl",
    }
    assert len(world.publisher.sent) == 1


def test_an_older_job_finishing_last_leaves_the_pointer_on_the_newest(world: World) -> None:
    older = submitted(world, requests=2, key="requests/daily.jsonl")
    world.clock.advance(3600)
    newer = world.submitter().submit(
        world.drop("requests/daily.jsonl", b'{"custom_id": "x", "method": "POST", '
                   b'"url": "/v1/chat/completions", "body": {"model": "m"}}\n')
    ).job_id  # fmt: skip
    world.api.complete(batch_of(world, newer))
    assert world.tick().finished_jobs == {newer: "completed"}
    world.api.complete(batch_of(world, older))
    assert world.tick().finished_jobs == {older: "completed"}

    latest = world.objects.read_json(BUCKET, "results/daily/latest.json")
    assert latest is not None
    assert latest[0]["job_id"] == newer
    assert world.objects.writes(BUCKET, "results/daily/latest.json") == 1
    folders = {world.store.job(job)["results_prefix"] for job in (older, newer)}
    assert len(folders) == 2  # each job's results are its own


# --- follow-ups of unfinished requests ----------------------------------------------------------


def test_unfinished_requests_go_again_as_a_follow_up_and_the_job_completes() -> None:
    world = World(Options(resubmit_unfinished=True))
    job_id = submitted(world, requests=5)
    world.api.run_partly(batch_of(world, job_id), "expired", ran=2)

    assert world.tick().finished_jobs == {job_id: "follow_up"}

    follow_up = world.store.part(job_id, 1)
    assert (follow_up["kind"], follow_up["round"]) == ("follow_up", 1)
    assert world.api.input_lines(follow_up["batch_id"]) == request_lines(5)[2:]
    assert world.publisher.sent == []
    world.api.complete(follow_up["batch_id"])
    assert world.tick().finished_jobs == {job_id: "completed"}

    job = world.store.job(job_id)
    assert job["results_key"] == f"{job['results_prefix']}round-1/results.jsonl"
    assert (job["succeeded"], job["unfinished"]) == (5, 0)
    results = world.objects.read_jsonl(BUCKET, job["results_key"])
    assert custom_ids(results) == [f"req-{n}" for n in range(5)]
    assert {r["status"] for r in results} == {"succeeded"}
    (email,) = world.publisher.sent
    assert "completed, 5/5 ok" in email.subject


def test_follow_ups_stop_after_the_last_round_and_the_job_expires() -> None:
    world = World(Options(resubmit_unfinished=True))
    job_id = submitted(world, requests=3)
    world.api.run_partly(batch_of(world, job_id), "expired", ran=0)
    for round_number in range(1, MAX_FOLLOW_UP_ROUNDS + 1):
        assert world.tick().finished_jobs == {job_id: "follow_up"}
        world.api.run_partly(batch_of(world, job_id, round_number), "expired", ran=1)

    assert world.tick().finished_jobs == {job_id: "expired"}
    assert world.store.job(job_id)["unfinished"] == 1


def test_a_cancelled_job_is_not_followed_up() -> None:
    world = World(Options(resubmit_unfinished=True))
    job_id = submitted(world, requests=3)
    world.store.update_job(job_id, {"cancel_requested": True})
    world.api.end(batch_of(world, job_id), "cancelled", error=[
        not_run_line(f"req-{n}", "batch_cancelled") for n in range(3)
    ])  # fmt: skip

    assert world.tick().finished_jobs == {job_id: "cancelled"}
    assert world.api.count("create_batch") == 1


def test_a_part_that_failed_for_good_is_not_followed_up() -> None:
    world = World(Options(resubmit_unfinished=True, limits=Limits(max_requests=2)))
    job_id = submitted(world, requests=4)
    world.api.fail(batch_of(world, job_id, 0), "invalid_model")
    world.api.run_partly(batch_of(world, job_id, 1), "expired", ran=0)

    assert world.tick().finished_jobs == {job_id: "failed"}
    assert world.api.count("create_batch") == 2
    assert json.dumps(summary_of(world, job_id)["batch_errors"]).count("invalid_model") == 1
