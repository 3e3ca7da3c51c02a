"""Files API: upload, retrieve, download, list, delete, and OpenAI's own upload checks."""

from __future__ import annotations

import io

import openai
import pytest
from openai import OpenAI

from local.simulator import BatchSimulator

from .batch_inputs import chat_line, finish, jsonl, submit, upload


def test_upload_retrieve_download_round_trip(sim: BatchSimulator, client: OpenAI) -> None:
    content = jsonl([chat_line("a"), chat_line("b")])

    created = upload(client, content, name="requests.jsonl")
    fetched = client.files.retrieve(created.id)

    assert created.id.startswith("file-")
    assert (fetched.bytes, fetched.filename, fetched.purpose) == (
        len(content),
        "requests.jsonl",
        "batch",
    )
    assert fetched.created_at == int(sim.clock.now())
    assert fetched.expires_at == fetched.created_at + 30 * 24 * 3600
    assert client.files.content(created.id).content == content
    assert sim.file_bytes(created.id) == content


def test_delete_returns_file_deleted_and_then_404(client: OpenAI) -> None:
    created = upload(client, jsonl([chat_line("a")]))

    deleted = client.files.delete(created.id)

    assert (deleted.id, deleted.deleted, deleted.object) == (created.id, True, "file")
    with pytest.raises(openai.NotFoundError) as missing:
        client.files.retrieve(created.id)
    assert missing.value.body == {
        "message": f"No such File object: {created.id}",
        "type": "invalid_request_error",
        "param": "id",
        "code": None,
    }
    with pytest.raises(openai.NotFoundError):
        client.files.content(created.id)
    with pytest.raises(openai.NotFoundError):
        client.files.delete(created.id)


def test_batch_purpose_requires_jsonl_extension(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as rejected:
        client.files.create(file=("input.csv", io.BytesIO(b"a,b\n")), purpose="batch")
    assert rejected.value.status_code == 400
    assert "Must be .jsonl" in rejected.value.message
    assert client.files.list().data == []


def test_unknown_purpose_is_rejected(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as rejected:
        client.files.create(file=("x.jsonl", io.BytesIO(b"{}\n")), purpose="nonsense")  # type: ignore[arg-type]
    assert rejected.value.body["param"] == "purpose"  # type: ignore[index]


def test_list_files_newest_first_and_filtered_by_purpose(
    sim: BatchSimulator, client: OpenAI
) -> None:
    first = upload(client, jsonl([chat_line("a")]))
    sim.clock.advance(5)
    second = upload(client, jsonl([chat_line("b")]))

    listed = client.files.list(purpose="batch")

    assert [f.id for f in listed.data] == [second.id, first.id]
    assert client.files.list(purpose="fine-tune").data == []


def test_a_failed_delete_deletes_nothing_and_the_next_one_succeeds(
    sim: BatchSimulator, client: OpenAI
) -> None:
    kept, other = upload(client, jsonl([chat_line("a")])), upload(client, jsonl([chat_line("b")]))
    sim.fail_deletes(times=2, kind="503", file_id=kept.id)

    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            client.files.delete(kept.id)
    assert client.files.delete(other.id).deleted  # only the named file's deletes fail
    assert sim.has_file(kept.id)
    deleted = client.files.delete(kept.id)

    assert (deleted.id, deleted.deleted) == (kept.id, True)
    assert sim.deleted_file_ids() == [other.id, kept.id]
    assert sim.file_ids(purpose=None) == []
    assert sim.count("DELETE /v1/files/{file_id}") == 2


def test_the_simulator_reports_which_of_a_batchs_files_remain(
    sim: BatchSimulator, client: OpenAI
) -> None:
    batch = submit(client, [chat_line("ok"), chat_line("fail-1")])
    done = finish(sim, client, batch)
    named = [done.input_file_id, done.output_file_id, done.error_file_id]
    assert sim.files_of(batch.id) == named

    for file_id in named:
        client.files.delete(file_id or "")

    assert sim.files_of(batch.id) == []
    assert sim.batch_input_bytes(batch.id) == jsonl([chat_line("ok"), chat_line("fail-1")])
