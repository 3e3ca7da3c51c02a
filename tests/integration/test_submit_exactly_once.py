"""Duplicate deliveries, crashes and OpenAI faults still make exactly one batch per object."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest

from batchdrop import runtime
from batchdrop.jobs.launch import SETTLE_FRACTIONS
from local.lambda_runtime import Function
from local.simulator import BatchSimulator
from local.simulator.faults import Fault
from local.template_stack import DeployedStack
from tests.conftest import SleepRecorder
from tests.support import CrashOnce, drop, jsonl, request_lines


def batches_in_table(stack: DeployedStack) -> list[dict[str, Any]]:
    table = boto3.resource("dynamodb").Table(stack.resource("JobsTable"))
    return [item for item in table.scan()["Items"] if item["sk"].startswith("BATCH#")]


def test_the_same_event_twenty_times_in_a_row_makes_one_batch(
    load_function: Callable[[str], Function], bucket: str, openai_sim: BatchSimulator
) -> None:
    event = drop(bucket, "requests/once.jsonl", jsonl(request_lines(3)))
    function = load_function("SubmitFunction")

    results = [function.invoke(event)["outcomes"][0] for _ in range(20)]

    assert openai_sim.count("POST /v1/files") == 1
    assert openai_sim.count("POST /v1/batches") == 1
    assert {r["batch_ids"][0] for r in results} == {results[0]["batch_ids"][0]}


def test_the_same_event_twenty_times_at_once_makes_one_batch(
    load_function: Callable[[str], Function],
    bucket: str,
    stack: DeployedStack,
    openai_sim: BatchSimulator,
) -> None:
    event = drop(bucket, "requests/burst.jsonl", jsonl(request_lines(3)))
    # Twenty execution environments, as Lambda would run twenty concurrent deliveries.
    functions = [load_function("SubmitFunction") for _ in range(20)]

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda f: f.invoke(event)["outcomes"][0], functions))

    assert openai_sim.count("POST /v1/files") == 1
    assert openai_sim.count("POST /v1/batches") == 1
    statuses = {r["status"] for r in results}
    assert statuses <= {"submitted", "in_progress", "duplicate"}
    assert len(batches_in_table(stack)) == 1


@pytest.mark.parametrize(
    ("method", "before"),
    [
        ("record_file", True),  # crashed after the upload, before recording the file
        ("record_file", False),  # crashed after recording the file, before creating the batch
        ("record_batch", True),  # crashed after creating the batch, before recording it
    ],
)
def test_a_retry_after_a_crash_adopts_instead_of_creating_a_second_batch(
    method: str,
    before: bool,
    load_function: Callable[[str], Function],
    bucket: str,
    stack: DeployedStack,
    openai_sim: BatchSimulator,
) -> None:
    event = drop(bucket, "requests/crash.jsonl", jsonl(request_lines(4)))
    function = load_function("SubmitFunction")
    crashing = CrashOnce(function.module.submitter._store, method, before=before)
    function.module.submitter._store = crashing

    with pytest.raises(Exception, match="1 of 1 failed"):
        function.invoke(event)
    assert crashing.crashed
    result = function.invoke(event)  # Lambda's retry of the same event

    (outcome,) = result["outcomes"]
    assert outcome["status"] == "submitted"
    assert openai_sim.count("POST /v1/batches") == 1
    (item,) = batches_in_table(stack)
    assert item["batch_id"] == outcome["batch_ids"][0]
    assert openai_sim.batches[item["batch_id"]]["input_file_id"] == item["file_id"]


OPENAI_CALLS = ["POST /v1/files", "POST /v1/batches"]


@pytest.mark.parametrize("route", OPENAI_CALLS)
@pytest.mark.parametrize("kind", ["429", "500", "502", "503", "drop"])
def test_transient_faults_at_each_call_still_make_exactly_one_batch(
    route: str,
    kind: str,
    load_function: Callable[[str], Function],
    bucket: str,
    openai_sim: BatchSimulator,
    sleeps: Any,
) -> None:
    event = drop(bucket, "requests/faulty.jsonl", jsonl(request_lines(3)))
    openai_sim.faults.inject(route, kind=kind, times=2, retry_after=7)

    result = load_function("SubmitFunction").invoke(event)

    assert result["outcomes"][0]["status"] == "submitted"
    assert openai_sim.count("POST /v1/batches") == 1
    assert openai_sim.count("POST /v1/files") == 1
    # A create that may have taken effect is looked for after each settle wait, not retried.
    settles = route == "POST /v1/batches" and kind != "429"
    assert len(sleeps.waits) == (2 * len(SETTLE_FRACTIONS) if settles else 2)
    if kind == "429":
        assert all(wait >= 7 for wait in sleeps.waits)  # Retry-After was respected


# A short read timeout, so that a "hang" (answered only by the client giving up) ends quickly,
# yet longer than any first backoff (RetryPolicy.base_delay): a backoff must not pass for a
# wait that covers the timeout.
READ_TIMEOUT = 0.6
LANDING_WAIT = 10.0  # a bound on waits that end as soon as the simulator has acted


def creates(sim: BatchSimulator) -> list[tuple[str, str, int]]:
    """Every batch create that reached the simulator, with what its client was told."""
    return [call for call in sim.calls if call[:2] == ("POST", "/v1/batches")]


def land_when_the_wait_covers_the_timeout(fault: Fault) -> Callable[[float], None]:
    """A wait as long as the request's own timeout is when a late call lands; a shorter one
    (a mere backoff) sees OpenAI as it was when the client gave up."""

    def hook(seconds: float) -> None:
        if seconds >= runtime.openai_timeout[1] and not fault.landed.is_set():
            fault.release()
            assert fault.landed.wait(LANDING_WAIT)

    return hook


@pytest.mark.parametrize(("kind", "told"), [("hang", 0), ("drop", 0), ("500", 500)])
def test_a_create_that_lands_after_the_client_gave_up_is_adopted_not_repeated(
    kind: str,
    told: int,
    load_function: Callable[[str], Function],
    bucket: str,
    stack: DeployedStack,
    openai_sim: BatchSimulator,
    sleeps: SleepRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OpenAI performs the create only after the client has timed out, lost the connection or
    been told 500: the launcher's settle wait must outlast that, so it adopts what landed."""
    monkeypatch.setattr(runtime, "openai_timeout", (1.0, READ_TIMEOUT))
    event = drop(bucket, "requests/late.jsonl", jsonl(request_lines(3)))
    fault = openai_sim.faults.inject("POST /v1/batches", kind=kind, lands_late=True, held=True)
    sleeps.hook = land_when_the_wait_covers_the_timeout(fault)

    result = load_function("SubmitFunction").invoke(event)
    fault.release()  # had the launcher not waited, the late create lands now, after its retry

    assert fault.landed.wait(LANDING_WAIT)
    assert result["outcomes"][0]["status"] == "submitted"
    assert creates(openai_sim) == [("POST", "/v1/batches", told)]  # one create, never repeated
    assert len(openai_sim.batches) == 1
    (late_batch,) = openai_sim.batches  # the batch the late create made...
    (item,) = batches_in_table(stack)
    assert item["batch_id"] == late_batch == result["outcomes"][0]["batch_ids"][0]  # ...recorded
    assert sleeps.waits[0] >= READ_TIMEOUT


def test_after_an_ambiguous_create_the_launcher_waits_out_the_timeout_and_looks_twice(
    load_function: Callable[[str], Function],
    bucket: str,
    openai_sim: BatchSimulator,
    sleeps: SleepRecorder,
) -> None:
    """A 500 that really created nothing: the launcher waits at least the request's read timeout,
    looks, waits again, looks again, and only then creates (once) with the same token."""
    event = drop(bucket, "requests/settle.jsonl", jsonl(request_lines(3)))
    openai_sim.faults.inject("POST /v1/batches", kind="500", times=1)

    result = load_function("SubmitFunction").invoke(event)

    read_timeout = runtime.openai_timeout[1]
    assert result["outcomes"][0]["status"] == "submitted"
    assert sleeps.waits[0] >= read_timeout
    assert len(sleeps.waits) >= 2
    batch_calls = [call for call in openai_sim.calls if call[1] == "/v1/batches"]
    assert batch_calls == [
        ("POST", "/v1/batches", 500),
        *[("GET", "/v1/batches", 200)] * len(sleeps.waits),  # a look after every wait
        ("POST", "/v1/batches", 200),
    ]
    (batch,) = openai_sim.batches.values()
    assert batch["metadata"]["submission_token"]


@pytest.mark.parametrize(
    "faulted",
    [
        ["POST /v1/files"],  # the upload is simply sent again: an unused file costs nothing
        ["POST /v1/batches"],
        ["POST /v1/batches", "GET /v1/batches"],  # and the lookup that checks times out too
    ],
)
def test_a_timeout_at_each_call_still_makes_exactly_one_batch(
    faulted: list[str],
    load_function: Callable[[str], Function],
    bucket: str,
    openai_sim: BatchSimulator,
    sleeps: SleepRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every call hangs until the client times out, and then takes effect anyway."""
    monkeypatch.setattr(runtime, "openai_timeout", (1.0, 0.2))
    event = drop(bucket, "requests/slow.jsonl", jsonl(request_lines(3)))
    faults = [openai_sim.faults.inject(r, kind="hang", lands_late=True) for r in faulted]
    sleeps.hook = lambda _seconds: all(f.landed.wait(LANDING_WAIT) for f in faults)

    result = load_function("SubmitFunction").invoke(event)

    assert result["outcomes"][0]["status"] == "submitted"
    assert all(fault.landed.is_set() for fault in faults)
    assert len(creates(openai_sim)) == 1
    assert len(openai_sim.batches) == 1


def test_faults_that_outlast_every_retry_leave_the_event_in_the_dead_letter_queue(
    load_function: Callable[[str], Function],
    bucket: str,
    stack: DeployedStack,
    openai_sim: BatchSimulator,
) -> None:
    event = drop(bucket, "requests/doomed.jsonl", jsonl(request_lines(3)))
    openai_sim.faults.inject("POST /v1/batches", kind="503", times=10_000)
    function = load_function("SubmitFunction")

    outcome = function.invoke_async(event, stack.async_configs["SubmitFunction"])

    assert outcome.error is not None
    assert outcome.attempts == 3  # the first try and the template's two retries
    assert openai_sim.count("POST /v1/batches") == 0
    assert openai_sim.count("POST /v1/files") == 1  # the recorded file is reused by retries
    sqs = boto3.client("sqs")
    dead = sqs.receive_message(QueueUrl=stack.resource("SubmitDeadLetterQueue"))["Messages"]
    record = json.loads(dead[0]["Body"])
    assert record["requestPayload"] == event
    assert record["requestContext"]["condition"] == "RetriesExhausted"

    openai_sim.faults.clear()
    replayed = function.invoke(record["requestPayload"])  # an operator redrives the DLQ
    assert replayed["outcomes"][0]["status"] == "submitted"
    assert openai_sim.count("POST /v1/batches") == 1


@pytest.mark.parametrize("kind", ["429", "500", "drop"])
def test_a_lookup_after_an_ambiguous_create_survives_its_own_faults(
    kind: str,
    load_function: Callable[[str], Function],
    bucket: str,
    openai_sim: BatchSimulator,
) -> None:
    """A dropped create may have made the batch; the lookup that checks is faulted too."""
    event = drop(bucket, "requests/lookup.jsonl", jsonl(request_lines(3)))
    openai_sim.faults.inject("POST /v1/batches", kind="drop", times=1)
    openai_sim.faults.inject("GET /v1/batches", kind=kind, times=2, retry_after=1)

    result = load_function("SubmitFunction").invoke(event)

    assert result["outcomes"][0]["status"] == "submitted"
    assert openai_sim.count("POST /v1/batches") == 1
    assert openai_sim.count("GET /v1/batches") == len(SETTLE_FRACTIONS)  # one answered per look
