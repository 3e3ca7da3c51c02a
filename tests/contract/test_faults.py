"""Injected faults, as the official SDK experiences them."""

from __future__ import annotations

import time

import openai
import pytest
from openai import OpenAI

from local.simulator import BatchSimulator, server

from .batch_inputs import chat_line, jsonl, submit, upload


def test_429_carries_retry_after_and_rate_limit_body(sim: BatchSimulator, client: OpenAI) -> None:
    sim.faults.inject("POST /v1/files", kind="429", times=1, retry_after=7)

    with pytest.raises(openai.RateLimitError) as limited:
        upload(client, jsonl([chat_line("a")]))

    assert limited.value.response.headers["retry-after"] == "7"
    assert limited.value.code == "rate_limit_exceeded"
    assert sim.calls[-1] == ("POST", "/v1/files", 429)
    assert upload(client, jsonl([chat_line("a")])).bytes > 0  # only the next call was hit


def test_sdk_retries_a_429_with_retry_after_zero(sim: BatchSimulator) -> None:
    sim.faults.inject("POST /v1/files", kind="429", times=1, retry_after=0)
    retrying = OpenAI(api_key=sim.api_key, base_url=sim.base_url, max_retries=2)

    created = upload(retrying, jsonl([chat_line("a")]))

    assert created.id.startswith("file-")
    assert [c for c in sim.calls if c[1] == "/v1/files"] == [
        ("POST", "/v1/files", 429),
        ("POST", "/v1/files", 200),
    ]
    assert sim.count("POST /v1/files") == 1


@pytest.mark.parametrize("status", ["500", "502", "503"])
def test_5xx_raise_internal_server_error_for_the_given_times(
    sim: BatchSimulator, client: OpenAI, status: str
) -> None:
    batch = submit(client, [chat_line("a")])
    sim.faults.inject("GET /v1/batches/{batch_id}", kind=status, times=2)

    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as failed:
            client.batches.retrieve(batch.id)
        assert failed.value.status_code == int(status)
        assert failed.value.type == "server_error"
    assert client.batches.retrieve(batch.id).id == batch.id
    assert [c[2] for c in sim.calls if c[1] == "/v1/batches/{batch_id}"] == [int(status)] * 2 + [
        200
    ]


def test_drop_closes_the_connection_without_a_response(sim: BatchSimulator, client: OpenAI) -> None:
    input_file = upload(client, jsonl([chat_line("a")]))
    sim.faults.inject("POST /v1/batches", kind="drop", times=1)

    with pytest.raises(openai.APIConnectionError):
        client.batches.create(
            input_file_id=input_file.id, endpoint="/v1/chat/completions", completion_window="24h"
        )

    assert sim.calls[-1] == ("POST", "/v1/batches", 0)
    assert list(sim.batches) == []  # the dropped call created nothing
    created = client.batches.create(
        input_file_id=input_file.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert list(sim.batches) == [created.id]


def test_latency_faults_and_persistent_latency_slow_calls_down(
    sim: BatchSimulator, client: OpenAI
) -> None:
    sim.faults.inject("*", kind="latency", times=2, delay=0.15)

    started = time.perf_counter()
    client.batches.list()
    client.files.list()
    delayed = time.perf_counter() - started
    started = time.perf_counter()
    client.batches.list()
    undelayed = time.perf_counter() - started
    sim.latency = 0.1
    started = time.perf_counter()
    client.batches.list()
    persistent = time.perf_counter() - started

    assert delayed >= 0.3
    assert undelayed < 0.1
    assert persistent >= 0.1
    assert sim.count("GET /v1/batches") == 3


def test_a_link_rate_paces_request_bodies(
    sim: BatchSimulator, client: OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    monkeypatch.setattr(server.time, "sleep", waits.append)  # recorded, not waited
    sim.link_bytes_per_second = 1000.0
    content = jsonl([chat_line(f"r{i}") for i in range(40)])

    created = upload(client, content)

    assert created.bytes == len(content)
    assert max(waits) >= len(content) / 1000.0  # the whole body, plus the multipart framing
