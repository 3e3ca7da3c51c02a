"""The metrics the dashboards and alarms read, emitted as CloudWatch EMF by each handler."""

from __future__ import annotations

import json

import pytest

from tests.pipeline import Pipeline
from tests.support import jsonl, request_lines


def emitted_metrics(output: str) -> dict[str, float]:
    """Sum every EMF metric printed to stdout."""
    totals: dict[str, float] = {}
    for line in output.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        record = json.loads(line)
        for directive in record["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                values = record[metric["Name"]]
                total = sum(values) if isinstance(values, list) else values
                totals[metric["Name"]] = totals.get(metric["Name"], 0) + total
    return totals


def test_submit_and_poll_emit_their_metrics(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = request_lines(6)
    lines[0]["custom_id"] = "fail-0"
    outcome = pipeline.submit("requests/metrics.jsonl", jsonl(lines))
    bad = request_lines(2)
    bad[1]["custom_id"] = bad[0]["custom_id"]
    pipeline.submit("requests/bad.jsonl", jsonl(bad))
    submit_metrics = emitted_metrics(capsys.readouterr().out)

    pipeline.run(outcome["job_id"])
    poll_metrics = emitted_metrics(capsys.readouterr().out)

    assert submit_metrics["BatchesSubmitted"] == 1
    assert submit_metrics["RequestsSubmitted"] == 6
    assert submit_metrics["FilesRejected"] == 1
    assert submit_metrics["BytesUploaded"] == len(jsonl(lines))
    assert poll_metrics["BatchesCompleted"] == 1
    assert poll_metrics["RequestsSucceeded"] == 5
    assert poll_metrics["RequestsFailed"] == 1
    assert poll_metrics["TokensUsed"] > 0
    assert poll_metrics["PollTickActive"] >= 1


def test_a_tick_stops_taking_work_when_the_invocation_runs_short(pipeline: Pipeline) -> None:
    for n in range(3):
        pipeline.submit(f"requests/short{n}.jsonl", jsonl(request_lines(2)))
    poller = pipeline.poll_function.module.poller

    summary = poller.tick(time_left=lambda: 5.0)  # less than the refresh reserve

    assert summary.active == 3
    assert summary.deferred == 3
    assert summary.refreshed == 0
    assert pipeline.sim.count("GET /v1/batches/{batch_id}") == 0
