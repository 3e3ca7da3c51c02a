"""Overlapping ticks, crashes and faults still give one result set and exactly one email."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest

from batchdrop.jobs.outbox import CLAIM_LEASE_SECONDS
from local.inbox import Inbox
from local.lambda_runtime import Function
from local.simulator import BatchSimulator
from local.template_stack import DeployedStack
from tests.conftest import load_event
from tests.pipeline import TICK_SECONDS, Pipeline
from tests.support import CrashOnce, drop, jsonl, request_lines


def advance_to_completion(pipeline: Pipeline) -> None:
    """Move simulated time past the whole lifecycle without ticking."""
    pipeline.clock.advance(60 + 600 + 60 + 1)


def test_two_overlapping_ticks_send_exactly_one_email(
    pipeline: Pipeline, load_function: Callable[..., Function]
) -> None:
    outcome = pipeline.submit("requests/race.jsonl", jsonl(request_lines(6)))
    advance_to_completion(pipeline)
    second_poller = load_function("PollFunction")  # another execution environment
    start = threading.Barrier(2)

    def tick(function: Function) -> Any:
        start.wait()
        return function.invoke(load_event("poll_tick.json"))

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(tick, [pipeline.poll_function, second_poller]))
    pipeline.clock.advance(TICK_SECONDS)
    pipeline.tick()

    assert pipeline.job(outcome["job_id"])["status"] == "completed"
    assert len(pipeline.inbox.messages()) == 1
    assert len(pipeline.read_jsonl(pipeline.result(outcome["job_id"]))) == 6


class Crash(Exception):
    pass


def test_a_crash_between_saving_results_and_publishing_still_emails_once(
    pipeline: Pipeline,
) -> None:
    outcome = pipeline.submit("requests/crash.jsonl", jsonl(request_lines(6)))
    advance_to_completion(pipeline)
    outbox = pipeline.poll_function.module.poller._finisher._outbox
    real = outbox.send_once

    def crash(*args: Any, **kwargs: Any) -> bool:
        raise Crash("the process died after the results were saved")

    outbox.send_once = crash
    summary = pipeline.tick()
    assert summary["finished_jobs"] == {outcome["job_id"]: "error"}
    assert pipeline.exists(pipeline.result(outcome["job_id"]))
    assert pipeline.inbox.messages() == []
    outbox.send_once = real

    job = pipeline.run(outcome["job_id"])
    pipeline.clock.advance(TICK_SECONDS)
    pipeline.tick()

    assert job["status"] == "completed"
    assert len(pipeline.inbox.messages()) == 1
    assert pipeline.active_index() == []


def test_a_failed_publish_gives_its_claim_back_and_the_next_tick_sends(
    pipeline: Pipeline,
) -> None:
    outcome = pipeline.submit("requests/publish.jsonl", jsonl(request_lines(3)))
    advance_to_completion(pipeline)
    notifier = pipeline.poll_function.module.poller._finisher._outbox._publisher
    real = notifier.publish

    def unreachable(*args: Any, **kwargs: Any) -> str:
        raise Crash("SNS unreachable")

    notifier.publish = unreachable
    pipeline.tick()
    notifier.publish = real
    pipeline.clock.advance(TICK_SECONDS)
    pipeline.tick()

    assert len(pipeline.inbox.messages()) == 1
    assert pipeline.job(outcome["job_id"])["notice_outcome"]["state"] == "sent"


class Killed(BaseException):
    """The Lambda timing out or running out of memory mid-publish."""


def test_a_publisher_killed_mid_publish_is_taken_over_after_the_claim_lapses(
    pipeline: Pipeline,
) -> None:
    """Claimed but never marked sent: a later tick takes the claim over and sends it."""
    outcome = pipeline.submit("requests/killed.jsonl", jsonl(request_lines(3)))
    advance_to_completion(pipeline)
    notifier = pipeline.poll_function.module.poller._finisher._outbox._publisher
    real = notifier.publish

    def killed(*args: Any, **kwargs: Any) -> str:
        raise Killed

    notifier.publish = killed
    with pytest.raises(Killed):
        pipeline.tick()
    notifier.publish = real
    pipeline.clock.advance(TICK_SECONDS)
    pipeline.tick()
    assert pipeline.inbox.messages() == []  # the claim still holds: no second sender yet

    pipeline.clock.advance(CLAIM_LEASE_SECONDS)
    pipeline.tick()
    pipeline.tick()

    assert len(pipeline.inbox.messages()) == 1
    assert pipeline.job(outcome["job_id"])["notice_outcome"]["state"] == "sent"


@pytest.mark.parametrize("route", ["GET /v1/batches/{batch_id}", "GET /v1/files/{file_id}/content"])
def test_openai_faults_that_outlast_retries_leave_the_job_active_for_the_next_tick(
    route: str, pipeline: Pipeline
) -> None:
    outcome = pipeline.submit("requests/flaky.jsonl", jsonl(request_lines(4)))
    advance_to_completion(pipeline)
    pipeline.sim.faults.inject(route, kind="503", times=6)

    pipeline.tick()
    assert pipeline.job(outcome["job_id"])["status"] == "active"
    assert len(pipeline.active_index()) == 1
    job = pipeline.run(outcome["job_id"])

    assert job["status"] == "completed"
    assert len(pipeline.inbox.messages()) == 1


def test_an_s3_failure_mid_finish_leaves_the_job_resumable(pipeline: Pipeline) -> None:
    outcome = pipeline.submit("requests/s3.jsonl", jsonl(request_lines(4)))
    advance_to_completion(pipeline)
    objects = pipeline.poll_function.module.poller._finisher._objects
    real = objects.put_json

    def fail(*args: Any, **kwargs: Any) -> None:
        raise Crash("S3 said 500")

    objects.put_json = fail
    pipeline.tick()
    assert pipeline.job(outcome["job_id"])["status"] == "active"
    objects.put_json = real

    job = pipeline.run(outcome["job_id"])

    assert job["status"] == "completed"
    assert len(pipeline.inbox.messages()) == 1


def test_resubmit_unfinished_turns_an_expired_batch_into_a_completed_job(
    load_function: Callable[..., Function],
    stack: DeployedStack,
    openai_sim: BatchSimulator,
    inbox: Inbox,
) -> None:
    pipeline = Pipeline(load_function, stack, openai_sim, inbox, RESUBMIT_UNFINISHED="true")
    lines = request_lines(10)
    openai_sim.outcomes.push("expired", finished_fraction=0.3)
    outcome = pipeline.submit("requests/retry.jsonl", jsonl(lines))
    pipeline.tick()
    pipeline.clock.advance(24 * 3600)  # the completion window runs out

    job = pipeline.run(outcome["job_id"])

    assert job["status"] == "completed"
    assert (job["succeeded"], job["unfinished"]) == (10, 0)
    parts = sorted(pipeline.parts(outcome["job_id"]), key=lambda p: p["index"])
    assert [p["kind"] for p in parts] == ["part", "follow_up"]
    follow_up_input = openai_sim.file_bytes(parts[1]["file_id"])
    assert follow_up_input.count(b"\n") == 7  # only the unfinished requests went again
    results = pipeline.read_jsonl(pipeline.result(outcome["job_id"]))
    assert [r["custom_id"] for r in results] == [line["custom_id"] for line in lines]
    assert {r["status"] for r in results} == {"succeeded"}
    assert (
        pipeline.read(pipeline.result(outcome["job_id"], "unfinished.jsonl")) == b""
    )  # no stale list to pay twice
    (email,) = inbox.messages()
    assert "completed, 10/10 ok" in email["subject"]


def test_a_batch_group_gets_one_merged_result_and_one_email(pipeline: Pipeline) -> None:
    lines = request_lines(50_001, "/v1/completions")
    outcome = pipeline.submit("requests/group.jsonl", jsonl(lines))
    assert len(outcome["batch_ids"]) == 2

    job = pipeline.run(outcome["job_id"])

    assert job["status"] == "completed"
    assert job["total"] == 50_001
    results = pipeline.read_jsonl(pipeline.result(outcome["job_id"]))
    assert len(results) == 50_001
    assert results[0]["custom_id"] == "req-0"
    assert results[50_000]["custom_id"] == "req-50000"
    assert all(r["line"] == n for n, r in enumerate(results, start=1))
    (email,) = pipeline.inbox.messages()
    assert "(2 batches)" in email["body"]


def test_three_hundred_active_batches_are_all_polled_in_one_concurrent_tick(
    pipeline: Pipeline, stack: DeployedStack
) -> None:
    """Records and batches are made directly: three hundred submissions would only add time."""
    poller = pipeline.poll_function.module.poller
    store, api = poller._store, poller._api
    upload = api.upload_file(
        "x.jsonl", len(jsonl(request_lines(1))), lambda: [jsonl(request_lines(1))]
    )
    for n in range(300):
        job_id = f"job{n:04d}"
        store.create_job(job_id, {"status": "active", "endpoint": "/v1/chat/completions"})
        store.record_file(job_id, 0, {"file_id": upload["id"], "submission_token": str(n)})
        batch = api.create_batch(upload["id"], "/v1/chat/completions", {})
        store.record_batch(job_id, 0, batch)
    pipeline.sim.latency = 0.02
    in_flight, peak = 0, 0
    lock = threading.Lock()
    real_retrieve = api.retrieve_batch

    def counting_retrieve(batch_id: str) -> dict[str, Any]:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        try:
            return real_retrieve(batch_id)
        finally:
            with lock:
                in_flight -= 1

    api.retrieve_batch = counting_retrieve
    pipeline.clock.advance(61)  # every batch leaves validating

    summary = pipeline.tick()

    assert summary["active"] == 300
    assert summary["refreshed"] == 300
    assert summary["changed"] == 300
    assert summary["deferred"] == 0
    assert peak > 1  # the calls overlapped
    table = boto3.resource("dynamodb").Table(stack.resource("JobsTable"))
    statuses = {i["status"] for i in table.scan()["Items"] if i["sk"].startswith("BATCH#")}
    assert statuses == {"in_progress"}


def test_a_batch_that_had_already_ended_when_recorded_still_finishes(pipeline: Pipeline) -> None:
    """Submit crashed after creating the batch; by the retry OpenAI had completed it."""
    submitter = pipeline.submit_function.module.submitter
    submitter._store = CrashOnce(submitter._store, "record_batch", before=True)
    event = drop(pipeline.bucket, "requests/fast.jsonl", jsonl(request_lines(3)))
    with pytest.raises(Exception, match="1 of 1 failed"):
        pipeline.submit_function.invoke(event)
    advance_to_completion(pipeline)

    outcome = pipeline.submit_function.invoke(event)["outcomes"][0]  # adopts a finished batch
    job = pipeline.run(outcome["job_id"], max_ticks=5)

    assert job["status"] == "completed"
    assert pipeline.sim.count("POST /v1/batches") == 1
    assert len(pipeline.inbox.messages()) == 1
