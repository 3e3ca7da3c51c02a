"""Uploads API: create, add parts, complete (into a File usable by a batch), cancel."""

from __future__ import annotations

import hashlib

import openai
import pytest
from openai import OpenAI

from local.simulator import BatchSimulator

from .batch_inputs import CHAT, chat_line, jsonl


def _start(client: OpenAI, size: int, name: str = "big.jsonl"):  # type: ignore[no-untyped-def]
    return client.uploads.create(
        bytes=size, filename=name, mime_type="application/jsonl", purpose="batch"
    )


def test_parts_complete_in_given_order_into_a_batch_ready_file(
    sim: BatchSimulator, client: OpenAI
) -> None:
    content = jsonl([chat_line(f"r{i}") for i in range(6)])
    head, tail = content[:100], content[100:]
    upload = _start(client, len(content))
    assert (upload.status, upload.expires_at - upload.created_at) == ("pending", 3600)

    # Parts may arrive in any order; complete() decides the order.
    tail_part = client.uploads.parts.create(upload.id, data=tail)
    head_part = client.uploads.parts.create(upload.id, data=head)
    assert (tail_part.object, tail_part.upload_id) == ("upload.part", upload.id)

    done = client.uploads.complete(
        upload.id,
        part_ids=[head_part.id, tail_part.id],
        md5=hashlib.md5(content, usedforsecurity=False).hexdigest(),
    )

    assert done.status == "completed"
    assert done.file is not None
    assert (done.file.bytes, done.file.filename, done.file.purpose) == (
        len(content),
        "big.jsonl",
        "batch",
    )
    assert client.files.content(done.file.id).content == content
    batch = client.batches.create(
        input_file_id=done.file.id, endpoint=CHAT, completion_window="24h"
    )
    sim.clock.advance(61)
    assert client.batches.retrieve(batch.id).request_counts.total == 6  # type: ignore[union-attr]


def test_complete_rejects_byte_count_mismatch(client: OpenAI) -> None:
    upload = _start(client, 10)
    part = client.uploads.parts.create(upload.id, data=b"12345")

    with pytest.raises(openai.BadRequestError) as rejected:
        client.uploads.complete(upload.id, part_ids=[part.id])

    assert "(5) does not match" in rejected.value.message
    assert "(10)" in rejected.value.message


def test_complete_rejects_wrong_md5_and_unknown_parts(client: OpenAI) -> None:
    upload = _start(client, 4)
    part = client.uploads.parts.create(upload.id, data=b"abcd")

    with pytest.raises(openai.BadRequestError, match="md5"):
        client.uploads.complete(upload.id, part_ids=[part.id], md5="0" * 32)
    with pytest.raises(openai.BadRequestError, match="part_1nvalid"):
        client.uploads.complete(upload.id, part_ids=["part_1nvalid"])
    # Failed attempts leave the upload usable.
    assert client.uploads.complete(upload.id, part_ids=[part.id]).status == "completed"


def test_cancel_stops_further_parts(client: OpenAI) -> None:
    upload = _start(client, 4)

    cancelled = client.uploads.cancel(upload.id)

    assert (cancelled.status, cancelled.file) == ("cancelled", None)
    with pytest.raises(openai.BadRequestError, match="cancelled"):
        client.uploads.parts.create(upload.id, data=b"abcd")


def test_upload_expires_after_an_hour(sim: BatchSimulator, client: OpenAI) -> None:
    upload = _start(client, 4)
    sim.clock.advance(3600)

    with pytest.raises(openai.BadRequestError, match="expired"):
        client.uploads.parts.create(upload.id, data=b"abcd")


def test_part_larger_than_64_mb_is_rejected(client: OpenAI) -> None:
    limit = 64 * 1024 * 1024
    upload = _start(client, limit + 1)

    with pytest.raises(openai.BadRequestError) as rejected:
        client.uploads.parts.create(upload.id, data=b"x" * (limit + 1))

    assert rejected.value.body["param"] == "data"  # type: ignore[index]


def test_batch_upload_needs_jsonl_name_and_unknown_upload_is_404(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="jsonl"):
        _start(client, 10, name="input.txt")
    with pytest.raises(openai.NotFoundError):
        client.uploads.cancel("upload_doesnotexist")
