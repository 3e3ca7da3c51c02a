"""The duplicate sweep: a second batch made with a part's token is cancelled, and noted on the
part so its results still count; a token no part records yet is left to its launch."""

from __future__ import annotations

from batchdrop.jobs.duplicate_batches import SWEEP_RESERVE_SECONDS
from tests.unit.fakes.batch_api import refused
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


def test_batches_sharing_a_token_no_part_records_yet_are_left_to_their_launch(
    world: World,
) -> None:
    job_id = world.submit().job_id
    token = {"batchdrop_part": f"{job_id}/7", "submission_token": "tok"}
    for _ in range(2):
        world.api.add_batch(metadata=token, created_at=world.store.now())

    world.tick()

    assert world.api.count("cancel_batch") == 0
    assert "duplicate_batch_ids" not in world.store.part(job_id, 0)


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
