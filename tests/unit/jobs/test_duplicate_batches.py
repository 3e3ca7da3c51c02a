"""The duplicate sweep: a second batch made with a part's token is cancelled, and noted on the
part so its results still count; twins no part records yet are settled the same way."""

from __future__ import annotations

import pytest

from batchdrop.jobs.duplicate_batches import SWEEP_RESERVE_SECONDS
from batchdrop.jobs.poll import TOKEN_LIMIT_FIRST_WAIT_SECONDS
from batchdrop.jobs.submit import SUBMIT_LEASE_SECONDS
from batchdrop.records import Batch
from tests.support import Killed, jsonl, request_lines
from tests.unit.fakes.batch_api import ambiguous, refused
from tests.unit.fakes.world import World


def submitted_with_a_copy(world: World, *, copy_status: str = "validating") -> tuple[str, str]:
    """A submitted job, and a second batch carrying its part's token (a create that landed
    late, after its retry)."""
    job_id = world.submit().job_id
    part = world.store.part(job_id, 0)
    metadata = world.api.batches[part["batch_id"]]["metadata"]
    copy = world.api.add_batch(metadata=metadata, created_at=world.store.now(), status=copy_status)
    return job_id, str(copy["id"])


def test_a_live_duplicate_is_cancelled_and_noted_on_its_part(world: World) -> None:
    job_id, copy = submitted_with_a_copy(world)

    world.tick()
    world.tick()

    part = world.store.part(job_id, 0)
    assert part["duplicate_batch_ids"] == {copy}
    assert part["duplicates_cancelled"] == [copy]
    assert world.api.batches[copy]["status"] == "cancelling"
    assert world.api.count("cancel_batch") == 1
    assert world.metrics.counts["DuplicateBatchesCancelled"] == 1
    assert part["batch_id"] != copy  # the part keeps its own batch


def test_a_duplicate_that_already_ended_is_noted_and_not_cancelled(world: World) -> None:
    job_id, copy = submitted_with_a_copy(world, copy_status="completed")

    world.tick()

    part = world.store.part(job_id, 0)
    assert part["duplicate_batch_ids"] == {copy}
    assert "duplicates_cancelled" not in part
    assert world.api.count("cancel_batch") == 0


def test_batches_of_a_part_batchdrop_never_recorded_are_left_alone(world: World) -> None:
    job_id = world.submit().job_id
    token = {"batchdrop_part": f"{job_id}/7", "submission_token": "tok"}
    for _ in range(2):
        world.api.add_batch(metadata=token, created_at=world.store.now())

    world.tick()

    assert world.api.count("cancel_batch") == 0
    assert "duplicate_batch_ids" not in world.store.part(job_id, 0)


def killed_between_create_and_record(world: World) -> tuple[str, str, str]:
    """Seed 5011: a submission's create failed after taking effect late, its second create
    made the batch, and the process died before recording either: two batches share the part's
    token and its record names neither. The job id, then the created batch and its late twin."""
    source = world.drop("requests/twins.jsonl", jsonl(request_lines(2)))
    world.api.fail_next("create_batch", ambiguous())  # lands only after both looks missed it
    created: list[str] = []

    def twin_lands_then_killed(job_id: str, index: int, batch: Batch) -> None:
        made = world.api.batches[batch["id"]]
        twin = world.api.add_batch(
            metadata=made["metadata"],
            created_at=world.store.now(),
            input_file_id=made["input_file_id"],
        )
        created.extend([batch["id"], twin["id"]])
        raise Killed("killed before recording its batch")

    world.store.before("record_batch", twin_lands_then_killed)
    with pytest.raises(Killed):
        world.submitter().submit(source)
    return source.job_id, created[0], created[1]


def test_twins_a_killed_launch_left_unrecorded_are_settled_by_the_next_sweep(
    world: World,
) -> None:
    job_id, created, twin = killed_between_create_and_record(world)

    world.tick()  # the submission's lease has not lapsed: its launch may still be alive

    part = world.store.part(job_id, 0)
    assert part["batch_id"] == created  # the older of the two, both waiting to run
    assert world.api.batches[twin]["status"] == "cancelling"
    assert part["duplicate_batch_ids"] == {twin}
    assert world.metrics.counts["DuplicateBatchesCancelled"] == 1


def test_a_sweep_keeps_the_twin_that_already_ran_requests(world: World) -> None:
    job_id, created, twin = killed_between_create_and_record(world)
    world.api.run_partly(twin, "in_progress", ran=1)

    world.tick()

    assert world.store.part(job_id, 0)["batch_id"] == twin
    assert world.api.batches[created]["status"] == "cancelling"


def test_a_resumed_launch_takes_the_batch_the_sweep_kept(world: World) -> None:
    job_id, created, _ = killed_between_create_and_record(world)
    world.tick()
    creates = world.api.count("create_batch")

    world.clock.advance(SUBMIT_LEASE_SECONDS)
    assert world.tick().resumed_submissions == {job_id: "submitted"}

    assert world.store.part(job_id, 0)["batch_id"] == created
    assert world.store.job(job_id)["status"] == "active"
    assert world.api.count("create_batch") == creates  # nothing created again


def test_a_launch_that_records_the_batch_the_sweep_kept_succeeds(world: World) -> None:
    job_id = world.submit().job_id
    part = world.store.part(job_id, 0)
    batch = world.api.retrieve_batch(part["batch_id"])

    world.store.record_batch(job_id, 0, batch)  # the sweep recorded it first: no conflict

    assert world.store.part(job_id, 0)["batch_id"] == batch["id"]


def test_twins_of_a_pending_resubmission_are_settled_by_the_next_sweep(world: World) -> None:
    job_id = world.submit().job_id
    first = world.store.part(job_id, 0)["batch_id"]
    world.api.fail(first, "token_limit_exceeded")
    world.tick()  # waits out the token limit
    world.clock.advance(TOKEN_LIMIT_FIRST_WAIT_SECONDS)
    world.api.fail_next("create_batch", Killed("killed after creating"), takes_effect=True)
    with pytest.raises(Killed):
        world.tick()  # the resubmission's create lands, and the tick dies before recording it
    token = world.store.part(job_id, 0)["pending_token"]
    metadata = {"batchdrop_part": f"{job_id}/0", "submission_token": token}
    twin = world.api.add_batch(metadata=metadata, created_at=world.store.now())["id"]

    world.tick()

    part = world.store.part(job_id, 0)
    kept = part["batch_id"]
    assert kept not in {first, twin}
    assert part["previous_batch_ids"] == [first]
    assert (part.get("retry_at"), part.get("pending_token"), part["resubmits"]) == (None, None, 1)
    assert world.api.batches[twin]["status"] == "cancelling"


def test_a_sweep_whose_listing_fails_sweeps_again_before_the_tick_ends(world: World) -> None:
    """Seeds 5006 and 5008: the first listing failed past every retry, and a duplicate found
    a tick later had run requests by then."""
    job_id, copy = submitted_with_a_copy(world)
    world.api.fail_next("list_batches", refused(502, "bad_gateway"))

    world.tick()

    assert world.api.batches[copy]["status"] == "cancelling"
    assert world.metrics.counts["DuplicateSweepFailed"] == 1
    assert world.store.part(job_id, 0)["duplicates_cancelled"] == [copy]


def test_a_cancel_that_fails_is_counted_and_the_tick_goes_on(world: World) -> None:
    job_id, copy = submitted_with_a_copy(world)
    world.api.fail_next("cancel_batch", refused(500, "server_error"))

    summary = world.tick()

    assert summary.refreshed == 1
    assert world.metrics.counts["DuplicateSweepFailed"] == 1
    assert world.store.part(job_id, 0)["duplicate_batch_ids"] == {copy}
    world.tick()
    assert world.api.batches[copy]["status"] == "cancelling"  # the next sweep cancels it


def test_a_tick_short_of_time_does_not_sweep(world: World) -> None:
    submitted_with_a_copy(world)

    world.tick(lambda: SWEEP_RESERVE_SECONDS - 1)

    assert world.api.count("list_batches") == 0
