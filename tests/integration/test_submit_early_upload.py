"""A file that can go as it is uploads while it is validated, and never ahead of validation."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from batchdrop.adapters.s3_objects import S3Objects
from batchdrop.domain.approval import ApprovedBytes
from batchdrop.domain.lines import Readable
from local.lambda_runtime import Function
from local.simulator import BatchSimulator
from tests.support import drop, jsonl, request_lines

# Past the 1 MiB the upload waits for before it starts, so the two can run side by side.
LINES = 12_000
# Validation holds here until the upload has sent something (or was abandoned), so the
# interleaving under test happens on every run instead of when the scheduler allows.
HOLD_VALIDATION_AT = 3 * 1024 * 1024 // 2
WAIT_LIMIT_SECONDS = 30  # only a failing run waits this long


class SentChunks:
    """Every chunk the early upload passed on: where it ended, and how far was approved then."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[tuple[int, int]] = []
        self.abandoned_at: list[int] = []
        self.upload_moved = threading.Event()  # a chunk sent, or the upload abandoned
        follow, abandon, open_object = ApprovedBytes.follow, ApprovedBytes.abandon, S3Objects.open
        spy = self

        def recording_follow(
            approved: ApprovedBytes, chunks: Iterable[bytes], start: int
        ) -> Iterator[bytes]:
            position = start
            for chunk in follow(approved, chunks, start):
                position += len(chunk)
                spy.sent.append((position, approved.until))
                spy.upload_moved.set()
                yield chunk

        def recording_abandon(approved: ApprovedBytes) -> None:
            spy.abandoned_at.append(approved.until)
            spy.upload_moved.set()
            abandon(approved)

        def holding_open(objects: S3Objects, *args: Any, **kwargs: Any) -> Readable:
            body = open_object(objects, *args, **kwargs)
            held = HeldAt(body, HOLD_VALIDATION_AT, spy.upload_moved)
            return held if reads_the_whole_object(kwargs) else body

        monkeypatch.setattr(ApprovedBytes, "follow", recording_follow)
        monkeypatch.setattr(ApprovedBytes, "abandon", recording_abandon)
        monkeypatch.setattr(S3Objects, "open", holding_open)


def reads_the_whole_object(open_kwargs: dict[str, Any]) -> bool:
    """Validation opens the whole object; uploads open byte ranges."""
    return not open_kwargs.get("start") and open_kwargs.get("end") is None


class HeldAt:
    """A stream that, once `offset` bytes are read, reads on only after `released` is set."""

    def __init__(self, body: Readable, offset: int, released: threading.Event) -> None:
        self._body, self._offset, self._released = body, offset, released
        self._read = 0

    def read(self, size: int, /) -> bytes:
        if self._read >= self._offset:
            assert self._released.wait(WAIT_LIMIT_SECONDS), "the early upload never moved"
        data = self._body.read(size)
        self._read += len(data)
        return data


@pytest.fixture
def chunks(monkeypatch: pytest.MonkeyPatch) -> SentChunks:
    return SentChunks(monkeypatch)


def test_a_valid_file_is_uploaded_once_never_ahead_of_validation(
    load_function: Callable[[str], Function],
    bucket: str,
    openai_sim: BatchSimulator,
    chunks: SentChunks,
) -> None:
    body = jsonl(request_lines(LINES))
    event = drop(bucket, "requests/big.jsonl", body)

    result = load_function("SubmitFunction").invoke(event)

    (outcome,) = result["outcomes"]
    assert outcome["status"] == "submitted"
    assert openai_sim.count("POST /v1/files") == 1
    (batch_id,) = outcome["batch_ids"]
    assert openai_sim.file_bytes(openai_sim.batches[batch_id]["input_file_id"]) == body
    assert all(end <= approved for end, approved in chunks.sent)
    assert chunks.sent[0][1] < len(body)  # sent while validation was still reading
    assert chunks.sent[-1] == (len(body), len(body))
    assert chunks.abandoned_at == []


def test_a_problem_halfway_abandons_the_upload_before_the_bad_line(
    load_function: Callable[[str], Function],
    bucket: str,
    openai_sim: BatchSimulator,
    chunks: SentChunks,
) -> None:
    lines = request_lines(LINES)
    lines[-1]["custom_id"] = lines[0]["custom_id"]
    body = jsonl(lines)
    bad_line_offset = len(jsonl(lines[:-1]))
    assert bad_line_offset > 2 * 1024 * 1024  # validation reads 1 MiB at a time: past the hold
    event = drop(bucket, "requests/dupes.jsonl", body)

    result = load_function("SubmitFunction").invoke(event)

    assert result["outcomes"][0]["status"] == "rejected"
    assert chunks.sent  # the upload had started
    assert all(end <= bad_line_offset for end, _ in chunks.sent)
    assert openai_sim.count("POST /v1/files") == 0  # the request never completed
    assert openai_sim.file_ids() == []
    assert openai_sim.count("POST /v1/batches") == 0


@pytest.mark.parametrize(
    ("edit", "sends_before_abandoning"),
    [
        (lambda body: body.replace(b"\n", b"\r\n"), False),  # line 1 must be rewritten
        (lambda body: body.rstrip(b"\n"), True),  # only the last line must be
    ],
    ids=["CRLF line endings", "no final newline"],
)
def test_a_file_to_rewrite_takes_the_planned_path_after_an_abandoned_upload(
    edit: Callable[[bytes], bytes],
    sends_before_abandoning: bool,
    load_function: Callable[[str], Function],
    bucket: str,
    openai_sim: BatchSimulator,
    chunks: SentChunks,
) -> None:
    lines = request_lines(LINES)
    event = drop(bucket, "requests/rewritten.jsonl", edit(jsonl(lines)))

    result = load_function("SubmitFunction").invoke(event)

    (outcome,) = result["outcomes"]
    assert outcome["status"] == "submitted"
    (batch_id,) = outcome["batch_ids"]
    assert openai_sim.file_bytes(openai_sim.batches[batch_id]["input_file_id"]) == jsonl(lines)
    assert openai_sim.count("POST /v1/files") == 1  # the abandoned upload never completed
    assert openai_sim.file_ids() == [openai_sim.batches[batch_id]["input_file_id"]]
    assert chunks.abandoned_at
    assert bool(chunks.sent) == sends_before_abandoning


def test_a_failed_read_leaves_no_upload_waiting(
    load_function: Callable[[str], Function],
    bucket: str,
    openai_sim: BatchSimulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    event = drop(bucket, "requests/unreadable.jsonl", jsonl(request_lines(LINES)))
    open_object = S3Objects.open

    def failing_whole_read(objects: S3Objects, *args: Any, **kwargs: Any) -> Readable:
        if reads_the_whole_object(kwargs):
            raise OSError("the object could not be read")
        return open_object(objects, *args, **kwargs)

    monkeypatch.setattr(S3Objects, "open", failing_whole_read)

    submit = load_function("SubmitFunction")
    with pytest.raises(submit.module.SubmitFailedError):  # so that Lambda retries the event
        submit.invoke(event)

    uploads = [t for t in threading.enumerate() if t.name.startswith("early-upload")]
    for thread in uploads:
        thread.join(WAIT_LIMIT_SECONDS)  # ends at once when abandoned; hangs if it was not
    assert not any(thread.is_alive() for thread in uploads)
    assert openai_sim.file_ids() == []
