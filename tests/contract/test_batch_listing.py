"""GET /v1/batches: newest first, cursor pagination with after/limit/has_more."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI

from local.simulator import BatchSimulator

from .batch_inputs import CHAT, chat_line, jsonl, upload


def test_pages_walk_all_batches_newest_first(sim: BatchSimulator, client: OpenAI) -> None:
    input_file = upload(client, jsonl([chat_line("a")]))
    created = []
    for _ in range(5):
        created.append(
            client.batches.create(
                input_file_id=input_file.id, endpoint=CHAT, completion_window="24h"
            ).id
        )
        sim.clock.advance(1)
    newest_first = created[::-1]

    first = client.batches.list(limit=2)
    assert [b.id for b in first.data] == newest_first[:2]
    assert first.has_more is True
    second = client.batches.list(limit=2, after=first.data[-1].id)
    assert [b.id for b in second.data] == newest_first[2:4]
    last = client.batches.list(limit=2, after=second.data[-1].id)
    assert ([b.id for b in last.data], last.has_more) == (newest_first[4:], False)

    # The SDK's auto-pagination follows the same cursor.
    assert [b.id for b in client.batches.list(limit=2)] == newest_first
    assert sim.count("GET /v1/batches") == 6


def test_default_limit_is_20_and_limit_above_100_is_rejected(client: OpenAI) -> None:
    input_file = upload(client, jsonl([chat_line("a")]))
    for _ in range(21):
        client.batches.create(input_file_id=input_file.id, endpoint=CHAT, completion_window="24h")

    page = client.batches.list()

    assert (len(page.data), page.has_more) == (20, True)
    raw = client.batches.with_raw_response.list(limit=20).http_response.json()
    assert raw["first_id"] == page.data[0].id
    assert raw["last_id"] == page.data[-1].id
    with pytest.raises(openai.BadRequestError):
        client.batches.list(limit=101)
