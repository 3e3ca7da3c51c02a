"""The poll's safety net: batches that share a submission token are duplicates; every one but
the batch recorded on its part is cancelled at once, recorded on the part, and counted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from local.inbox import Inbox
from local.lambda_runtime import Function
from local.simulator import BatchSimulator
from local.template_stack import DeployedStack
from tests.conftest import SIM_API_KEY
from tests.integration.test_observability import emitted_metrics
from tests.pipeline import Pipeline
from tests.support import jsonl, request_lines


def create_on_openai(pipeline: Pipeline, file_id: str, metadata: dict[str, str]) -> str:
    """A batch made behind batchdrop's back, as a late create that lost the race would be."""
    response = requests.post(
        f"{pipeline.sim.base_url}/batches",
        headers={"Authorization": f"Bearer {SIM_API_KEY}"},
        json={
            "input_file_id": file_id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            "metadata": metadata,
        },
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["id"])


def submitted_part(pipeline: Pipeline, key: str) -> dict[str, Any]:
    outcome = pipeline.submit(key, jsonl(request_lines(3)))
    (part,) = pipeline.parts(outcome["job_id"])
    return part


def test_a_tick_cancels_a_second_batch_that_carries_a_recorded_token(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    part = submitted_part(pipeline, "requests/twice.jsonl")
    recorded = part["batch_id"]
    metadata = pipeline.sim.batches[recorded]["metadata"]
    duplicate = create_on_openai(pipeline, part["file_id"], metadata)
    pipeline.sim.calls.clear()
    capsys.readouterr()

    pipeline.tick()

    assert pipeline.sim.batches[duplicate]["status"] in {"cancelling", "cancelled"}
    assert pipeline.sim.batches[recorded]["status"] not in {"cancelling", "cancelled"}
    (after,) = pipeline.parts(part["job_id"])
    assert after["duplicates_cancelled"] == [duplicate]
    assert after["batch_id"] == recorded
    assert emitted_metrics(capsys.readouterr().out)["DuplicateBatchesCancelled"] == 1
    assert pipeline.sim.count("GET /v1/batches") == 1
    assert pipeline.sim.count("POST /v1/batches/{batch_id}/cancel") == 1

    pipeline.tick()  # a cancelled duplicate is not cancelled, nor recorded, twice

    assert pipeline.sim.count("POST /v1/batches/{batch_id}/cancel") == 1
    assert pipeline.parts(part["job_id"])[0]["duplicates_cancelled"] == [duplicate]


def test_ticks_that_find_no_duplicates_list_once_and_cancel_nothing(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("one", "two", "three"):
        submitted_part(pipeline, f"requests/{name}.jsonl")
    pipeline.sim.calls.clear()
    capsys.readouterr()

    pipeline.tick()
    pipeline.tick()

    assert pipeline.sim.count("GET /v1/batches") == 2  # one listing per tick, not per batch
    assert pipeline.sim.count("POST /v1/batches/{batch_id}/cancel") == 0
    assert "DuplicateBatchesCancelled" not in emitted_metrics(capsys.readouterr().out)


def test_batches_sharing_a_token_no_part_records_yet_are_left_to_their_launch(
    pipeline: Pipeline,
) -> None:
    part = submitted_part(pipeline, "requests/inflight.jsonl")
    metadata = {**pipeline.sim.batches[part["batch_id"]]["metadata"], "submission_token": "next"}
    twins = [create_on_openai(pipeline, part["file_id"], metadata) for _ in range(2)]

    pipeline.tick()

    assert all(pipeline.sim.batches[twin]["status"] != "cancelling" for twin in twins)
    assert "duplicates_cancelled" not in pipeline.parts(part["job_id"])[0]


def test_a_failing_safety_net_does_not_stop_the_tick(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    part = submitted_part(pipeline, "requests/netless.jsonl")
    pipeline.sim.faults.inject("GET /v1/batches", kind="503", times=6)  # outlasts every retry
    capsys.readouterr()

    summary = pipeline.tick()

    assert summary["refreshed"] == 1
    assert summary["errors"] == 0
    assert pipeline.sim.count("GET /v1/batches/{batch_id}") == 1
    assert emitted_metrics(capsys.readouterr().out)["DuplicateSweepFailed"] == 1
    assert pipeline.parts(part["job_id"])[0]["batch_id"] == part["batch_id"]


def test_what_a_duplicate_ran_before_it_could_be_cancelled_counts_and_is_never_resent(
    load_function: Callable[..., Function],
    stack: DeployedStack,
    openai_sim: BatchSimulator,
    inbox: Inbox,
) -> None:
    """The recorded batch expires having run nothing, while a duplicate of it (a create that
    landed later than every look for it) ran every request before any tick saw it: those
    results are the job's, and ResubmitUnfinished must not pay for them again."""
    pipeline = Pipeline(load_function, stack, openai_sim, inbox, RESUBMIT_UNFINISHED="true")
    openai_sim.outcomes.push("expired", finished_fraction=0.0)  # the recorded batch
    openai_sim.outcomes.push("completed")  # its duplicate
    part = submitted_part(pipeline, "requests/paid.jsonl")
    metadata = pipeline.sim.batches[part["batch_id"]]["metadata"]
    duplicate = create_on_openai(pipeline, part["file_id"], metadata)
    pipeline.clock.advance(25 * 3600)  # both have ended before any tick

    job = pipeline.run(part["job_id"])

    assert job["status"] == "completed"
    assert (job["succeeded"], job["unfinished"]) == (3, 0)
    assert pipeline.sim.count("POST /v1/batches") == 2  # no follow-up paid for them again
    (after,) = pipeline.parts(part["job_id"])
    assert after["duplicate_batch_ids"] == {duplicate}
    assert "duplicates_cancelled" not in after  # it had ended: nothing to cancel
    results = pipeline.read_jsonl(pipeline.result(part["job_id"]))
    assert {r["status"] for r in results} == {"succeeded"}
    assert job["usage"]["total_tokens"] == pipeline.sim.batches[duplicate]["usage"]["total_tokens"]
    (email,) = inbox.messages()
    assert "completed, 3/3 ok" in email["subject"]
