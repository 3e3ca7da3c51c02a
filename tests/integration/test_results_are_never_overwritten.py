"""Each job's results are its own, and nothing a round wrote is ever written over."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest

from batchdrop.adapters.s3_multipart import AlreadyWrittenError, S3MultipartWriter
from batchdrop.cli.stack_client import BatchdropClient, StackInfo
from local.inbox import Inbox
from local.lambda_runtime import Function
from local.simulator import BatchSimulator
from local.template_stack import DeployedStack
from tests.pipeline import Pipeline
from tests.support import jsonl, request_lines


def versions(pipeline: Pipeline, prefix: str) -> dict[str, int]:
    """How many versions each object under `prefix` has (the bucket is versioned)."""
    listed = pipeline.s3.list_object_versions(Bucket=pipeline.bucket, Prefix=prefix)
    counts: dict[str, int] = {}
    for version in listed.get("Versions", []):
        counts[version["Key"]] = counts.get(version["Key"], 0) + 1
    return counts


def test_two_versions_of_one_file_both_keep_their_results(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    first = pipeline.submit("requests/daily.jsonl", jsonl(request_lines(3, prefix="mon-")))
    pipeline.clock.advance(3600)
    second = pipeline.submit("requests/daily.jsonl", jsonl(request_lines(4, prefix="tue-")))
    pipeline.run(first["job_id"])
    pipeline.run(second["job_id"])

    jobs = [pipeline.job(first["job_id"]), pipeline.job(second["job_id"])]
    folders = [str(job["results_prefix"]) for job in jobs]
    assert folders[0] != folders[1]
    for job, folder in zip(jobs, folders, strict=True):
        assert re.fullmatch(rf"results/daily/\d{{8}}T\d{{6}}Z-{job['job_id'][:8]}/", folder)
        assert job["results_key"] == f"{folder}results.jsonl"
    client = BatchdropClient(StackInfo.from_outputs(pipeline.stack.outputs, "us-east-1"))
    for job, prefix, count in zip(jobs, ("mon-", "tue-"), (3, 4), strict=True):
        (results, *_) = client.download_results(str(job["job_id"]), tmp_path / prefix)
        ids = [json.loads(line)["custom_id"] for line in results.read_text().splitlines()]
        assert ids == [f"{prefix}{n}" for n in range(count)]
    latest = json.loads(pipeline.read("results/daily/latest.json"))
    assert latest["job_id"] == second["job_id"]
    emails = pipeline.inbox.messages()
    assert sorted(folders) == sorted(
        next(f for f in folders if f in email["body"]) for email in emails
    )  # each email points at its own job's folder
    written = versions(pipeline, "results/daily/")
    assert written.pop("results/daily/latest.json") == 2  # the pointer moves, once per job
    assert set(written.values()) == {1}  # every result was written exactly once


def test_an_older_job_finishing_last_leaves_the_pointer_on_the_newest(
    pipeline: Pipeline,
) -> None:
    first = pipeline.submit("requests/daily.jsonl", jsonl(request_lines(3, prefix="mon-")))
    pipeline.clock.advance(3600)
    second = pipeline.submit("requests/daily.jsonl", jsonl(request_lines(4, prefix="tue-")))
    finisher = pipeline.poll_function.module.poller._finisher
    newer, older = pipeline.job(second["job_id"]), pipeline.job(first["job_id"])
    newer["results_key"] = f"{newer['results_prefix']}results.jsonl"
    older["results_key"] = f"{older['results_prefix']}results.jsonl"

    finisher._point_to_newest(newer)
    finisher._point_to_newest(older)

    latest = json.loads(pipeline.read("results/daily/latest.json"))
    assert latest["job_id"] == second["job_id"]
    assert latest["results"].endswith(str(newer["results_key"]))
    assert versions(pipeline, "results/daily/latest.json") == {"results/daily/latest.json": 1}


def test_a_stale_rounds_writes_are_refused(
    load_function: Callable[..., Function],
    stack: DeployedStack,
    openai_sim: BatchSimulator,
    inbox: Inbox,
) -> None:
    """Round 0 of a job finishes so slowly that round 1 (its follow-up of the unfinished
    requests) has been merged and emailed meanwhile; round 0's late writes change nothing."""
    pipeline = Pipeline(load_function, stack, openai_sim, inbox, RESUBMIT_UNFINISHED="true")
    openai_sim.outcomes.push("expired", finished_fraction=0.3)
    outcome = pipeline.submit("requests/slow.jsonl", jsonl(request_lines(10)))
    pipeline.tick()
    pipeline.clock.advance(24 * 3600)
    job = pipeline.run(outcome["job_id"])
    assert job["results_key"] == f"{job['results_prefix']}round-1/results.jsonl"
    before = versions(pipeline, str(job["results_prefix"]))
    final_results = pipeline.read(str(job["results_key"]))

    finisher = pipeline.poll_function.module.poller._finisher
    round_zero = [part for part in pipeline.parts(outcome["job_id"]) if part["kind"] == "part"]
    finisher._bring_home(pipeline.job(outcome["job_id"]), round_zero, [])  # the stale attempt

    assert versions(pipeline, str(job["results_prefix"])) == before
    assert set(before.values()) == {1}  # every object was written exactly once
    assert pipeline.read(str(job["results_key"])) == final_results
    with pytest.raises(AlreadyWrittenError):
        finisher._objects.put_json(
            pipeline.bucket, f"{job['results_prefix']}results.jsonl", {}, create_only=True
        )
    assert len(inbox.messages()) == 1


def test_a_create_only_write_over_an_object_is_refused(stack: DeployedStack) -> None:
    bucket = stack.resource("BatchBucket")
    s3 = boto3.client("s3")
    with S3MultipartWriter(s3, bucket, "results/x/results.jsonl", create_only=True) as sink:
        sink.write(b"first\n")

    with (
        pytest.raises(AlreadyWrittenError),
        S3MultipartWriter(s3, bucket, "results/x/results.jsonl", create_only=True) as sink,
    ):
        sink.write(b"second\n")

    body = s3.get_object(Bucket=bucket, Key="results/x/results.jsonl")["Body"].read()
    assert body == b"first\n"
