"""One job that cannot finish never holds up the others, never fails silently, and is set aside
after N failures in a row, with one email and an alarm, until `batchdrop retry` finishes it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from batchdrop.adapters.sns import SnsNotifier
from batchdrop.cli import commands as cli
from batchdrop.cli.stack_client import BatchdropClient, StackInfo
from local.inbox import Inbox
from local.lambda_runtime import Function
from local.simulator import BatchSimulator
from local.template_stack import DeployedStack
from tests.integration.test_observability import emitted_metrics
from tests.pipeline import TICK_SECONDS, Pipeline
from tests.sns_rules import StrictSns, subject_problems
from tests.support import Killed, jsonl, request_lines

CONTENT = "GET /v1/files/{file_id}/content"
FOREVER = 1_000_000
ATTEMPTS = 3


def advance_to_completion(pipeline: Pipeline) -> None:
    """Move simulated time past the whole lifecycle without ticking."""
    pipeline.clock.advance(60 + 600 + 60 + 1)


@pytest.fixture
def strict_pipeline(
    load_function: Callable[..., Function],
    stack: DeployedStack,
    openai_sim: BatchSimulator,
    inbox: Inbox,
) -> Pipeline:
    """N = 3, and an SNS client that refuses what real SNS refuses."""
    pipeline = Pipeline(
        load_function, stack, openai_sim, inbox, FINISH_ATTEMPTS_BEFORE_ATTENTION=str(ATTEMPTS)
    )
    notifier(pipeline)._sns = StrictSns(notifier(pipeline)._sns)
    return pipeline


def notifier(pipeline: Pipeline) -> SnsNotifier:
    publisher = pipeline.poll_function.module.poller._finisher._outbox._publisher
    assert isinstance(publisher, SnsNotifier)
    return publisher


def output_file(pipeline: Pipeline, outcome: dict[str, Any]) -> str:
    """The output file of a job's (completed) batch, as OpenAI names it."""
    api = pipeline.poll_function.module.poller._api
    file_id: str = api.retrieve_batch(outcome["batch_ids"][0])["output_file_id"]
    return file_id


def two_ready_jobs(pipeline: Pipeline) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two completed jobs; the first is the one a job-id ordered loop would try first."""
    one = pipeline.submit("requests/one.jsonl", jsonl(request_lines(4)))
    two = pipeline.submit("requests/two.jsonl", jsonl(request_lines(5)))
    advance_to_completion(pipeline)
    first, second = sorted([one, two], key=lambda outcome: outcome["job_id"])
    return first, second


def test_a_job_whose_download_always_fails_does_not_hold_up_another_ready_job(
    strict_pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = strict_pipeline
    bad, good = two_ready_jobs(pipeline)
    pipeline.sim.faults.inject(
        CONTENT, kind="503", times=FOREVER, where={"file_id": output_file(pipeline, bad)}
    )
    capsys.readouterr()

    summary = pipeline.tick()

    assert summary["finished_jobs"] == {bad["job_id"]: "error", good["job_id"]: "completed"}
    assert pipeline.job(good["job_id"])["status"] == "completed"
    failed = pipeline.job(bad["job_id"])
    assert failed["status"] == "active"
    assert failed["finish_failures"] == 1
    assert "503" in failed["last_finish_error"]
    assert "finish_attempt_until" not in failed  # the attempt ended, with its outcome
    (email,) = pipeline.inbox.messages()
    assert pipeline.job(good["job_id"])["source_key"] in email["body"]
    assert email["attributes"]["status"] == "completed"
    assert emitted_metrics(capsys.readouterr().out)["FinishFailed"] == 1


def test_the_job_that_failed_last_waits_behind_one_never_tried(strict_pipeline: Pipeline) -> None:
    """Ordered by the last attempt: a job that keeps failing goes to the back of the queue."""
    pipeline = strict_pipeline
    bad, _ = two_ready_jobs(pipeline)
    pipeline.sim.faults.inject(
        CONTENT, kind="503", times=FOREVER, where={"file_id": output_file(pipeline, bad)}
    )
    pipeline.tick()
    # Never-tried jobs, at least one of which a job-id order would put after the failing one.
    late: list[str] = []
    while not late or max(late) < bad["job_id"]:
        name = f"requests/late{len(late)}.jsonl"
        late.append(pipeline.submit(name, jsonl(request_lines(2)))["job_id"])
    advance_to_completion(pipeline)
    order: list[str] = []
    finisher = pipeline.poll_function.module.poller._finisher
    real = finisher.finish

    def recording(job_id: str, time_left: Callable[[], float]) -> str:
        order.append(job_id)
        result: str = real(job_id, time_left)
        return result

    finisher.finish = recording
    pipeline.tick()

    assert order == [*sorted(late), bad["job_id"]]


def test_a_killed_finish_counts_as_a_failure_and_the_other_job_finishes_next_tick(
    strict_pipeline: Pipeline,
) -> None:
    """A job whose finish kills the invocation (out of memory) before the other's turn."""
    pipeline = strict_pipeline
    bad, good = two_ready_jobs(pipeline)
    bad_output = output_file(pipeline, bad)
    api = pipeline.poll_function.module.poller._finisher._api
    real = api.file_content

    def out_of_memory(file_id: str) -> Any:
        if file_id == bad_output:
            raise Killed
        return real(file_id)

    api.file_content = out_of_memory
    with pytest.raises(Killed):
        pipeline.tick()  # the invocation dies: nothing after the bad job's turn runs
    assert pipeline.job(good["job_id"])["status"] == "active"
    assert "finish_attempt_until" in pipeline.job(bad["job_id"])

    pipeline.clock.advance(TICK_SECONDS)
    summary = pipeline.tick()  # the killed attempt's deadline has not passed: left alone
    assert summary["finished_jobs"] == {good["job_id"]: "completed"}

    pipeline.clock.advance(15 * 60)
    with pytest.raises(Killed):
        pipeline.tick()
    assert pipeline.job(bad["job_id"])["finish_failures"] == 1  # the first kill, counted
    for _ in range(ATTEMPTS - 1):
        pipeline.clock.advance(15 * 60)
        try:
            pipeline.tick()
        except Killed:
            continue

    job = pipeline.job(bad["job_id"])
    assert job["status"] == "needs_attention"
    assert job["finish_failures"] == ATTEMPTS
    assert "killed" in job["last_finish_error"]


def test_n_failures_set_the_job_aside_with_one_email_and_the_metric_and_retry_finishes_it(
    strict_pipeline: Pipeline,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pipeline = strict_pipeline
    outcome = pipeline.submit("requests/held up.jsonl", jsonl(request_lines(6)))
    job_id = outcome["job_id"]
    advance_to_completion(pipeline)
    output = output_file(pipeline, outcome)
    pipeline.sim.faults.inject(CONTENT, kind="503", times=FOREVER, where={"file_id": output})
    capsys.readouterr()

    results = [pipeline.tick()["finished_jobs"] for _ in range(ATTEMPTS)]

    assert results == [{job_id: "error"}] * (ATTEMPTS - 1) + [{job_id: "needs_attention"}]
    job = pipeline.job(job_id)
    assert job["status"] == "needs_attention"
    assert job["finish_failures"] == ATTEMPTS
    assert "expires_at" not in job  # kept, not expiring
    assert pipeline.active_index() == []  # ticks stop retrying it
    (email,) = pipeline.inbox.messages()
    assert email["attributes"]["status"] == "needs_attention"
    assert "held up.jsonl needs attention" in email["subject"]
    assert "s3://" in email["body"]
    assert "held up.jsonl" in email["body"]
    assert "Do not upload the file again" in email["body"]
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metrics["FinishFailed"] == ATTEMPTS
    assert metrics["JobsNeedingAttention"] == 1

    downloads = len(pipeline.sim.calls)
    for _ in range(3):
        pipeline.clock.advance(TICK_SECONDS)
        assert pipeline.tick()["finished_jobs"] == {}
    assert len(pipeline.sim.calls) == downloads  # no more work on it
    assert pipeline.inbox.messages() == []
    (part,) = pipeline.parts(job_id)
    assert part["batch_id"] == outcome["batch_ids"][0]  # everything is kept
    assert pipeline.sim.file_bytes(output)
    assert pipeline.exists("requests/held up.jsonl")

    pipeline.sim.faults.clear()  # the cause is fixed
    retry_through_the_cli(pipeline, job_id, capsys, monkeypatch)
    retried = pipeline.job(job_id)
    assert (retried["status"], retried["finish_failures"]) == ("active", 0)
    assert len(pipeline.active_index()) == 1

    pipeline.clock.advance(TICK_SECONDS)
    assert pipeline.tick()["finished_jobs"] == {job_id: "completed"}
    assert len(pipeline.read_jsonl(pipeline.result(job_id))) == 6
    (done,) = pipeline.inbox.messages()
    assert done["attributes"]["status"] == "completed"
    assert pipeline.active_index() == []


def retry_through_the_cli(
    pipeline: Pipeline,
    job_id: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`batchdrop retry JOB`, parsed and run by the CLI against this stack's table (in moto)."""
    outputs = pipeline.stack.outputs
    client = BatchdropClient(StackInfo.from_outputs(outputs, region="us-east-1"))
    monkeypatch.setattr(cli, "_client", lambda _: client)
    capsys.readouterr()
    assert cli.main(["retry", job_id]) == 0
    assert "active again" in capsys.readouterr().out
    assert cli.main(["retry", job_id]) == 1  # nothing left to retry: one clear line
    assert "nothing to retry" in capsys.readouterr().err


def test_an_outcome_email_sns_refuses_ends_in_needs_attention_without_a_loop(
    strict_pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused as invalid (not a subject problem: fit_subject prevents those), the outcome email
    counts as a failed finish; the needs-attention email is sent; nothing loops."""
    pipeline = strict_pipeline
    outcome = pipeline.submit("requests/refused.jsonl", jsonl(request_lines(2)))
    advance_to_completion(pipeline)
    strict = notifier(pipeline)._sns
    real_publish = strict.publish

    def refuse_outcomes(**kwargs: Any) -> Any:
        if kwargs["MessageAttributes"]["status"]["StringValue"] == "completed":
            return real_publish(**{**kwargs, "Subject": "\x07 refused"})
        return real_publish(**kwargs)

    strict.publish = refuse_outcomes
    for _ in range(ATTEMPTS + 2):
        pipeline.clock.advance(TICK_SECONDS)
        pipeline.tick()

    job = pipeline.job(outcome["job_id"])
    assert job["status"] == "needs_attention"
    assert job["notice_outcome"]["state"] == "refused"
    assert len(strict.refused) == 1  # published once, never again
    (email,) = pipeline.inbox.messages()
    assert email["attributes"]["status"] == "needs_attention"
    assert emitted_metrics(capsys.readouterr().out)["JobsNeedingAttention"] == 1


def test_a_needs_attention_email_that_is_refused_too_still_sets_the_job_aside(
    strict_pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = strict_pipeline
    outcome = pipeline.submit("requests/mute.jsonl", jsonl(request_lines(2)))
    advance_to_completion(pipeline)
    strict = notifier(pipeline)._sns
    real_publish = strict.publish
    strict.publish = lambda **kwargs: real_publish(**{**kwargs, "Subject": "\n"})

    for _ in range(ATTEMPTS + 3):
        pipeline.clock.advance(TICK_SECONDS)
        pipeline.tick()

    assert pipeline.job(outcome["job_id"])["status"] == "needs_attention"
    assert pipeline.active_index() == []
    assert len(strict.refused) == 2  # the outcome once, the needs-attention email once
    assert pipeline.inbox.messages() == []
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metrics["JobsNeedingAttention"] == 1
    assert metrics["NoticesRefused"] == 1


@pytest.mark.parametrize(
    "name",
    ["ring\x07bell", "two\nlines", "日本語のファイル名です" * 15],
    ids=["bell", "newline", "150 non-ASCII"],
)
def test_a_file_name_sns_would_refuse_still_gets_its_email(
    name: str, strict_pipeline: Pipeline
) -> None:
    pipeline = strict_pipeline
    key = f"requests/{name}.jsonl"
    outcome = pipeline.submit(key, jsonl(request_lines(3)))

    job = pipeline.run(outcome["job_id"])

    assert job["status"] == "completed"
    (email,) = pipeline.inbox.messages()
    assert subject_problems(email["subject"]) == []
    assert "completed, 3/3 ok" in email["subject"]
    assert f"s3://{pipeline.bucket}/{key}" in email["body"]  # the body keeps the real name
    assert notifier(pipeline)._sns.refused == []
