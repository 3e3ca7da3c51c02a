"""The OpenAI API key never leaves Secrets Manager: not into a log line, a DynamoDB item, an S3
object, an email, a dead-lettered event or an exception, on the happy path or the 401 path.

A sentinel key is stored in the template's secret and the simulator accepts exactly that key,
so a whole pipeline runs with it; then everything the stack holds is searched for it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from local.inbox import Inbox
from local.lambda_runtime import Function
from local.simulator import BatchSimulator
from local.template_stack import DeployedStack
from tests.conftest import load_event
from tests.pipeline import Pipeline
from tests.support import drop, jsonl, request_lines

SENTINEL = "sk-hygiene-0b5e1d7c9a3f4e2b8d6a1c0f"
# The middle of the key, which no masking ("sk-...1c0f") ever shows: a partial leak is a leak.
SENTINEL_CORE = "0b5e1d7c9a3f4e2b"
NEEDLES = (SENTINEL, SENTINEL_CORE)
OTHER_KEY = "sk-the-one-openai-accepts-5f6e7d8c9b"


@pytest.fixture
def openai_sim() -> Iterator[BatchSimulator]:
    """Overrides conftest's simulator: this one accepts the sentinel and nothing else."""
    with BatchSimulator(api_key=SENTINEL, seed=11) as sim:
        yield sim


def store_key(stack: DeployedStack, key: str) -> None:
    boto3.client("secretsmanager").put_secret_value(
        SecretId=stack.resource("OpenAIApiKeySecret"), SecretString=key
    )


# --- where a key could end up ------------------------------------------------------------------


def table_items(stack: DeployedStack) -> Iterator[tuple[str, dict[str, Any]]]:
    dynamodb = boto3.client("dynamodb")
    for table in ("JobsTable", "IdempotencyTable"):
        paginator = dynamodb.get_paginator("scan")
        for page in paginator.paginate(TableName=stack.resource(table)):
            for item in page["Items"]:
                yield table, item


def bucket_objects(stack: DeployedStack) -> Iterator[tuple[str, bytes]]:
    """Every version of every object, current or not."""
    s3 = boto3.client("s3")
    bucket = stack.resource("BatchBucket")
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for version in page.get("Versions", []):
            body = s3.get_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
            yield f"{version['Key']}@{version['VersionId']}", body["Body"].read()


def queue_messages(stack: DeployedStack) -> list[str]:
    sqs = boto3.client("sqs")
    url = stack.resource("SubmitDeadLetterQueue")
    bodies = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in batch:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def leaks(
    stack: DeployedStack,
    inbox: Inbox,
    output: str,
    errors: tuple[BaseException, ...] = (),
) -> list[str]:
    """Every place a needle was found; empty when the key stayed in Secrets Manager."""
    found: list[str] = []

    def search(place: str, text: str | bytes) -> None:
        haystack = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        found.extend(f"{place} holds {needle!r}" for needle in NEEDLES if needle in haystack)

    search("the logs", output)
    for table, item in table_items(stack):
        search(f"{table} item {item.get('pk', item.get('id'))}", json.dumps(item, default=str))
    objects = list(bucket_objects(stack))
    assert objects, "no S3 object to search: the pipeline did not run"
    for key, body in objects:
        search(f"s3://{key}", body)
    for email in inbox.messages():
        search(f"email {email['subject']!r}", json.dumps(email))
    for message in queue_messages(stack):
        search("a dead-lettered event", message)
    for error in errors:
        search(f"exception {type(error).__name__}", f"{error}\n{error!r}\n{error.__cause__!r}")
    return found


def test_the_search_finds_a_planted_key_everywhere_it_looks(
    stack: DeployedStack, inbox: Inbox
) -> None:
    """The control: a search that cannot find the key would prove nothing."""
    bucket = stack.resource("BatchBucket")
    boto3.client("s3").put_object(Bucket=bucket, Key="results/x.json", Body=SENTINEL.encode())
    table = boto3.resource("dynamodb").Table(stack.resource("JobsTable"))
    table.put_item(Item={"pk": "JOB#x", "sk": "JOB", "note": f"Bearer {SENTINEL}"})
    boto3.client("sns").publish(TopicArn=stack.resource("NotificationTopic"), Message=SENTINEL)
    boto3.client("sqs").send_message(
        QueueUrl=stack.resource("SubmitDeadLetterQueue"), MessageBody=SENTINEL_CORE
    )

    found = leaks(stack, inbox, f"key={SENTINEL}", (RuntimeError(SENTINEL_CORE),))

    for place in (
        "the logs",
        "JobsTable",
        "s3://results/x.json",
        "email",
        "a dead-lettered",
        "exc",
    ):
        assert any(leak.startswith(place) for leak in found), place


# --- the happy path and a refusal --------------------------------------------------------------


def test_a_whole_job_and_a_rejected_file_leave_the_key_nowhere(
    load_function: Callable[..., Function],
    stack: DeployedStack,
    openai_sim: BatchSimulator,
    inbox: Inbox,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store_key(stack, SENTINEL)  # before any function starts, so every call uses the sentinel
    # Loaded here, not in a fixture: a function's logger binds to the stdout of its cold start.
    pipeline = Pipeline(load_function, stack, openai_sim, inbox)
    lines = request_lines(6)
    lines[2]["custom_id"] = "fail-2"  # a failed request brings an error file home too
    outcome = pipeline.submit("requests/hygiene/chat.jsonl", jsonl(lines))
    job = pipeline.run(outcome["job_id"])
    rejected = pipeline.submit("requests/hygiene/broken.jsonl", b'{"custom_id": \n[1, 2]\n')

    assert job["status"] == "completed"
    assert rejected["status"] == "rejected"
    assert pipeline.sim.count("POST /v1/batches") == 1  # the sentinel really was the key in use
    captured = capsys.readouterr()
    assert "batch changed" in captured.out  # the logs were captured, so searching them counts
    assert leaks(stack, inbox, captured.out + captured.err) == []


# --- the 401 path ------------------------------------------------------------------------------


@pytest.fixture
def strict_openai() -> Iterator[BatchSimulator]:
    """An OpenAI that accepts another key, so the sentinel in the secret is refused (401)."""
    with BatchSimulator(api_key=OTHER_KEY, seed=12) as sim:
        yield sim


def test_a_refused_key_is_logged_as_refused_on_submit_without_the_key(
    stack: DeployedStack,
    strict_openai: BatchSimulator,
    inbox: Inbox,
    sleeps: object,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store_key(stack, SENTINEL)
    submit = Function.load(stack, "SubmitFunction", {"OPENAI_BASE_URL": strict_openai.base_url})
    event = drop(stack.resource("BatchBucket"), "requests/refused.jsonl", jsonl(request_lines(2)))

    result = submit.invoke_async(event, stack.async_configs["SubmitFunction"])

    assert result.error is not None  # retried, then dead-lettered
    captured = capsys.readouterr()
    assert "submission failed" in captured.out
    assert "invalid_api_key" in captured.out
    assert strict_openai.count("POST /v1/batches") == 0
    assert leaks(stack, inbox, captured.out + captured.err, (result.error,)) == []


def test_a_key_revoked_while_batches_run_is_logged_on_poll_without_the_key(
    stack: DeployedStack,
    strict_openai: BatchSimulator,
    inbox: Inbox,
    sleeps: object,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store_key(stack, OTHER_KEY)
    env = {"OPENAI_BASE_URL": strict_openai.base_url}
    submit = Function.load(stack, "SubmitFunction", env)
    event = drop(stack.resource("BatchBucket"), "requests/revoked.jsonl", jsonl(request_lines(2)))
    assert submit.invoke(event)["outcomes"][0]["status"] == "submitted"
    store_key(stack, SENTINEL)  # the key is replaced by one OpenAI refuses
    poll = Function.load(stack, "PollFunction", env)  # a new execution environment reads it

    summary = poll.invoke(load_event("poll_tick.json"))

    assert summary["errors"] == 1
    captured = capsys.readouterr()
    assert "batch refresh failed" in captured.out
    assert "invalid_api_key" in captured.out
    assert leaks(stack, inbox, captured.out + captured.err) == []
