"""OpenAI's checks: synchronous ones on create (400/404) and file checks at `validating`."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from openai import OpenAI

from local.simulator import BatchSimulator

from .batch_inputs import CHAT, chat_line, jsonl, submit, upload


def _failed_errors(sim: BatchSimulator, client: OpenAI, content: bytes) -> list[Any]:
    batch = submit(client, content)
    assert batch.status == "validating"  # problems in the file only show up later
    sim.clock.advance(60)
    failed = client.batches.retrieve(batch.id)
    assert failed.status == "failed"
    assert failed.errors is not None
    assert failed.errors.data
    assert failed.request_counts is not None
    assert failed.request_counts.total == 0
    return failed.errors.data


def _with(line: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**line, **changes}


@pytest.mark.parametrize(
    ("content", "code", "line_number"),
    [
        (jsonl([chat_line("a"), chat_line("b"), chat_line("a")]), "duplicate_custom_id", 3),
        (jsonl([chat_line("a"), _with(chat_line("b"), url="/v1/embeddings")]), "url_mismatch", 2),
        (jsonl([chat_line("a"), chat_line("b", model="gpt-4o")]), "model_mismatch", 2),
        (jsonl([chat_line("a")]) + b"{not json\n", "invalid_json_line", 2),
        (jsonl([_with(chat_line("a"), method="GET")]), "invalid_method", 1),
        (b"\n\n", "empty_file", None),
    ],
)
def test_file_problems_fail_the_batch_at_the_end_of_validating(
    sim: BatchSimulator, client: OpenAI, content: bytes, code: str, line_number: int | None
) -> None:
    errors = _failed_errors(sim, client, content)

    assert [(e.code, e.line) for e in errors] == [(code, line_number)]
    assert errors[0].message


def test_more_than_50000_requests_is_too_many_tasks(sim: BatchSimulator, client: OpenAI) -> None:
    line = (
        '{"custom_id": "r%d", "method": "POST", "url": "/v1/chat/completions", '
        '"body": {"model": "m", "messages": []}}\n'
    )
    content = "".join(line % i for i in range(50_001)).encode()

    errors = _failed_errors(sim, client, content)

    assert [e.code for e in errors] == ["too_many_tasks"]


@pytest.mark.slow
def test_input_over_200_mb_is_rejected(sim: BatchSimulator, client: OpenAI) -> None:
    limit = 200 * 1024 * 1024
    first = json.dumps(chat_line("a")).encode() + b"\n"
    content = first + b" " * (limit + 1 - len(first))

    errors = _failed_errors(sim, client, content)

    assert [e.code for e in errors] == ["file_too_large"]


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"endpoint": "/v1/audio/speech"}, "endpoint"),
        ({"completion_window": "1h"}, "completion_window"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"metadata": {"k" * 65: "v"}}, "metadata"),
        ({"metadata": {"key": "v" * 513}}, "metadata.key"),
    ],
)
def test_invalid_create_parameters_are_400(
    client: OpenAI, changes: dict[str, Any], param: str
) -> None:
    input_file = upload(client, jsonl([chat_line("a")]))
    request = {"input_file_id": input_file.id, "endpoint": CHAT, "completion_window": "24h"}

    with pytest.raises(openai.BadRequestError) as rejected:
        client.batches.create(**{**request, **changes})

    assert rejected.value.body["param"] == param  # type: ignore[index]
    assert client.batches.list().data == []


def test_metadata_at_the_limits_is_accepted(client: OpenAI) -> None:
    input_file = upload(client, jsonl([chat_line("a")]))
    metadata = {f"{i:02d}" + "k" * 62: "v" * 512 for i in range(16)}

    batch = client.batches.create(
        input_file_id=input_file.id, endpoint=CHAT, completion_window="24h", metadata=metadata
    )

    assert batch.metadata == metadata


def test_missing_input_file_is_404_and_wrong_purpose_is_400(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.batches.create(input_file_id="file-nope", endpoint=CHAT, completion_window="24h")
    upload_id = client.uploads.create(
        bytes=2, filename="notes.txt", mime_type="text/plain", purpose="user_data"
    ).id
    part = client.uploads.parts.create(upload_id, data=b"hi")
    other = client.uploads.complete(upload_id, part_ids=[part.id]).file
    assert other is not None
    with pytest.raises(openai.BadRequestError, match="purpose 'batch'"):
        client.batches.create(input_file_id=other.id, endpoint=CHAT, completion_window="24h")


def test_metadata_comes_back_unchanged_unicode_included(client: OpenAI) -> None:
    input_file = upload(client, jsonl([chat_line("a")]))
    metadata = {"customer_id": "user_123", "batch_description": "Nächtlicher Lauf — 夜間 🌙"}

    created = client.batches.create(
        input_file_id=input_file.id, endpoint=CHAT, completion_window="24h", metadata=metadata
    )

    assert created.metadata == metadata
    assert client.batches.retrieve(created.id).metadata == metadata
    assert client.batches.list().data[0].metadata == metadata


def test_a_metadata_value_must_be_a_string(client: OpenAI) -> None:
    input_file = upload(client, jsonl([chat_line("a")]))

    with pytest.raises(openai.BadRequestError) as rejected:
        client.batches.create(
            input_file_id=input_file.id,
            endpoint=CHAT,
            completion_window="24h",
            metadata={"count": 3},  # type: ignore[dict-item]
        )

    assert (rejected.value.body["param"], rejected.value.code) == ("metadata.count", "invalid_type")  # type: ignore[index]
