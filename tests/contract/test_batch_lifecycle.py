"""Every path a batch can take, driven by the manual clock and read through the SDK."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.types import Completion, CreateEmbeddingResponse, ModerationCreateResponse
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from local.simulator import BatchSimulator, batches
from local.simulator.validation import InputScan

from .batch_inputs import (
    Endpoint,
    chat_line,
    finish,
    jsonl,
    line_for,
    result_lines,
    submit,
    upload,
)

START = 1_700_000_000


def _mixed_lines(count: int = 20) -> list[dict[str, Any]]:
    return [chat_line(f"fail-{i}" if i % 5 == 0 else f"req-{i}", "x" * i) for i in range(count)]


def test_completed_walks_every_status_with_consistent_timestamps(
    sim: BatchSimulator, client: OpenAI
) -> None:
    batch = submit(client, _mixed_lines())
    assert (batch.status, batch.created_at, batch.expires_at) == (
        "validating",
        START,
        START + 86400,
    )
    assert batch.request_counts is not None
    assert batch.request_counts.total == 0

    sim.clock.advance(60)
    running = client.batches.retrieve(batch.id)
    assert (running.status, running.in_progress_at) == ("in_progress", START + 60)
    assert running.request_counts is not None
    assert running.request_counts.total == 20

    sim.clock.advance(300)  # halfway through in_progress
    halfway = client.batches.retrieve(batch.id)
    assert halfway.request_counts is not None
    assert halfway.request_counts.completed + halfway.request_counts.failed == 10

    sim.clock.advance(300)
    finalizing = client.batches.retrieve(batch.id)
    assert (finalizing.status, finalizing.finalizing_at) == ("finalizing", START + 660)
    assert finalizing.output_file_id is None  # files only exist once the batch is done

    sim.clock.advance(60)
    done = client.batches.retrieve(batch.id)
    assert (done.status, done.completed_at, done.model) == ("completed", START + 720, "gpt-4o-mini")
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (16, 4)
    assert done.failed_at is None
    assert done.errors is None
    output_file = client.files.retrieve(done.output_file_id or "")
    assert (output_file.purpose, output_file.created_at) == ("batch_output", START + 720)
    assert output_file.filename == f"{batch.id}_output.jsonl"


def test_output_is_shuffled_and_fail_lines_go_to_the_error_file(
    sim: BatchSimulator, client: OpenAI
) -> None:
    lines = _mixed_lines()
    done = finish(sim, client, submit(client, lines))

    outputs = result_lines(client, done.output_file_id)
    failures = result_lines(client, done.error_file_id)

    expected_ok = [line["custom_id"] for line in lines if not line["custom_id"].startswith("fail-")]
    got_ok = [line["custom_id"] for line in outputs]
    assert sorted(got_ok) == sorted(expected_ok)
    assert got_ok != expected_ok  # OpenAI does not keep input order
    assert all(line["response"]["status_code"] == 200 and line["error"] is None for line in outputs)
    assert all(line["id"].startswith("batch_req_") for line in outputs)
    assert sorted(line["custom_id"] for line in failures) == [f"fail-{i}" for i in (0, 10, 15, 5)]
    for line in failures:
        assert line["error"] is None
        assert line["response"]["status_code"] == 400
        assert line["response"]["body"]["error"]["type"] == "invalid_request_error"


def test_usage_is_the_sum_over_successful_lines(sim: BatchSimulator, client: OpenAI) -> None:
    done = finish(sim, client, submit(client, _mixed_lines()))

    bodies = [
        ChatCompletion.model_validate(line["response"]["body"])
        for line in result_lines(client, done.output_file_id)
    ]

    assert done.usage is not None
    assert done.usage.input_tokens == sum(b.usage.prompt_tokens for b in bodies if b.usage)
    assert done.usage.output_tokens == sum(b.usage.completion_tokens for b in bodies if b.usage)
    assert done.usage.total_tokens == done.usage.input_tokens + done.usage.output_tokens
    assert done.usage.output_tokens > 0


def test_same_seed_and_input_give_identical_results(client: OpenAI) -> None:
    def run_once() -> list[dict[str, Any]]:
        with BatchSimulator(api_key="sk-again", seed=7) as other:
            sdk = OpenAI(api_key="sk-again", base_url=other.base_url, max_retries=0)
            done = finish(other, sdk, submit(sdk, _mixed_lines()))
            return result_lines(sdk, done.output_file_id)

    assert run_once() == run_once()


@pytest.mark.parametrize(
    ("endpoint", "model", "shape"),
    [
        ("/v1/chat/completions", "gpt-4o-mini", ChatCompletion),
        ("/v1/responses", "gpt-5-mini", Response),
        ("/v1/embeddings", "text-embedding-3-small", CreateEmbeddingResponse),
        ("/v1/completions", "gpt-3.5-turbo-instruct", Completion),
        ("/v1/moderations", "omni-moderation-latest", ModerationCreateResponse),
    ],
)
def test_each_endpoint_returns_its_real_response_shape(
    sim: BatchSimulator, client: OpenAI, endpoint: Endpoint, model: str, shape: Any
) -> None:
    lines = [line_for(endpoint, f"c{i}", model) for i in range(3)]
    done = finish(sim, client, submit(client, lines, endpoint))

    outputs = result_lines(client, done.output_file_id)

    assert (done.status, done.endpoint, done.model, len(outputs)) == (
        "completed",
        endpoint,
        model,
        3,
    )
    parsed = [shape.model_validate(line["response"]["body"]) for line in outputs]
    if shape is CreateEmbeddingResponse:
        assert [len(p.data) for p in parsed] == [2, 2, 2]
        assert len(parsed[0].data[0].embedding) == 1536
    if shape is Response:
        assert parsed[0].output_text.startswith("Simulated reply to c")
        assert done.usage is not None
        assert done.usage.output_tokens_details.reasoning_tokens > 0


def test_expired_keeps_the_finished_fraction_and_marks_the_rest(
    sim: BatchSimulator, client: OpenAI
) -> None:
    sim.outcomes.push("expired", finished_fraction=0.25)
    batch = submit(client, [chat_line(f"r{i}") for i in range(8)])

    sim.clock.advance(86399)
    assert client.batches.retrieve(batch.id).status == "in_progress"
    sim.clock.advance(1)
    expired = client.batches.retrieve(batch.id)

    assert (expired.status, expired.expired_at) == ("expired", START + 86400)
    assert expired.completed_at is None
    assert expired.request_counts is not None
    assert expired.request_counts.completed == 2
    assert len(result_lines(client, expired.output_file_id)) == 2
    leftovers = result_lines(client, expired.error_file_id)
    assert len(leftovers) == 6
    assert {line["error"]["code"] for line in leftovers} == {"batch_expired"}
    assert all(line["response"] is None for line in leftovers)


def test_cancel_goes_through_cancelling_to_cancelled_with_partial_output(
    sim: BatchSimulator, client: OpenAI
) -> None:
    batch = submit(client, [chat_line(f"r{i}") for i in range(10)])
    sim.clock.advance(60 + 300)  # half of the lines are done

    cancelling = client.batches.cancel(batch.id)
    assert (cancelling.status, cancelling.cancelling_at) == ("cancelling", START + 360)
    assert client.batches.cancel(batch.id).status == "cancelling"  # idempotent

    sim.clock.advance(60)
    cancelled = client.batches.retrieve(batch.id)
    assert (cancelled.status, cancelled.cancelled_at) == ("cancelled", START + 420)
    assert cancelled.finalizing_at is None
    done = result_lines(client, cancelled.output_file_id)
    skipped = result_lines(client, cancelled.error_file_id)
    assert (len(done), len(skipped)) == (5, 5)
    assert {line["error"]["code"] for line in skipped} == {"batch_cancelled"}
    assert {line["custom_id"] for line in done + skipped} == {f"r{i}" for i in range(10)}
    with pytest.raises(openai.ConflictError, match="cancelled"):
        client.batches.cancel(batch.id)


def test_token_limit_exceeded_fails_at_end_of_validating(
    sim: BatchSimulator, client: OpenAI
) -> None:
    sim.outcomes.push("token_limit_exceeded")
    batch = submit(client, [chat_line("a")])

    sim.clock.advance(59)
    assert client.batches.retrieve(batch.id).status == "validating"
    sim.clock.advance(1)
    failed = client.batches.retrieve(batch.id)

    assert (failed.status, failed.failed_at, failed.in_progress_at) == ("failed", START + 60, None)
    assert failed.errors is not None
    assert failed.errors.data is not None
    assert failed.errors.object == "list"
    error = failed.errors.data[0]
    assert error.code == "token_limit_exceeded"
    assert error.message is not None
    assert "Enqueued token limit reached for gpt-4o-mini" in error.message
    assert (failed.output_file_id, failed.error_file_id) == (None, None)


def test_all_failed_completes_without_an_output_file(sim: BatchSimulator, client: OpenAI) -> None:
    sim.outcomes.push("all_failed")
    done = finish(sim, client, submit(client, _mixed_lines(10)))

    failures = result_lines(client, done.error_file_id)

    assert (done.status, done.output_file_id) == ("completed", None)
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (0, 10)
    assert {line["response"]["status_code"] for line in failures} == {400, 500}
    assert done.usage is not None
    assert done.usage.total_tokens == 0


@pytest.mark.parametrize(
    ("outcome", "held_status"),
    [
        ("stuck_validating", "validating"),
        ("stuck_finalizing", "finalizing"),
    ],
)
def test_stuck_batches_wait_for_release(
    sim: BatchSimulator, client: OpenAI, outcome: str, held_status: str
) -> None:
    sim.outcomes.push(outcome)
    batch = submit(client, [chat_line("a"), chat_line("b")])

    sim.clock.advance(5000)
    assert client.batches.retrieve(batch.id).status == held_status

    sim.release(batch.id)
    released_at = int(sim.clock.now())
    if outcome == "stuck_validating":
        sim.clock.advance(1)
        resumed = client.batches.retrieve(batch.id)
        assert (resumed.status, resumed.in_progress_at) == ("in_progress", released_at)
        sim.clock.advance(600 + 60)
    done = client.batches.retrieve(batch.id)
    assert done.status == "completed"
    assert len(result_lines(client, done.output_file_id)) == 2


def test_outcomes_are_consumed_in_order(sim: BatchSimulator, client: OpenAI) -> None:
    sim.outcomes.push("token_limit_exceeded", count=2)
    batches = [submit(client, [chat_line("a")]) for _ in range(3)]
    sim.clock.advance(60 * 12 + 1)

    statuses = [client.batches.retrieve(b.id).status for b in batches]

    assert statuses == ["failed", "failed", "completed"]
    assert sim.batches[batches[2].id]["status"] == "completed"


def test_create_answers_while_the_file_is_still_being_read(
    sim: BatchSimulator, client: OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    reading = threading.Event()
    may_finish = threading.Event()
    scan = batches.scan_input

    def slow_scan(path: Path, endpoint: str) -> InputScan:
        reading.set()
        assert may_finish.wait(30)
        return scan(path, endpoint)

    monkeypatch.setattr(batches, "scan_input", slow_scan)

    created = submit(client, [chat_line("a"), chat_line("b")])
    assert reading.wait(30)
    seen_while_reading = client.batches.retrieve(created.id)
    may_finish.set()
    sim.clock.advance(60)
    running = client.batches.retrieve(created.id)

    assert (created.status, seen_while_reading.status) == ("validating", "validating")
    assert created.model is None  # known once the file has been read, as the counts are
    assert running.status == "in_progress"
    assert running.request_counts is not None
    assert running.request_counts.total == 2
    assert running.model == "gpt-4o-mini"


def test_a_chooser_picks_each_batch_outcome_from_its_metadata(
    sim: BatchSimulator, client: OpenAI
) -> None:
    """Concurrent creates get their own scripted outcome, whatever order they arrive in."""
    failing = batches.Outcome("all_failed")
    sim.outcomes.choose_with(lambda meta: failing if (meta or {}).get("job") == "b" else None)
    created = {
        job: client.batches.create(
            input_file_id=upload(client, jsonl([chat_line(job)])).id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"job": job},
        )
        for job in ("b", "a")
    }
    sim.clock.advance(3600)
    done = {job: client.batches.retrieve(batch.id) for job, batch in created.items()}

    assert done["a"].output_file_id is not None
    assert (done["b"].status, done["b"].output_file_id) == ("completed", None)


def test_lines_missing_from_both_files(sim: BatchSimulator, client: OpenAI) -> None:
    sim.outcomes.push("completed", missing_lines=2)
    done = finish(sim, client, submit(client, [chat_line(f"r{i}") for i in range(5)]))

    assert done.request_counts is not None
    assert done.request_counts.completed == 5  # OpenAI counts them, then loses them
    assert len(result_lines(client, done.output_file_id)) == 3
    assert done.error_file_id is None
