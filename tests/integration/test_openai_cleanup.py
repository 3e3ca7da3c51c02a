"""A finished job leaves nothing on the user's OpenAI account: once its results are in S3 and
its email is out, its input, output and error files are deleted, a failed delete is tried
again by the next tick, and `DeleteOpenAIFiles=false` keeps everything."""

from __future__ import annotations

from typing import Any

import pytest

from batchdrop import runtime
from batchdrop.domain.limits import Limits
from local.simulator import BatchSimulator
from local.simulator.store import FileStore
from tests.pipeline import Pipeline
from tests.support import jsonl, request_lines


def two_part_job(pipeline: Pipeline, key: str = "requests/tidy.jsonl") -> dict[str, Any]:
    """A job of two batches, each with an output file and an error file (a `fail-` request)."""
    pipeline.submit_function.module.submitter._limits = Limits(max_requests=3)
    lines = request_lines(6)
    lines[1]["custom_id"] = "fail-1"
    lines[4]["custom_id"] = "fail-4"
    return pipeline.submit(key, jsonl(lines))


def every_file(sim: BatchSimulator, batch_ids: list[str]) -> list[str]:
    """Each batch's input, output and error file: all three, as `two_part_job` makes them."""
    named = []
    for batch_id in batch_ids:
        batch = sim.batches[batch_id]
        named += [batch["input_file_id"], batch["output_file_id"], batch["error_file_id"]]
    assert all(named), named
    return sorted(named)


def test_after_completion_the_simulator_holds_none_of_the_jobs_files(pipeline: Pipeline) -> None:
    outcome = two_part_job(pipeline)
    batch_ids = outcome["batch_ids"]
    assert len(batch_ids) == 2

    job = pipeline.run(outcome["job_id"])

    assert job["status"] == "completed"
    assert [pipeline.sim.files_of(batch_id) for batch_id in batch_ids] == [[], []]
    files = every_file(pipeline.sim, batch_ids)
    assert len(set(files)) == 6
    assert sorted(pipeline.sim.deleted_file_ids()) == files
    assert job["openai_files"] == files
    assert job["file_cleanup"]["state"] == "done"
    assert int(job["file_cleanup"]["deleted"]) == 6
    assert len(pipeline.inbox.messages()) == 1
    assert pipeline.active_index("CLEANUP") == []
    # The results came home first, whole: the raw copies of OpenAI's files are in S3.
    results = pipeline.read_jsonl(pipeline.result(outcome["job_id"]))
    assert [r["status"] for r in results].count("failed") == 2


def test_a_failed_delete_is_retried_on_the_next_tick_and_the_email_went_once(
    pipeline: Pipeline,
) -> None:
    outcome = pipeline.submit("requests/stubborn.jsonl", jsonl(request_lines(3)))
    batch_id = outcome["batch_ids"][0]
    output_file = pipeline.sim.batches[batch_id]["output_file_id"]  # None until it completes
    assert output_file is None
    input_file = pipeline.sim.batches[batch_id]["input_file_id"]
    # Every try of this file's delete in one tick fails, past the client's own retries.
    fault = pipeline.sim.fail_deletes(times=runtime.retry_policy.attempts, file_id=input_file)

    job = pipeline.run(outcome["job_id"])

    assert job["status"] == "completed"
    assert fault.remaining == 0
    assert len(pipeline.inbox.messages()) == 1  # the email did not wait for the delete
    assert pipeline.sim.files_of(batch_id) == [input_file]
    cleanup = job["file_cleanup"]
    assert (cleanup["state"], cleanup["left"], int(cleanup["attempts"])) == (
        "pending", [input_file], 1
    )  # fmt: skip
    assert "500" in cleanup["last_error"]
    assert [item["job_id"] for item in pipeline.active_index("CLEANUP")] == [outcome["job_id"]]

    summary = pipeline.tick()

    assert summary["cleanups"] == {outcome["job_id"]: "done"}
    assert pipeline.sim.files_of(batch_id) == []
    assert pipeline.job(outcome["job_id"])["file_cleanup"]["state"] == "done"
    assert pipeline.active_index("CLEANUP") == []
    assert pipeline.inbox.messages() == []  # nothing more was sent


@pytest.fixture
def deletes_seen(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What S3 held and whether the email was out, at the moment of each delete OpenAI got."""
    seen: list[dict[str, Any]] = []
    delete = FileStore.delete

    def watched(store: FileStore, file_id: str) -> Any:
        jobs = [item for item in pipeline.table.scan()["Items"] if item["sk"] == "JOB"]
        keys = [str(job["results_key"]) for job in jobs if job.get("results_key")]
        seen.append(
            {
                "file_id": file_id,
                "results": [key for key in keys if pipeline.exists(key)],
                "jobs_with_results": len(keys),
                "emailed": [job.get("notice_outcome", {}).get("state") for job in jobs],
            }
        )
        return delete(store, file_id)

    monkeypatch.setattr(FileStore, "delete", watched)
    return seen


def test_no_delete_happens_before_results_jsonl_exists(
    pipeline: Pipeline, deletes_seen: list[dict[str, Any]]
) -> None:
    outcome = two_part_job(pipeline, "requests/careful.jsonl")

    pipeline.run(outcome["job_id"])

    assert len(deletes_seen) == 6
    for seen in deletes_seen:
        assert seen["jobs_with_results"] == 1
        assert len(seen["results"]) == 1  # results.jsonl was in S3 already...
        assert seen["emailed"] == ["sent"]  # ...and the email out


@pytest.mark.parametrize("stack", [{"DeleteOpenAIFiles": "false"}], indirect=True)
def test_delete_openai_files_false_keeps_them(pipeline: Pipeline) -> None:
    assert pipeline.poll_function.env["DELETE_OPENAI_FILES"] == "false"  # from the parameter
    outcome = two_part_job(pipeline, "requests/keep.jsonl")

    job = pipeline.run(outcome["job_id"])

    assert job["status"] == "completed"
    files = every_file(pipeline.sim, outcome["batch_ids"])
    assert all(pipeline.sim.has_file(file_id) for file_id in files)
    assert pipeline.sim.deleted_file_ids() == []
    assert "file_cleanup" not in job
    assert len(pipeline.inbox.messages()) == 1
