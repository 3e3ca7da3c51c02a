"""From a dropped file to the email and the results in S3, for every way a batch can end."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import requests

from batchdrop.cli.stack_client import BatchdropClient, StackInfo
from batchdrop.domain.limits import Limits
from local.inbox import Inbox
from local.lambda_runtime import Function
from local.simulator import BatchSimulator
from local.template_stack import DeployedStack
from tests.conftest import SIM_API_KEY
from tests.pipeline import TICK_SECONDS, Pipeline
from tests.support import jsonl, request_lines


def test_a_completed_job_brings_results_home_in_input_order_and_emails_once(
    pipeline: Pipeline,
) -> None:
    lines = request_lines(12, prefix="req-")
    lines[3]["custom_id"] = "fail-3"
    lines[7]["custom_id"] = "fail-7"
    outcome = pipeline.submit("requests/team/chat.jsonl", jsonl(lines))

    job = pipeline.run(outcome["job_id"])

    assert job["status"] == "completed"
    results = pipeline.read_jsonl(pipeline.result(outcome["job_id"]))
    assert [r["custom_id"] for r in results] == [line["custom_id"] for line in lines]
    assert [r["line"] for r in results] == list(range(1, 13))
    batch_id = outcome["batch_ids"][0]
    raw = pipeline.read_jsonl(pipeline.result(outcome["job_id"], f"raw/{batch_id}.output.jsonl"))
    raw_order = [r["custom_id"] for r in raw]
    expected_ok = [line["custom_id"] for line in lines if not line["custom_id"].startswith("fail")]
    assert raw_order != expected_ok  # OpenAI's order differs from the input's...
    assert sorted(raw_order) == sorted(expected_ok)  # ...and the merge put it right
    failed = [r for r in results if r["status"] == "failed"]
    assert [r["custom_id"] for r in failed] == ["fail-3", "fail-7"]
    assert all(r["status_code"] == 400 and r["error"] for r in failed)
    ok = results[0]
    assert ok["status"] == "succeeded"
    assert ok["response"]["object"] == "chat.completion"
    assert (job["total"], job["succeeded"], job["failed"]) == (12, 10, 2)
    assert job["usage"]["total_tokens"] > 0
    summary = json.loads(pipeline.read(pipeline.result(outcome["job_id"], "summary.json")))
    assert summary["status"] == "completed"
    (email,) = pipeline.inbox.messages()
    assert email["subject"] == "batchdrop: chat.jsonl completed, 10/12 ok, 2 failed"
    assert len(email["subject"]) <= 100
    body = email["body"]
    assert "12 total, 10 succeeded, 2 failed" in body
    assert f"s3://{pipeline.bucket}/{pipeline.result(outcome['job_id'])}" in body
    assert "X-Amz-Expires=604800" in body  # the pre-signed link lasts 7 days
    assert f"{job['usage']['total_tokens']:,} total" in body
    assert "http_400" in body or "invalid_request" in body
    assert email["attributes"] == {"status": "completed", "endpoint": "/v1/chat/completions"}
    assert pipeline.active_index() == []  # finished jobs leave the index
    pipeline.tick()
    assert pipeline.inbox.messages() == []  # and later ticks email nothing more


def test_an_expired_batch_keeps_its_partial_results_and_lists_the_unfinished(
    pipeline: Pipeline,
) -> None:
    lines = request_lines(10)
    pipeline.sim.outcomes.push("expired", finished_fraction=0.4)
    outcome = pipeline.submit("requests/late.jsonl", jsonl(lines))
    pipeline.tick()
    pipeline.clock.advance(24 * 3600)  # the completion window runs out

    job = pipeline.run(outcome["job_id"])

    assert job["status"] == "expired"
    results = pipeline.read_jsonl(pipeline.result(outcome["job_id"]))
    assert [r["custom_id"] for r in results] == [line["custom_id"] for line in lines]
    done = [r for r in results if r["status"] == "succeeded"]
    unfinished = [r for r in results if r["status"] == "unfinished"]
    assert len(done) == 4
    assert len(unfinished) == 6
    resubmit = pipeline.read_jsonl(pipeline.result(outcome["job_id"], "unfinished.jsonl"))
    assert [r["custom_id"] for r in resubmit] == [r["custom_id"] for r in unfinished]
    assert resubmit[0] == lines[results.index(unfinished[0])]  # the original request, as sent
    (email,) = pipeline.inbox.messages()
    assert "expired" in email["subject"]
    assert "6 unfinished" in email["body"]
    assert pipeline.result(outcome["job_id"], "unfinished.jsonl") in email["body"]
    assert email["attributes"]["status"] == "expired"


def test_a_batch_cancelled_on_openai_keeps_its_partial_results(pipeline: Pipeline) -> None:
    lines = request_lines(10)
    outcome = pipeline.submit("requests/stop.jsonl", jsonl(lines))
    pipeline.clock.advance(60 + 300)  # validated, and half way through its run
    requests.post(
        f"{pipeline.sim.base_url}/batches/{outcome['batch_ids'][0]}/cancel",
        headers={"Authorization": f"Bearer {SIM_API_KEY}"},
        timeout=5,
    ).raise_for_status()

    job = pipeline.run(outcome["job_id"])

    assert job["status"] == "cancelled"
    results = pipeline.read_jsonl(pipeline.result(outcome["job_id"]))
    statuses = {r["status"] for r in results}
    assert statuses == {"succeeded", "unfinished"}
    (email,) = pipeline.inbox.messages()
    assert "cancelled" in email["subject"]


def test_completed_with_no_output_file_is_reported_not_crashed_on(pipeline: Pipeline) -> None:
    pipeline.sim.outcomes.push("all_failed")
    outcome = pipeline.submit("requests/doomed.jsonl", jsonl(request_lines(5)))

    job = pipeline.run(outcome["job_id"])

    assert job["status"] == "completed"
    assert (job["succeeded"], job["failed"]) == (0, 5)
    results = pipeline.read_jsonl(pipeline.result(outcome["job_id"]))
    assert {r["status"] for r in results} == {"failed"}
    (email,) = pipeline.inbox.messages()
    assert "0/5 ok, 5 failed" in email["subject"]


def test_token_limit_exceeded_waits_and_resubmits_until_it_completes(pipeline: Pipeline) -> None:
    pipeline.sim.outcomes.push("token_limit_exceeded")
    outcome = pipeline.submit("requests/busy.jsonl", jsonl(request_lines(4)))

    job = pipeline.run(outcome["job_id"])

    assert job["status"] == "completed"
    (part,) = pipeline.parts(outcome["job_id"])
    assert part["previous_batch_ids"] == outcome["batch_ids"]
    assert part["batch_id"] != outcome["batch_ids"][0]
    assert part["resubmits"] == 1
    assert pipeline.sim.count("POST /v1/batches") == 2
    (email,) = pipeline.inbox.messages()  # no email for the failure that was retried
    assert "completed" in email["subject"]


def test_token_limit_exceeded_that_never_clears_ends_in_one_failure_email(
    pipeline: Pipeline,
) -> None:
    pipeline.sim.outcomes.push("token_limit_exceeded", count=7)
    lines = request_lines(4)
    outcome = pipeline.submit("requests/never.jsonl", jsonl(lines))

    job = pipeline.run(outcome["job_id"], max_ticks=400)

    assert job["status"] == "failed"
    assert pipeline.sim.count("POST /v1/batches") == 7  # the first try and six resubmissions
    results = pipeline.read_jsonl(pipeline.result(outcome["job_id"]))
    assert [r["custom_id"] for r in results] == [line["custom_id"] for line in lines]
    assert {r["status"] for r in results} == {"unfinished"}  # nothing ran, nothing was lost
    assert pipeline.read_jsonl(pipeline.result(outcome["job_id"], "unfinished.jsonl")) == lines
    summary = json.loads(pipeline.read(pipeline.result(outcome["job_id"], "summary.json")))
    assert summary["status"] == "failed"
    assert [e["code"] for e in summary["batch_errors"]] == ["token_limit_exceeded"]
    (email,) = pipeline.inbox.messages()
    assert "failed" in email["subject"]
    assert "token_limit_exceeded" in email["body"]
    assert "Enqueued token limit" in email["body"]
    assert "once other batches finish" in email["body"]
    assert email["attributes"]["status"] == "failed"


@pytest.mark.parametrize("status", ["validating", "finalizing"])
def test_a_stuck_batch_warns_once_and_polling_goes_on(status: str, pipeline: Pipeline) -> None:
    pipeline.sim.outcomes.push(f"stuck_{status}")
    lines = request_lines(3)
    outcome = pipeline.submit("requests/slow.jsonl", jsonl(lines))
    batch_id = outcome["batch_ids"][0]

    for _ in range(75):  # 150 simulated minutes, past the 120-minute threshold
        pipeline.clock.advance(120)
        pipeline.tick()
    (warning,) = pipeline.inbox.messages()
    assert f"has been {status}" in warning["subject"]
    assert batch_id in warning["body"]
    assert warning["attributes"]["status"] == "stuck"

    pipeline.sim.release(batch_id)
    job = pipeline.run(outcome["job_id"])

    assert job["status"] == "completed"
    results = pipeline.read_jsonl(pipeline.result(outcome["job_id"]))
    assert [r["custom_id"] for r in results] == [line["custom_id"] for line in lines]
    assert {r["status"] for r in results} == {"succeeded"}
    (email,) = pipeline.inbox.messages()
    assert "completed, 3/3 ok" in email["subject"]
    assert pipeline.result(outcome["job_id"]) in email["body"]


def test_a_tick_with_nothing_active_calls_nobody(pipeline: Pipeline) -> None:
    summary = pipeline.tick()

    assert summary["active"] == 0
    assert list(pipeline.sim.calls) == []


def test_cancelling_a_job_that_waits_for_token_capacity_does_not_resubmit(
    pipeline: Pipeline,
) -> None:
    pipeline.sim.outcomes.push("token_limit_exceeded")
    outcome = pipeline.submit("requests/wait.jsonl", jsonl(request_lines(4)))
    pipeline.clock.advance(TICK_SECONDS)
    pipeline.tick()
    (part,) = pipeline.parts(outcome["job_id"])
    assert part["retry_at"] > 0  # waiting for capacity
    client = BatchdropClient(StackInfo.from_outputs(pipeline.stack.outputs, "us-east-1"))

    client.cancel(outcome["job_id"])
    job = pipeline.run(outcome["job_id"])

    assert job["status"] == "cancelled"
    assert pipeline.sim.count("POST /v1/batches") == 1
    (email,) = pipeline.inbox.messages()
    assert "cancelled" in email["subject"]


def test_a_completed_batch_missing_one_request_is_unplaced_and_never_resent(
    load_function: Callable[..., Function],
    stack: DeployedStack,
    openai_sim: BatchSimulator,
    inbox: Inbox,
) -> None:
    pipeline = Pipeline(load_function, stack, openai_sim, inbox, RESUBMIT_UNFINISHED="true")
    lines = request_lines(6)
    openai_sim.leave_out_results("req-2")
    outcome = pipeline.submit("requests/lost.jsonl", jsonl(lines))

    job = pipeline.run(outcome["job_id"])

    assert pipeline.sim.count("POST /v1/batches") == 1  # nothing was sent a second time
    assert job["status"] == "completed"
    assert (job["succeeded"], job["unfinished"], job["unplaced"]) == (5, 0, 1)
    results = pipeline.read_jsonl(pipeline.result(outcome["job_id"]))
    assert results[2]["status"] == "unplaced"
    assert results[2]["error"]["code"] == "missing_from_results"
    assert pipeline.read(pipeline.result(outcome["job_id"], "unfinished.jsonl")) == b""
    not_succeeded = pipeline.read_jsonl(pipeline.result(outcome["job_id"], "not_succeeded.jsonl"))
    assert not_succeeded == [lines[2]]
    summary = json.loads(pipeline.read(pipeline.result(outcome["job_id"], "summary.json")))
    assert (summary["unfinished"], summary["unplaced"]) == (0, 1)
    assert summary["unplaced_by_reason"] == {"missing_from_results": 1}
    (email,) = pipeline.inbox.messages()
    assert "1 unplaced" in email["body"]
    assert "did not run" not in email["body"]
    assert pipeline.result(outcome["job_id"], "not_succeeded.jsonl") in email["body"]


def two_per_batch(pipeline: Pipeline) -> None:
    pipeline.submit_function.module.submitter._limits = Limits(max_requests=2)


def test_a_failed_part_gets_a_file_of_its_own_and_no_advice_to_upload_everything(
    pipeline: Pipeline,
) -> None:
    two_per_batch(pipeline)
    pipeline.sim.outcomes.push("completed")
    pipeline.sim.outcomes.push("token_limit_exceeded", count=7)
    lines = request_lines(4)
    outcome = pipeline.submit("requests/halves.jsonl", jsonl(lines))
    assert len(outcome["batch_ids"]) == 2

    job = pipeline.run(outcome["job_id"], max_ticks=400)

    assert job["status"] == "failed"
    assert (job["succeeded"], job["unfinished"]) == (2, 2)
    not_succeeded = pipeline.read_jsonl(pipeline.result(outcome["job_id"], "not_succeeded.jsonl"))
    assert not_succeeded == lines[2:]
    summary = json.loads(pipeline.read(pipeline.result(outcome["job_id"], "summary.json")))
    assert summary["not_succeeded_key"] == pipeline.result(outcome["job_id"], "not_succeeded.jsonl")
    (email,) = pipeline.inbox.messages()
    assert pipeline.result(outcome["job_id"], "not_succeeded.jsonl") in email["body"]
    assert "upload the file again" not in email["body"]
    assert "not_succeeded.jsonl" in email["body"].split("What to do next:")[1]


def test_resubmit_unfinished_follows_up_only_the_part_that_failed_for_a_retryable_reason(
    load_function: Callable[..., Function],
    stack: DeployedStack,
    openai_sim: BatchSimulator,
    inbox: Inbox,
) -> None:
    pipeline = Pipeline(load_function, stack, openai_sim, inbox, RESUBMIT_UNFINISHED="true")
    two_per_batch(pipeline)
    openai_sim.outcomes.push("completed")
    openai_sim.outcomes.push("token_limit_exceeded", count=7)
    lines = request_lines(4)
    outcome = pipeline.submit("requests/again.jsonl", jsonl(lines))

    job = pipeline.run(outcome["job_id"], max_ticks=400)

    assert job["status"] == "completed"
    assert job["succeeded"] == 4
    parts = sorted(pipeline.parts(outcome["job_id"]), key=lambda p: p["index"])
    assert [p["kind"] for p in parts] == ["part", "part", "follow_up"]
    follow_up_input = openai_sim.file_bytes(parts[2]["file_id"])
    assert [json.loads(line)["custom_id"] for line in follow_up_input.splitlines()] == [
        "req-2",
        "req-3",
    ]  # the failed part's requests, never the completed part's
    assert pipeline.read(pipeline.result(outcome["job_id"], "not_succeeded.jsonl")) == b""
    (email,) = inbox.messages()
    assert "completed, 4/4 ok" in email["subject"]
