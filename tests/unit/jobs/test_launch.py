"""The BatchLauncher's decisions: a batch created exactly once (adopted by its token after an
interruption or a create with an unknown outcome), and an upload whose completion is unknown
started again from the same bytes."""

from __future__ import annotations

import pytest

from batchdrop.adapters.openai_api import OpenAIError, RetryPolicy
from batchdrop.domain.approval import ApprovedBytes, UploadAbandoned
from batchdrop.domain.split_plan import Chunk, Part
from batchdrop.jobs.launch import (
    ADOPTION_WINDOW_SECONDS,
    ObjectVersion,
    batch_metadata,
    settle_delays,
)
from tests.unit.fakes.batch_api import FakeBatchAPI, ambiguous, refused
from tests.unit.fakes.world import BUCKET, World

TOKEN = "token-1"
METADATA = batch_metadata("job-1", 0, TOKEN)
SETTLE = settle_delays(FakeBatchAPI.read_timeout)


def create_or_adopt(world: World, *, look_first: bool = False) -> dict[str, object]:
    return world.launcher().create_or_adopt(
        file_id="file-1",
        endpoint="/v1/chat/completions",
        metadata=METADATA,
        recorded_at=world.store.now(),
        look_first=look_first,
    )


def test_a_batch_an_interrupted_attempt_created_is_adopted_by_its_token(world: World) -> None:
    made = world.api.create_batch("file-1", "/v1/chat/completions", METADATA)
    world.api.add_batch(metadata={"submission_token": "other"}, created_at=world.store.now())

    adopted = create_or_adopt(world, look_first=True)

    assert adopted["id"] == made["id"]
    assert world.api.count("create_batch") == 1


def test_a_batch_made_well_before_the_record_is_not_taken_for_ours(world: World) -> None:
    """The listing is newest first: the look stops at the first batch older than the window."""
    too_old = world.store.now() - ADOPTION_WINDOW_SECONDS - 1
    world.api.add_batch(metadata={"submission_token": "other"}, created_at=too_old)
    world.api.add_batch(metadata=METADATA, created_at=too_old - 1)

    created = create_or_adopt(world, look_first=True)

    assert created["metadata"] == METADATA
    assert world.api.count("create_batch") == 1
    assert len(world.api.batches) == 3


def test_a_create_that_landed_although_it_failed_is_adopted_after_its_settle_wait(
    world: World,
) -> None:
    world.api.fail_next("create_batch", ambiguous(), takes_effect=True)

    adopted = create_or_adopt(world)

    (landed,) = world.api.batches
    assert adopted["id"] == landed
    assert world.api.count("create_batch") == 1
    assert world.sleeps == SETTLE[:1]  # waited the request's own timeout before looking
    assert world.sleeps[0] >= world.api.read_timeout


def test_a_create_that_did_not_land_is_looked_for_twice_then_made_again(world: World) -> None:
    world.api.fail_next("create_batch", ambiguous(500, "server_error"))

    created = create_or_adopt(world)

    assert world.api.count("create_batch") == 2
    assert world.api.count("list_batches") == len(SETTLE)
    assert world.sleeps == SETTLE
    assert list(world.api.batches) == [created["id"]]


def test_a_create_refused_outright_is_retried_after_a_backoff_without_looking(
    world: World,
) -> None:
    world.api.fail_next("create_batch", refused(429, "rate_limit_exceeded"), times=2)

    create_or_adopt(world)

    assert world.api.count("create_batch") == 3
    assert world.api.count("list_batches") == 0
    assert len(world.sleeps) == 2
    assert all(wait <= world.retry.max_delay for wait in world.sleeps)


def test_a_create_that_cannot_succeed_is_raised_at_once(world: World) -> None:
    world.api.fail_next("create_batch", refused(400, "invalid_request_error"))

    with pytest.raises(OpenAIError, match="invalid_request_error"):
        create_or_adopt(world)

    assert world.api.count("create_batch") == 1
    assert world.sleeps == []


# --- uploads -------------------------------------------------------------------------------------

BODY = b'{"custom_id": "a"}\n{"custom_id": "b"}\n{"custom_id": "c"}\n'
CHUNK = 16  # raw bytes may be cut anywhere: the upload's parts are concatenated


def upload(world: World, part: Part, approved: ApprovedBytes | None = None) -> str:
    """Upload `part` of BODY, sent as it is."""
    version = world.objects.put(BUCKET, "requests/x.jsonl", BODY)
    source = ObjectVersion(BUCKET, "requests/x.jsonl", version)
    return world.launcher().upload(source, part, "x.jsonl", verbatim=True, approved=approved)


def test_an_upload_whose_completion_is_unknown_is_started_again_from_the_same_bytes(
    world: World,
) -> None:
    world.api.fail_next("complete_upload", ambiguous(), takes_effect=True)

    file_id = upload(world, Part.whole_object(len(BODY), CHUNK))

    first, second = world.api.uploads.values()
    assert first["status"] == "cancelled"  # abandoned: an unused file costs no batch
    assert second["status"] == "completed"
    assert world.api.files[file_id] == BODY
    assert world.api.count("add_upload_part") == 2 * 4  # every chunk sent again
    assert len(world.sleeps) == 1


def test_an_upload_refused_outright_is_cancelled_and_not_started_again(world: World) -> None:
    world.api.fail_next("add_upload_part", refused(400, "invalid_request_error"))

    with pytest.raises(OpenAIError):
        upload(world, Part.whole_object(len(BODY), CHUNK))

    (only,) = world.api.uploads.values()
    assert only["status"] == "cancelled"
    assert world.api.count("create_upload") == 1


def test_an_upload_that_stays_unknown_gives_up_after_the_retry_attempts(world: World) -> None:
    attempts = world.retry.attempts
    world.api.fail_next("complete_upload", ambiguous(), times=attempts)

    with pytest.raises(OpenAIError):
        upload(world, Part.whole_object(len(BODY), CHUNK))

    assert world.api.count("create_upload") == attempts
    assert all(u["status"] == "cancelled" for u in world.api.uploads.values())


def test_an_upload_abandoned_meanwhile_is_not_started_again(world: World) -> None:
    """Validation abandons an early upload while it waits to start again: it stops there."""
    approved = ApprovedBytes()
    approved.approve(len(BODY))
    world.retry = RetryPolicy(sleep=lambda _seconds: approved.abandon())
    world.api.fail_next("complete_upload", ambiguous())

    with pytest.raises(UploadAbandoned):
        upload(world, Part.whole_object(len(BODY), CHUNK), approved=approved)

    assert world.api.count("create_upload") == 1


def test_a_part_that_fits_one_request_is_sent_as_one_file(world: World) -> None:
    file_id = upload(world, Part.whole_object(len(BODY), len(BODY)))

    assert world.api.files[file_id] == BODY
    assert world.api.count("create_upload") == 0


def test_lines_to_rewrite_are_sent_normalised_and_only_raw_bytes_may_wait_for_approval(
    world: World,
) -> None:
    crlf = b'{"custom_id": "a"}\r\n{"custom_id": "b"}'
    normalised = b'{"custom_id": "a"}\n{"custom_id": "b"}\n'
    version = world.objects.put(BUCKET, "requests/crlf.jsonl", crlf)
    source = ObjectVersion(BUCKET, "requests/crlf.jsonl", version)
    part = Part(0, 1, 2, 0, len(crlf), len(normalised), (Chunk(0, len(crlf), len(normalised)),))

    file_id = world.launcher().upload(source, part, "crlf.jsonl", verbatim=False)

    assert world.api.files[file_id] == normalised
    with pytest.raises(ValueError, match="only raw bytes"):
        world.launcher().upload(source, part, "crlf.jsonl", approved=ApprovedBytes())
