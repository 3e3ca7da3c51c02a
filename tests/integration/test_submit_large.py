"""Files past OpenAI's limits become a batch group; files past 64 MB go through the Uploads API."""

from __future__ import annotations

import json
from collections.abc import Callable

import boto3
import pytest
from aws_lambda_powertools import Logger, Metrics

from batchdrop import SERVICE
from batchdrop.adapters.job_store import JobStore
from batchdrop.adapters.openai_api import OpenAIBatchAPI, RetryPolicy
from batchdrop.adapters.s3_objects import S3Objects
from batchdrop.adapters.sns import SnsNotifier
from batchdrop.domain.limits import Limits
from batchdrop.domain.model import SourceObject
from batchdrop.jobs.launch import BatchLauncher
from batchdrop.jobs.outbox import NoticeOutbox
from batchdrop.jobs.submit import Submitter
from local.lambda_runtime import Function
from local.simulator import BatchSimulator
from local.template_stack import DeployedStack
from tests.conftest import SIM_API_KEY
from tests.support import drop, jsonl, request_lines


def test_fifty_thousand_and_one_lines_become_two_batches_in_one_job(
    load_function: Callable[[str], Function],
    bucket: str,
    stack: DeployedStack,
    openai_sim: BatchSimulator,
) -> None:
    lines = request_lines(50_001, "/v1/embeddings")
    body = jsonl(lines)
    event = drop(bucket, "requests/big.jsonl", body)

    result = load_function("SubmitFunction").invoke(event)

    (outcome,) = result["outcomes"]
    assert outcome["request_count"] == 50_001
    first, second = (openai_sim.batches[b] for b in outcome["batch_ids"])
    assert (first["metadata"]["batchdrop_part"], second["metadata"]["batchdrop_part"]) == (
        f"{outcome['job_id']}/0",
        f"{outcome['job_id']}/1",
    )
    first_file = openai_sim.file_bytes(first["input_file_id"])
    second_file = openai_sim.file_bytes(second["input_file_id"])
    assert first_file.count(b"\n") == 50_000
    assert second_file == jsonl(lines[50_000:])
    assert first_file + second_file == body  # whole lines, nothing lost, nothing repeated
    # The upload begun alongside validation was abandoned at line 50,001 and left no file.
    assert sorted(openai_sim.file_ids()) == sorted(
        [first["input_file_id"], second["input_file_id"]]
    )
    table = boto3.resource("dynamodb").Table(stack.resource("JobsTable"))
    items = {i["sk"]: i for i in table.scan()["Items"]}
    assert set(items) == {"JOB", "BATCH#0000", "BATCH#0001"}
    assert items["JOB"]["batch_count"] == 2
    assert items["BATCH#0001"]["first_line"] == 50_001


@pytest.fixture
def small_limit_submitter(stack: DeployedStack, openai_sim: BatchSimulator) -> Submitter:
    """The real adapters, with limits small enough to exercise the Uploads API cheaply."""
    Logger(
        service=SERVICE
    )  # the service logger a handler creates, which the domain's child loggers join
    table = boto3.resource("dynamodb").Table(stack.resource("JobsTable"))
    store = JobStore(table, retention_days=1)
    objects = S3Objects(boto3.client("s3"))
    # A short read timeout, so a simulated slow call times out in well under a second.
    api = OpenAIBatchAPI(openai_sim.base_url, lambda: SIM_API_KEY, timeout=(1.0, 0.2))
    return Submitter(
        input_prefix="requests/",
        objects=objects,
        store=store,
        launcher=BatchLauncher(objects, api, RetryPolicy(sleep=lambda _: None)),
        outbox=NoticeOutbox(
            store, SnsNotifier(boto3.client("sns"), stack.resource("NotificationTopic"))
        ),
        metrics=Metrics(namespace="batchdrop-test"),
        limits=Limits(max_upload_part_bytes=2048, max_batch_bytes=1 << 20, max_line_bytes=1024),
    )


def test_a_file_over_the_part_size_is_sent_through_the_uploads_api(
    small_limit_submitter: Submitter, bucket: str, openai_sim: BatchSimulator
) -> None:
    body = b"\xef\xbb\xbf" + jsonl(request_lines(60)).replace(b"\n", b"\r\n")
    drop(bucket, "requests/parts.jsonl", body)
    head = boto3.client("s3").head_object(Bucket=bucket, Key="requests/parts.jsonl")
    source = SourceObject(
        bucket=bucket,
        key="requests/parts.jsonl",
        size=len(body),
        etag=head["ETag"],
        sequencer="01",
        version_id=head.get("VersionId"),
    )

    outcome = small_limit_submitter.submit(source)

    (batch_id,) = outcome.batch_ids
    assert openai_sim.count("POST /v1/files") == 0
    assert openai_sim.count("POST /v1/uploads") == 1
    assert openai_sim.count("POST /v1/uploads/{upload_id}/parts") >= 3
    assert openai_sim.count("POST /v1/uploads/{upload_id}/complete") == 1
    uploaded = openai_sim.file_bytes(openai_sim.batches[batch_id]["input_file_id"])
    assert uploaded == jsonl(request_lines(60))  # the parts reassemble the normalised file


def test_a_failed_part_cancels_the_upload_and_the_retry_starts_clean(
    small_limit_submitter: Submitter, bucket: str, openai_sim: BatchSimulator
) -> None:
    body = jsonl(request_lines(60))
    drop(bucket, "requests/parts.jsonl", body)
    head = boto3.client("s3").head_object(Bucket=bucket, Key="requests/parts.jsonl")
    source = SourceObject(bucket, "requests/parts.jsonl", len(body), head["ETag"], "01", None)
    # More consecutive 500s than the retry policy's six attempts.
    openai_sim.faults.inject("POST /v1/uploads/{upload_id}/parts", kind="500", times=6)

    with pytest.raises(Exception, match="500"):
        small_limit_submitter.submit(source)
    assert openai_sim.count("POST /v1/uploads/{upload_id}/cancel") == 1
    assert openai_sim.count("POST /v1/batches") == 0
    outcome = small_limit_submitter.submit(source)

    assert outcome.status == "submitted"
    assert openai_sim.count("POST /v1/batches") == 1


@pytest.mark.parametrize(
    "route",
    [
        "POST /v1/uploads",
        "POST /v1/uploads/{upload_id}/parts",
        "POST /v1/uploads/{upload_id}/complete",
    ],
)
@pytest.mark.parametrize("kind", ["429", "503", "drop", "latency"])
def test_faults_at_each_uploads_api_call_still_make_one_batch(
    route: str,
    kind: str,
    small_limit_submitter: Submitter,
    bucket: str,
    openai_sim: BatchSimulator,
) -> None:
    body = jsonl(request_lines(60))
    drop(bucket, "requests/parts.jsonl", body)
    head = boto3.client("s3").head_object(Bucket=bucket, Key="requests/parts.jsonl")
    source = SourceObject(bucket, "requests/parts.jsonl", len(body), head["ETag"], "01", None)
    openai_sim.faults.inject(route, kind=kind, times=2, delay=0.5)

    outcome = small_limit_submitter.submit(source)

    assert outcome.status == "submitted"
    assert openai_sim.count("POST /v1/batches") == 1
    assert openai_sim.count("POST /v1/uploads/{upload_id}/complete") == 1
    (batch_id,) = outcome.batch_ids
    assert openai_sim.file_bytes(openai_sim.batches[batch_id]["input_file_id"]) == body


def embedding_inputs(line: bytes) -> int:
    """OpenAI's count: a string is one input, an array of strings one per element."""
    value = json.loads(line)["body"]["input"]
    return len(value) if isinstance(value, list) else 1


def test_fifty_thousand_and_one_embedding_inputs_become_two_batches(
    load_function: Callable[[str], Function], bucket: str, openai_sim: BatchSimulator
) -> None:
    model = "text-embedding-3-small"
    lines = [
        {
            "custom_id": f"req-{n}",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": model, "input": [f"text {n}.{i}" for i in range(1_000)]},
        }
        for n in range(50)
    ]
    lines.append({**lines[0], "custom_id": "last", "body": {"model": model, "input": "one more"}})
    body = jsonl(lines)
    event = drop(bucket, "requests/embed.jsonl", body)

    result = load_function("SubmitFunction").invoke(event)

    (outcome,) = result["outcomes"]
    assert outcome["status"] == "submitted"
    files = [
        openai_sim.file_bytes(openai_sim.batches[batch_id]["input_file_id"])
        for batch_id in outcome["batch_ids"]
    ]
    inputs = [sum(embedding_inputs(line) for line in f.splitlines()) for f in files]
    assert inputs == [50_000, 1]
    assert b"".join(files) == body
