"""Deleting a reported job's files on OpenAI: only after its results are home and its email is
out, retried by later ticks when a delete fails, never blocking anything, and not at all when
the deployment says so."""

from __future__ import annotations

from batchdrop.jobs.cleanup import DELETE_ATTEMPTS, job_files
from batchdrop.records import BatchRecord
from tests.support import Crash
from tests.unit.fakes.batch_api import ambiguous, not_run_line, refused, result_line
from tests.unit.fakes.world import Options, World

KEY = "requests/chat.jsonl"


def completed_job(world: World, requests: int = 3) -> tuple[str, list[str]]:
    """A submitted job whose one batch completed with an output and an error file; its files."""
    job_id = world.submit(KEY, requests).job_id
    batch_id = str(world.store.part(job_id, 0)["batch_id"])
    world.api.end(
        batch_id,
        "completed",
        output=[result_line(f"req-{n}") for n in range(1, requests)],
        error=[result_line("req-0", 500)],
    )
    batch = world.api.batches[batch_id]
    return job_id, sorted([batch["input_file_id"], batch["output_file_id"], batch["error_file_id"]])


def test_a_reported_job_leaves_none_of_its_files_on_openai(world: World) -> None:
    job_id, files = completed_job(world)

    summary = world.tick()

    assert summary.finished_jobs == {job_id: "completed"}
    assert summary.cleanups == {job_id: "done"}
    assert sorted(world.api.deleted) == files
    assert not set(files) & set(world.api.files)
    job = world.store.job(job_id)
    assert job["openai_files"] == files
    assert job["file_cleanup"] == {"state": "done", "left": [], "deleted": 3, "attempts": 1}
    assert "active_pk" not in job  # out of the index of clean-ups
    assert world.metrics.counts["OpenAIFilesDeleted"] == 3
    assert world.tick().cleanups == {}  # nothing left to do


def test_nothing_is_deleted_before_the_email_is_out(world: World) -> None:
    """The outcome email fails: the results are home, but the files stay until it is sent."""
    job_id, files = completed_job(world)
    world.publisher.fail_next(ambiguous())

    world.tick()

    assert world.api.deleted == []
    assert world.publisher.sent == []
    assert "file_cleanup" not in world.store.job(job_id)

    world.tick()

    assert len(world.publisher.sent) == 1
    assert sorted(world.api.deleted) == files


def test_a_failed_delete_is_retried_next_tick_and_the_email_went_out_once(world: World) -> None:
    job_id, files = completed_job(world)
    world.api.fail_next("delete_file", refused(500, "server_error"))

    first = world.tick()

    assert first.cleanups == {job_id: "pending"}
    assert len(world.publisher.sent) == 1  # the email did not wait for the delete
    cleanup = world.store.job(job_id)["file_cleanup"]
    assert (cleanup["state"], len(cleanup["left"]), cleanup["attempts"]) == ("pending", 1, 1)
    assert "500" in str(cleanup["last_error"])
    assert world.metrics.counts["OpenAIFileDeletesFailed"] == 1

    second = world.tick()

    assert second.cleanups == {job_id: "done"}
    assert sorted(world.api.deleted) == files
    assert world.store.job(job_id)["file_cleanup"]["deleted"] == 3
    assert len(world.publisher.sent) == 1


def test_a_file_openai_no_longer_has_counts_as_deleted(world: World) -> None:
    """Expired already, or deleted by an overlapping tick: a 404 is the end state wanted."""
    job_id, files = completed_job(world)
    world.api.files.pop(files[0])

    assert world.tick().cleanups == {job_id: "done"}
    assert world.store.job(job_id)["file_cleanup"]["left"] == []


def test_after_a_day_of_failures_the_cleanup_gives_up_and_says_so() -> None:
    world = World()
    job_id, files = completed_job(world)
    world.api.fail_next("delete_file", refused(503, "unavailable"), times=3 * DELETE_ATTEMPTS)

    states = [world.tick().cleanups.get(job_id) for _ in range(DELETE_ATTEMPTS)]

    assert states[:-1] == ["pending"] * (DELETE_ATTEMPTS - 1)
    assert states[-1] == "gave_up"
    job = world.store.job(job_id)
    assert job["file_cleanup"]["state"] == "gave_up"
    assert sorted(job["file_cleanup"]["left"]) == files
    assert "active_pk" not in job  # no tick tries it again
    assert world.tick().cleanups == {}


def test_an_overlapping_tick_that_recorded_first_wins(world: World) -> None:
    job_id, _ = completed_job(world)
    world.publisher.fail_next(ambiguous())  # reported on the next tick, cleaned up after it
    world.tick()
    # Another tick records an attempt between this one's read and its write.
    world.store.before(
        "record_file_cleanup",
        lambda *_: world.store.record_file_cleanup(
            job_id, 0, {"state": "done", "left": [], "deleted": 3, "attempts": 1}
        ),
    )

    assert world.tick().cleanups == {job_id: "pending"}  # its own write was refused

    assert world.store.job(job_id)["file_cleanup"]["state"] == "done"


def test_a_crash_after_the_email_still_schedules_the_cleanup(world: World) -> None:
    """The email went out and the process died before the clean-up was scheduled: the next
    tick resumes the finish, sends nothing again, and schedules it."""
    _, files = completed_job(world)

    def die(*_: object) -> None:
        raise Crash

    world.store.before("schedule_file_cleanup", die)
    world.tick()
    assert world.api.deleted == []

    world.tick()

    assert len(world.publisher.sent) == 1
    assert sorted(world.api.deleted) == files


def test_with_deletion_off_every_file_stays() -> None:
    world = World(Options(delete_openai_files=False))
    job_id, files = completed_job(world)

    summary = world.tick()

    assert summary.finished_jobs == {job_id: "completed"}
    assert world.api.deleted == []
    assert set(files) <= set(world.api.files)
    assert "file_cleanup" not in world.store.job(job_id)


def test_a_rejected_file_creates_nothing_on_openai_so_nothing_is_deleted(world: World) -> None:
    outcome = world.submitter().submit(world.drop(KEY, b'{"not": "a request"}\n'))

    assert outcome.status == "rejected"
    assert world.api.count("upload_file") == 0
    assert world.tick().cleanups == {}


def test_every_round_and_every_file_of_a_followed_up_job_goes() -> None:
    """Expired with requests not run, followed up, completed: both rounds' inputs, outputs and
    error files are the job's, and all are deleted once the last round is reported."""
    world = World(Options(resubmit_unfinished=True))
    job_id = world.submit(KEY, 3).job_id
    first = str(world.store.part(job_id, 0)["batch_id"])
    world.api.end(
        first, "expired",
        output=[result_line("req-0")], error=[not_run_line("req-1", "batch_expired")],
    )  # fmt: skip
    assert world.tick().finished_jobs == {job_id: "follow_up"}
    assert world.api.deleted == []  # not reported yet
    follow_up = str(world.store.part(job_id, 1)["batch_id"])
    world.api.end(follow_up, "completed", output=[result_line("req-1"), result_line("req-2")])

    world.tick()

    expected = job_files(world.store.batches(job_id))
    assert len(expected) == 5  # two inputs, two outputs, one error file
    assert sorted(world.api.deleted) == expected


def test_job_files_names_each_file_once() -> None:
    records: list[BatchRecord] = [
        {"file_id": "file-in", "openai": {"input_file_id": "file-in", "output_file_id": "file-o"}},
        {"file_id": "file-in2", "openai": {"error_file_id": "file-err"}},
        {"file_id": "file-in3"},  # uploaded, never made a batch
    ]
    assert job_files(records) == ["file-err", "file-in", "file-in2", "file-in3", "file-o"]


def test_a_pending_cleanup_that_lost_its_place_in_the_index_takes_it_back(world: World) -> None:
    """Set aside after its email (a status change takes a job out of the index), then retried
    and finished again: scheduling again puts the clean-up back where ticks find it."""
    job_id, files = completed_job(world)
    world.api.fail_next("delete_file", refused(500, "server_error"))
    world.tick()
    world.store.update_job(job_id, {"status": "needs_attention"})
    assert world.tick().cleanups == {}  # out of the index: no tick finds it

    world.cleanup().schedule(world.store.get_job(job_id) or {})

    assert world.tick().cleanups == {job_id: "done"}
    assert sorted(world.api.deleted) == files
    assert world.store.job(job_id)["file_cleanup"]["attempts"] == 2  # not started over


def test_turning_deletion_off_leaves_pending_cleanups_alone(world: World) -> None:
    _, files = completed_job(world)
    world.api.fail_next("delete_file", refused(500, "server_error"), times=3)
    world.tick()
    world.options = Options(delete_openai_files=False)  # redeployed with DeleteOpenAIFiles=false

    assert world.tick().cleanups == {}
    assert world.api.count("delete_file") == 3
    assert set(files) <= set(world.api.files)


def test_an_unexpected_error_stops_no_other_file(world: World) -> None:
    jobs = dict([completed_job(world), completed_job(world)])
    # The tick's first delete fails, and not as OpenAI would say.
    world.api.fail_next("delete_file", ValueError("a 200 whose body is not JSON"))

    world.tick()

    cleanups = {job_id: world.store.job(job_id)["file_cleanup"] for job_id in jobs}
    (pending,) = [job_id for job_id, c in cleanups.items() if c["state"] == "pending"]
    assert cleanups[pending]["last_error"] == "ValueError: a 200 whose body is not JSON"
    assert len(cleanups[pending]["left"]) == 1  # its other files went
    assert len(world.api.deleted) == 5
    assert [c["state"] for job_id, c in cleanups.items() if job_id != pending] == ["done"]


def test_deletes_stop_when_the_invocation_runs_short_and_the_next_tick_goes_on(
    world: World,
) -> None:
    job_id, files = completed_job(world)
    world.publisher.fail_next(ambiguous())  # finished, but reported only on the next tick
    world.tick()

    # The invocation runs short once the first delete is made.
    world.tick(lambda: 900.0 if world.api.count("delete_file") == 0 else 5.0)

    cleanup = world.store.job(job_id)["file_cleanup"]
    assert (cleanup["state"], len(cleanup["left"]), cleanup["deleted"]) == ("pending", 2, 1)
    world.tick()
    assert world.store.job(job_id)["file_cleanup"]["state"] == "done"
    assert sorted(world.api.deleted) == files
