"""A submission no attempt will finish is never lost: killed attempts, retries that all failed,
and the poller that resumes or, past its bounds, gives up with one email."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from batchdrop.adapters.sns import NoticeRefused
from batchdrop.cli.present import job_details
from batchdrop.cli.stack_client import BatchdropClient, StackInfo
from batchdrop.domain.limits import Limits
from batchdrop.jobs.submit import SUBMIT_LEASE_SECONDS
from local.inbox import Inbox
from local.lambda_runtime import Function
from local.simulator import BatchSimulator
from local.template_stack import DeployedStack
from tests.pipeline import Pipeline
from tests.support import AfterWrite, CrashOnce, Killed, drop, jsonl, request_lines

TWO_PER_BATCH = Limits(max_requests=2)


def small_batches(pipeline: Pipeline) -> None:
    """Two requests per batch, in the submit function and in the poller's resumptions alike."""
    pipeline.submit_function.module.submitter._limits = TWO_PER_BATCH
    pipeline.poll_function.module.poller._resumer._submitter._limits = TWO_PER_BATCH


def fail_creates_after_part(pipeline: Pipeline, index: int) -> None:
    """From the moment part `index`'s batch is recorded, every batch create answers 503."""

    def outage(_job_id: str) -> None:
        pipeline.sim.faults.inject("POST /v1/batches", kind="503", times=100_000)

    submitter = pipeline.submit_function.module.submitter
    submitter._store = AfterWrite(submitter._store, "record_batch", index, outage)


def submitting_index(pipeline: Pipeline) -> list[dict[str, Any]]:
    return pipeline.active_index("SUBMITTING")


def test_a_killed_attempt_is_not_swallowed_by_lambdas_retries(pipeline: Pipeline) -> None:
    event = drop(pipeline.bucket, "requests/killed.jsonl", jsonl(request_lines(3)))
    submitter = pipeline.submit_function.module.submitter
    killer = CrashOnce(submitter._store, "record_file", before=False, crash=Killed)
    submitter._store = killer

    with pytest.raises(Killed):
        pipeline.submit_function.invoke(event)
    # Lambda's two retries find Powertools' INPROGRESS record the killed attempt left behind.
    retries = [pipeline.submit_function.invoke(event)["outcomes"][0] for _ in range(2)]

    assert {r["status"] for r in retries} == {"in_progress"}
    job_id = retries[0]["job_id"]
    assert pipeline.job(job_id)["status"] == "submitting"
    assert [item["job_id"] for item in submitting_index(pipeline)] == [job_id]
    assert pipeline.sim.count("POST /v1/batches") == 0

    # Within the lease nobody overtakes the attempt that might still be alive ...
    pipeline.clock.advance(SUBMIT_LEASE_SECONDS - 60)
    assert pipeline.tick()["resumed_submissions"] == {}
    # ... once it lapses, a tick takes the job on from its records.
    pipeline.clock.advance(120)
    assert pipeline.tick()["resumed_submissions"] == {job_id: "submitted"}
    job = pipeline.run(job_id)

    assert job["status"] == "completed"
    assert pipeline.sim.count("POST /v1/files") == 1  # the recorded file was reused
    assert pipeline.sim.count("POST /v1/batches") == 1
    assert submitting_index(pipeline) == []
    (email,) = pipeline.inbox.messages()
    assert "completed" in email["subject"]


def test_a_retry_that_finds_no_record_records_the_job_for_the_poller(pipeline: Pipeline) -> None:
    """Killed between Powertools' claim and the job record: the retry records the job, its
    lease already lapsed, before it lets the event go, and the next tick takes it to its end."""
    event = drop(pipeline.bucket, "requests/early-kill.jsonl", jsonl(request_lines(2)))
    submitter = pipeline.submit_function.module.submitter
    submitter._store = CrashOnce(submitter._store, "create_job", before=True, crash=Killed)
    with pytest.raises(Killed):
        pipeline.submit_function.invoke(event)

    (retry,) = pipeline.submit_function.invoke(event)["outcomes"]

    assert retry["status"] == "in_progress"
    assert [item["job_id"] for item in submitting_index(pipeline)] == [retry["job_id"]]
    assert pipeline.tick()["resumed_submissions"] == {retry["job_id"]: "submitted"}
    assert pipeline.run(retry["job_id"])["status"] == "completed"
    assert pipeline.sim.count("POST /v1/batches") == 1


class DuplicateArrivesBeforeTheRecord:
    """Wraps the first attempt's store: a second delivery of the same event runs to its end
    just before the first attempt writes the job record, the narrowest window there is."""

    def __init__(self, store: Any, deliver_again: Callable[[], Any]) -> None:
        self._store = store
        self._deliver_again = deliver_again
        self.second: Any = None

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._store, name)
        if name != "create_job" or self.second is not None:
            return real

        def create_job(*args: Any, **kwargs: Any) -> Any:
            self.second = self._deliver_again()
            return real(*args, **kwargs)

        return create_job


def test_a_duplicate_delivery_before_the_job_is_recorded_lets_the_first_finish(
    pipeline: Pipeline, load_function: Callable[..., Function]
) -> None:
    event = drop(pipeline.bucket, "requests/twice.jsonl", jsonl(request_lines(3)))
    other_environment = load_function("SubmitFunction")
    submitter = pipeline.submit_function.module.submitter
    gate = DuplicateArrivesBeforeTheRecord(
        submitter._store, lambda: other_environment.invoke(event)["outcomes"][0]
    )
    submitter._store = gate

    (first,) = pipeline.submit_function.invoke(event)["outcomes"]

    assert gate.second["status"] == "in_progress"  # let go: the job is recorded for the poller
    assert first["status"] == "submitted"  # the live attempt took the lapsed lease at once
    assert pipeline.sim.count("POST /v1/batches") == 1
    assert submitting_index(pipeline) == []


def test_a_two_part_job_whose_every_retry_failed_is_resumed_by_ticks(
    pipeline: Pipeline, stack: DeployedStack
) -> None:
    small_batches(pipeline)
    fail_creates_after_part(pipeline, 0)
    event = drop(pipeline.bucket, "requests/outage.jsonl", jsonl(request_lines(4)))

    outcome = pipeline.submit_function.invoke_async(event, stack.async_configs["SubmitFunction"])

    assert outcome.attempts == 3  # the event is in the dead-letter queue
    assert outcome.error is not None
    (job_id,) = [item["job_id"] for item in submitting_index(pipeline)]
    assert pipeline.sim.count("POST /v1/batches") == 1  # part 0 only
    assert "503" in pipeline.job(job_id)["last_error"]
    client = BatchdropClient(StackInfo.from_outputs(pipeline.stack.outputs, "us-east-1"))
    assert "last error: OpenAIError: OpenAI API error 503" in job_details(client.job(job_id))

    pipeline.sim.faults.clear()  # OpenAI recovers
    job = pipeline.run(job_id)

    assert job["status"] == "completed"
    parts = pipeline.parts(job_id)
    assert len({part["batch_id"] for part in parts}) == 2  # exactly one batch per part
    assert pipeline.sim.count("POST /v1/batches") == 2
    assert pipeline.sim.count("POST /v1/files") == 2  # each part's file uploaded once
    assert [r["custom_id"] for r in pipeline.read_jsonl(pipeline.result(job_id))] == [
        f"req-{n}" for n in range(4)
    ]
    (email,) = pipeline.inbox.messages()
    assert "completed" in email["subject"]


@pytest.fixture
def patient_pipeline(
    load_function: Callable[..., Function],
    stack: DeployedStack,
    openai_sim: BatchSimulator,
    inbox: Inbox,
) -> Pipeline:
    """A poller that gives a submission two resumptions before it gives up."""
    return Pipeline(load_function, stack, openai_sim, inbox, SUBMIT_RESUME_LIMIT="2")


def test_a_part_that_never_goes_is_given_up_and_the_rest_still_comes_home(
    patient_pipeline: Pipeline,
) -> None:
    pipeline = patient_pipeline
    small_batches(pipeline)
    fail_creates_after_part(pipeline, 0)
    with pytest.raises(Exception, match="1 of 1 failed"):
        pipeline.submit("requests/half.jsonl", jsonl(request_lines(4)))
    (job_id,) = [item["job_id"] for item in submitting_index(pipeline)]

    job = pipeline.run(job_id)  # the outage never ends

    assert job["status"] == "completed"  # of what was submitted: part 0
    assert job["resumes"] == 3  # two resumptions, and the take that gave up
    assert job["not_submitted_from_line"] == 3
    assert pipeline.sim.count("POST /v1/batches") == 1
    assert [r["custom_id"] for r in pipeline.read_jsonl(pipeline.result(job_id))] == [
        "req-0",
        "req-1",
    ]
    gave_up, outcome = pipeline.inbox.messages()
    assert gave_up["subject"] == "batchdrop: half.jsonl could not be fully submitted"
    assert "2 requests, from line 3 to the end of the file" in gave_up["body"]
    assert "Do not upload the whole file again" in gave_up["body"]
    assert "503" in gave_up["body"]
    assert "completed" in outcome["subject"]
    assert "Never submitted: the requests from line 3 on" in outcome["body"]
    assert submitting_index(pipeline) == []


def test_a_file_that_never_goes_fails_with_one_email(patient_pipeline: Pipeline) -> None:
    pipeline = patient_pipeline
    pipeline.sim.faults.inject("POST /v1/batches", kind="503", times=100_000)
    with pytest.raises(Exception, match="1 of 1 failed"):
        pipeline.submit("requests/never.jsonl", jsonl(request_lines(3)))
    (job_id,) = [item["job_id"] for item in submitting_index(pipeline)]

    job = pipeline.run(job_id)

    assert job["status"] == "failed"
    assert job["expires_at"] > 0  # finished: the record expires like any ended job
    assert pipeline.sim.count("POST /v1/batches") == 0
    (email,) = pipeline.inbox.messages()
    assert email["subject"] == "batchdrop: never.jsonl could not be submitted"
    assert "no batch was created, so no request ran or was charged" in email["body"]
    assert "upload the file again" in email["body"]
    assert pipeline.tick()["resumed_submissions"] == {}  # and it is left alone after that


def test_cancel_during_the_submission_of_a_three_part_file_reaches_every_part(
    pipeline: Pipeline,
) -> None:
    small_batches(pipeline)
    client = BatchdropClient(StackInfo.from_outputs(pipeline.stack.outputs, "us-east-1"))
    submitter = pipeline.submit_function.module.submitter
    # The user cancels just after part 0's batch is recorded, while parts 1 and 2 are not.
    submitter._store = AfterWrite(submitter._store, "record_batch", 0, client.cancel)

    outcome = pipeline.submit("requests/three.jsonl", jsonl(request_lines(6)))
    job = pipeline.run(outcome["job_id"])

    assert submitter._store.fired
    assert job["status"] == "cancelled"
    parts = pipeline.parts(outcome["job_id"])
    assert len(parts) == 3
    assert all(part["cancel_requested"] for part in parts)
    assert {pipeline.sim.batches[part["batch_id"]]["status"] for part in parts} == {"cancelled"}
    (email,) = pipeline.inbox.messages()
    assert "cancelled" in email["subject"]


def test_a_give_up_email_sns_refuses_still_ends_the_submission(
    patient_pipeline: Pipeline,
) -> None:
    pipeline = patient_pipeline

    def refuse(_notice: Any) -> str:
        raise NoticeRefused("InvalidParameter: Invalid parameter: Subject")

    pipeline.poll_function.module.poller._resumer._outbox._publisher.publish = refuse
    pipeline.sim.faults.inject("POST /v1/batches", kind="503", times=100_000)
    with pytest.raises(Exception, match="1 of 1 failed"):
        pipeline.submit("requests/mute.jsonl", jsonl(request_lines(3)))
    (job_id,) = [item["job_id"] for item in submitting_index(pipeline)]

    job = pipeline.run(job_id)

    assert job["status"] == "failed"  # ended, not resumed every 20 minutes for ever
    assert job["notice_outcome"]["state"] == "refused"
    assert submitting_index(pipeline) == []
    assert pipeline.inbox.messages() == []
