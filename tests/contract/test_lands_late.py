"""The simulator's `lands_late` and `hang` faults, as the official SDK experiences them: the
client is given a failure, and only afterwards does the call take effect."""

from __future__ import annotations

import time
from collections.abc import Iterator

import openai
import pytest
from openai import OpenAI

from local.simulator import BatchSimulator
from tests.contract.batch_inputs import chat_line, jsonl, upload
from tests.contract.conftest import API_KEY

CLIENT_TIMEOUT = 0.3  # seconds; a "hang" is only ever ended by this (or the fault's cap)
LANDING_WAIT = 10.0  # a bound on a wait that ends as soon as the call has landed


@pytest.fixture
def client(sim: BatchSimulator) -> Iterator[OpenAI]:
    """The conftest's simulator, with a client that gives up quickly and never retries."""
    sdk = OpenAI(api_key=API_KEY, base_url=sim.base_url, max_retries=0, timeout=CLIENT_TIMEOUT)
    yield sdk
    sdk.close()


def create(client: OpenAI, file_id: str) -> None:
    client.batches.create(
        input_file_id=file_id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"submission_token": "late-1"},
    )


@pytest.mark.parametrize(
    ("kind", "seen", "logged"),
    [
        ("drop", openai.APIConnectionError, 0),
        ("500", openai.InternalServerError, 500),
        ("503", openai.InternalServerError, 503),
        ("hang", openai.APITimeoutError, 0),
    ],
)
def test_a_late_landing_fails_first_and_creates_afterwards(
    kind: str, seen: type[Exception], logged: int, sim: BatchSimulator, client: OpenAI
) -> None:
    file_id = upload(client, jsonl([chat_line("a")])).id
    fault = sim.faults.inject("POST /v1/batches", kind=kind, lands_late=True)

    with pytest.raises(seen):
        create(client, file_id)

    assert fault.landed.wait(LANDING_WAIT)
    assert fault.landed_status == 200
    (batch,) = sim.batches.values()
    assert batch["metadata"] == {"submission_token": "late-1"}
    # The log keeps what the client was told; the call itself was made only once.
    assert [c for c in sim.calls if c[1] == "/v1/batches"] == [("POST", "/v1/batches", logged)]


def test_a_hang_without_landing_creates_nothing(sim: BatchSimulator, client: OpenAI) -> None:
    file_id = upload(client, jsonl([chat_line("a")])).id
    fault = sim.faults.inject("POST /v1/batches", kind="hang")

    with pytest.raises(openai.APITimeoutError):
        create(client, file_id)

    assert not fault.landed.is_set()
    assert list(sim.batches) == []


def test_a_hang_ends_at_its_cap_when_the_client_waits_longer(sim: BatchSimulator) -> None:
    patient = OpenAI(api_key=API_KEY, base_url=sim.base_url, max_retries=0, timeout=30.0)
    fault = sim.faults.inject("GET /v1/batches", kind="hang", delay=0.2, lands_late=True)

    started = time.monotonic()
    with pytest.raises(openai.APIConnectionError):
        patient.batches.list()

    assert time.monotonic() - started < 10  # the cap, not the client's 30 s, ended it
    assert fault.landed.wait(LANDING_WAIT)
    assert sim.count("GET /v1/batches") == 0  # the client never got the 200
    patient.close()


@pytest.mark.parametrize("kind", ["429", "latency"])
def test_only_failures_that_may_have_taken_effect_can_land_late(
    kind: str, sim: BatchSimulator
) -> None:
    with pytest.raises(ValueError, match="land late"):
        sim.faults.inject("POST /v1/batches", kind=kind, lands_late=True)


def test_a_held_late_call_lands_only_once_released(sim: BatchSimulator, client: OpenAI) -> None:
    file_id = upload(client, jsonl([chat_line("a")])).id
    fault = sim.faults.inject("POST /v1/batches", kind="500", lands_late=True, held=True)

    with pytest.raises(openai.InternalServerError):
        create(client, file_id)
    listed_while_held = [batch.id for batch in client.batches.list()]
    fault.release()

    assert listed_while_held == []
    assert fault.landed.wait(LANDING_WAIT)
    assert len(sim.batches) == 1
