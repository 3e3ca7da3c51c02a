"""The submit function end to end: an S3 event in, batches on the simulator and records out."""

from __future__ import annotations

import json
from collections.abc import Callable

import boto3
import pytest

from local.inbox import Inbox
from local.lambda_runtime import Function
from local.simulator import BatchSimulator
from local.template_stack import DeployedStack
from tests.conftest import load_event
from tests.support import MODELS, drop, jsonl, request_lines


def job_items(stack: DeployedStack) -> list[dict]:
    table = boto3.resource("dynamodb").Table(stack.resource("JobsTable"))
    return table.scan()["Items"]  # a Scan is fine in a test; the code never scans


@pytest.mark.parametrize("endpoint", sorted(MODELS))
def test_a_valid_file_becomes_one_batch_for_each_endpoint(
    endpoint: str,
    load_function: Callable[[str], Function],
    bucket: str,
    stack: DeployedStack,
    openai_sim: BatchSimulator,
) -> None:
    body = jsonl(request_lines(5, endpoint))
    event = drop(bucket, "requests/job.jsonl", body)

    result = load_function("SubmitFunction").invoke(event)

    (outcome,) = result["outcomes"]
    assert outcome["status"] == "submitted"
    assert outcome["request_count"] == 5
    (batch_id,) = outcome["batch_ids"]
    batch = openai_sim.batches[batch_id]
    assert batch["endpoint"] == endpoint
    assert batch["metadata"] == {  # batchdrop's two pairs, no more
        "batchdrop_part": f"{outcome['job_id']}/0",
        "submission_token": batch["metadata"]["submission_token"],
    }
    uploaded = openai_sim.file_bytes(batch["input_file_id"])
    assert uploaded == body
    items = {item["sk"]: item for item in job_items(stack)}
    assert items["JOB"]["status"] == "active"
    assert items["JOB"]["endpoint"] == endpoint
    assert items["JOB"]["model"] == MODELS[endpoint]
    assert items["BATCH#0000"]["batch_id"] == batch_id
    assert items["BATCH#0000"]["active_pk"] == "ACTIVE"


def test_a_key_with_spaces_plus_and_unicode_is_decoded_as_s3_encodes_it(
    load_function: Callable[[str], Function],
    bucket: str,
    stack: DeployedStack,
    openai_sim: BatchSimulator,
) -> None:
    key = "requests/summer sales é+2026.jsonl"
    event = drop(bucket, key, jsonl(request_lines(2)), template="s3_put_unicode_key.json")
    assert event["Records"][0]["s3"]["object"]["key"] == "requests/summer+sales+%C3%A9%2B2026.jsonl"

    result = load_function("SubmitFunction").invoke(event)

    (batch_id,) = result["outcomes"][0]["batch_ids"]
    assert batch_id in openai_sim.batches
    (job,) = [item for item in job_items(stack) if item["sk"] == "JOB"]
    assert job["source_key"] == key


def test_every_record_of_a_multi_record_event_is_submitted(
    load_function: Callable[[str], Function], bucket: str, openai_sim: BatchSimulator
) -> None:
    first = drop(bucket, "requests/a.jsonl", jsonl(request_lines(2)))
    second = drop(bucket, "requests/b.jsonl", jsonl(request_lines(3, "/v1/embeddings")))
    event = load_event("s3_put_two_records.json")
    event["Records"] = [first["Records"][0], second["Records"][0]]

    result = load_function("SubmitFunction").invoke(event)

    assert [o["request_count"] for o in result["outcomes"]] == [2, 3]
    assert openai_sim.count("POST /v1/batches") == 2


def test_an_invalid_file_is_refused_with_a_report_and_one_email(
    load_function: Callable[[str], Function],
    bucket: str,
    stack: DeployedStack,
    openai_sim: BatchSimulator,
    inbox: Inbox,
) -> None:
    lines = request_lines(3)
    lines[1]["custom_id"] = lines[0]["custom_id"]
    event = drop(bucket, "requests/dupes.jsonl", jsonl(lines))

    result = load_function("SubmitFunction").invoke(event)

    assert result["outcomes"][0]["status"] == "rejected"
    assert openai_sim.count("POST /v1/files") == 0
    assert openai_sim.count("POST /v1/batches") == 0
    s3 = boto3.client("s3")
    report = json.loads(
        s3.get_object(Bucket=bucket, Key="reports/dupes.jsonl.report.json")["Body"].read()
    )
    assert report["problems"] == [
        {
            "line": 2,
            "code": "duplicate_custom_id",
            "message": report["problems"][0]["message"],
        }
    ]
    assert "line 1" in report["problems"][0]["message"]
    assert s3.head_object(Bucket=bucket, Key="requests/dupes.jsonl")["ContentLength"] > 0
    (email,) = inbox.messages()
    assert email["subject"] == "batchdrop: dupes.jsonl rejected, 1 problem to fix"
    assert "line 2" in email["body"]
    assert "reports/dupes.jsonl.report.json" in email["body"]
    assert email["attributes"] == {"status": "rejected"}
    (job,) = [item for item in job_items(stack) if item["sk"] == "JOB"]
    assert job["status"] == "rejected"
    assert "active_pk" not in job
