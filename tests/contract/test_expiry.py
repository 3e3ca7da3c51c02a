"""Expiration policies as the SDK sends them: `expires_after` on files and uploads,
`output_expires_after` on batches; an expired file is gone."""

from __future__ import annotations

import io
from typing import Any

import openai
import pytest
from openai import OpenAI

from local.simulator import BatchSimulator

from .batch_inputs import CHAT, chat_line, finish, jsonl, result_lines, upload

HOUR = 3600
THIRTY_DAYS = 2_592_000


def _policy(seconds: Any, anchor: Any = "created_at") -> Any:
    return {"anchor": anchor, "seconds": seconds}


def test_a_file_with_expires_after_is_gone_once_it_expires(
    sim: BatchSimulator, client: OpenAI
) -> None:
    created = client.files.create(
        file=("in.jsonl", io.BytesIO(jsonl([chat_line("a")]))),
        purpose="batch",
        expires_after=_policy(2 * HOUR),
    )
    assert created.expires_at == created.created_at + 2 * HOUR
    assert client.files.retrieve(created.id).expires_at == created.expires_at

    sim.clock.advance(2 * HOUR - 1)
    assert client.files.content(created.id).content
    sim.clock.advance(1)

    for gone in (client.files.retrieve, client.files.content, client.files.delete):
        with pytest.raises(openai.NotFoundError):
            gone(created.id)
    assert client.files.list().data == []
    assert not sim.has_file(created.id)


def test_without_a_policy_batch_files_expire_after_30_days_and_others_never(
    sim: BatchSimulator, client: OpenAI
) -> None:
    batch_file = upload(client, jsonl([chat_line("a")]))
    notes = client.files.create(file=("notes.txt", io.BytesIO(b"hi")), purpose="user_data")

    assert (batch_file.expires_at, notes.expires_at) == (batch_file.created_at + THIRTY_DAYS, None)
    sim.clock.advance(THIRTY_DAYS)
    assert sim.file_ids(purpose=None) == [notes.id]


@pytest.mark.parametrize(
    ("policy", "param", "code"),
    [
        (_policy(HOUR - 1), "expires_after.seconds", "integer_below_min_value"),
        (_policy(THIRTY_DAYS + 1), "expires_after.seconds", "integer_above_max_value"),
        (_policy(HOUR, anchor="last_active_at"), "expires_after.anchor", "invalid_value"),
        ({"anchor": "created_at"}, "expires_after.seconds", "missing_required_parameter"),
    ],
)
def test_files_and_uploads_refuse_a_policy_out_of_bounds(
    sim: BatchSimulator, client: OpenAI, policy: Any, param: str, code: str
) -> None:
    with pytest.raises(openai.BadRequestError) as file_refused:
        client.files.create(
            file=("in.jsonl", io.BytesIO(b"{}\n")), purpose="batch", expires_after=policy
        )
    with pytest.raises(openai.BadRequestError) as upload_refused:
        client.uploads.create(
            bytes=3,
            filename="in.jsonl",
            mime_type="application/jsonl",
            purpose="batch",
            expires_after=policy,
        )

    for refused in (file_refused, upload_refused):
        assert (refused.value.body["param"], refused.value.code) == (param, code)  # type: ignore[index]
    assert sim.file_ids(purpose=None) == []


def test_an_upload_passes_its_policy_to_the_file_it_completes_into(
    sim: BatchSimulator, client: OpenAI
) -> None:
    content = jsonl([chat_line("a")])
    started = client.uploads.create(
        bytes=len(content),
        filename="in.jsonl",
        mime_type="application/jsonl",
        purpose="batch",
        expires_after=_policy(HOUR),
    )
    assert started.expires_at == started.created_at + HOUR  # the upload's own hour
    part = client.uploads.parts.create(started.id, data=content)
    sim.clock.advance(600)

    done = client.uploads.complete(started.id, part_ids=[part.id])

    assert done.file is not None
    assert done.file.expires_at == done.file.created_at + HOUR
    assert done.file.created_at == started.created_at + 600


def test_output_expires_after_sets_the_result_files_expiry(
    sim: BatchSimulator, client: OpenAI
) -> None:
    input_file = upload(client, jsonl([chat_line("ok"), chat_line("fail-1")]))
    batch = client.batches.create(
        input_file_id=input_file.id,
        endpoint=CHAT,
        completion_window="24h",
        output_expires_after=_policy(2 * HOUR),
    )
    done = finish(sim, client, batch)
    assert done.output_file_id is not None
    assert done.error_file_id is not None

    results = [
        client.files.retrieve(done.output_file_id),
        client.files.retrieve(done.error_file_id),
    ]

    # Anchored on the files' creation (when the batch completed), not the batch's.
    assert [f.expires_at for f in results] == [done.completed_at + 2 * HOUR] * 2  # type: ignore[operator]
    assert len(result_lines(client, done.output_file_id)) == 1
    sim.clock.advance(done.completed_at + 2 * HOUR - sim.clock.now())  # type: ignore[operator]
    assert sim.files_of(batch.id) == [input_file.id]
    with pytest.raises(openai.NotFoundError):
        client.files.content(done.output_file_id)


@pytest.mark.parametrize(
    ("policy", "code"),
    [
        (_policy(60), "integer_below_min_value"),
        (_policy(THIRTY_DAYS + 1), "integer_above_max_value"),
        (_policy("3600"), "invalid_type"),
    ],
)
def test_batches_refuse_an_output_policy_out_of_bounds(
    client: OpenAI, policy: Any, code: str
) -> None:
    input_file = upload(client, jsonl([chat_line("a")]))

    with pytest.raises(openai.BadRequestError) as refused:
        client.batches.create(
            input_file_id=input_file.id,
            endpoint=CHAT,
            completion_window="24h",
            output_expires_after=policy,
        )

    assert (refused.value.body["param"], refused.value.code) == (  # type: ignore[index]
        "output_expires_after.seconds",
        code,
    )
    assert client.batches.list().data == []


def test_a_batch_runs_on_after_its_input_file_expires(sim: BatchSimulator, client: OpenAI) -> None:
    input_file = client.files.create(
        file=("in.jsonl", io.BytesIO(jsonl([chat_line("a")]))),
        purpose="batch",
        expires_after=_policy(HOUR),
    )
    batch = client.batches.create(
        input_file_id=input_file.id, endpoint=CHAT, completion_window="24h"
    )
    sim.clock.advance(HOUR)

    done = client.batches.retrieve(batch.id)

    assert not sim.has_file(input_file.id)
    assert done.status == "completed"
    assert [line["custom_id"] for line in result_lines(client, done.output_file_id)] == ["a"]
