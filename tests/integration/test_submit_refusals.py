"""Bad input never becomes a batch: it becomes a report, a rejected record and one email."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from local.inbox import Inbox
from local.lambda_runtime import Function
from local.simulator import BatchSimulator
from local.template_stack import DeployedStack
from tests.support import drop, jsonl, request_lines

VALID = request_lines(3)


def lines_with(index: int, **changes: Any) -> bytes:
    lines = [dict(line) for line in VALID]
    lines[index] = {**lines[index], **changes}
    return jsonl(lines)


def raw_lines(*rows: bytes) -> bytes:
    return b"\n".join(rows) + b"\n"


GOOD = [json.dumps(line).encode() for line in VALID]

# (name, file body, expected (line, code) of the first problem)
CORPUS: list[tuple[str, bytes, tuple[int, str]]] = [
    ("invalid json", raw_lines(GOOD[0], b'{"custom_id": "x",', GOOD[2]), (2, "invalid_json")),
    ("json array", raw_lines(GOOD[0], b"[1, 2]"), (2, "not_an_object")),
    ("missing custom_id", lines_with(1, custom_id=None), (2, "custom_id_not_string")),
    ("numeric custom_id", lines_with(2, custom_id=7), (3, "custom_id_not_string")),
    ("duplicate custom_id", lines_with(2, custom_id="req-0"), (3, "duplicate_custom_id")),
    ("GET method", lines_with(1, method="GET"), (2, "invalid_method")),
    ("unsupported url", lines_with(0, url="/v1/audio/speech"), (1, "unsupported_url")),
    ("mixed url", lines_with(1, url="/v1/embeddings"), (2, "mixed_url")),
    ("body not object", lines_with(1, body="hello"), (2, "body_not_object")),
    ("missing model", lines_with(2, body={"messages": []}), (3, "missing_model")),
    (
        "mixed model",
        lines_with(1, body={"model": "gpt-4o", "messages": []}),
        (2, "mixed_model"),
    ),
    ("blank line", raw_lines(GOOD[0], b"", GOOD[1]), (2, "blank_line")),
    ("invalid utf-8", raw_lines(GOOD[0], b'{"custom_id": "\xff\xfe"}'), (2, "invalid_utf8")),
    ("binary garbage", bytes(range(256)) * 40, (1, "invalid_json")),
    ("binary high bytes", bytes(range(128, 256)) * 40, (1, "invalid_utf8")),
    ("only a BOM", b"\xef\xbb\xbf", (1, "empty_file")),
    ("only whitespace", b"\n\n  \n", (1, "empty_file")),
    (
        "huge single line",
        raw_lines(GOOD[0], b'{"custom_id": "big", "pad": "' + b"x" * (11 * 1024 * 1024) + b'"}'),
        (2, "line_too_long"),
    ),
]


@pytest.mark.parametrize(("name", "body", "first_problem"), CORPUS, ids=[c[0] for c in CORPUS])
def test_bad_input_is_refused_with_a_report_naming_the_line(
    name: str,
    body: bytes,
    first_problem: tuple[int, str],
    load_function: Callable[[str], Function],
    bucket: str,
    stack: DeployedStack,
    openai_sim: BatchSimulator,
    inbox: Inbox,
) -> None:
    key = "requests/bad input.jsonl"
    event = drop(bucket, key, body)

    result = load_function("SubmitFunction").invoke(event)

    assert result["outcomes"][0]["status"] == "rejected"
    assert openai_sim.count("POST /v1/files") == 0
    assert openai_sim.count("POST /v1/batches") == 0
    s3 = boto3.client("s3")
    report = json.loads(
        s3.get_object(Bucket=bucket, Key="reports/bad input.jsonl.report.json")["Body"].read()
    )
    first = report["problems"][0]
    assert (first["line"], first["code"]) == first_problem
    assert first["message"].startswith(f"line {first_problem[0]}")
    assert report["source"] == f"s3://{bucket}/{key}"
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body  # the input is kept
    (email,) = inbox.messages()
    assert "rejected" in email["subject"]
    assert f"line {first_problem[0]}" in email["body"]
    assert email["attributes"]["status"] == "rejected"
    table = boto3.resource("dynamodb").Table(stack.resource("JobsTable"))
    (job,) = [i for i in table.scan()["Items"] if i["sk"] == "JOB"]
    assert job["status"] == "rejected"
    assert job["expires_at"] > job["created_at"]  # finished records age out


def test_a_zero_byte_object_is_refused_without_reading_it(
    load_function: Callable[[str], Function], bucket: str, inbox: Inbox
) -> None:
    event = drop(bucket, "requests/empty.jsonl", b"")

    result = load_function("SubmitFunction").invoke(event)

    assert result["outcomes"][0]["status"] == "rejected"
    (email,) = inbox.messages()
    assert "the file is empty" in email["body"]


def test_a_folder_marker_is_refused_with_its_reason(
    load_function: Callable[[str], Function], bucket: str, inbox: Inbox
) -> None:
    event = drop(bucket, "requests/archive.jsonl/", b"")

    result = load_function("SubmitFunction").invoke(event)

    assert result["outcomes"][0]["status"] == "rejected"
    (email,) = inbox.messages()
    assert "folder marker" in email["body"]


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("BOM", b"\xef\xbb\xbf" + jsonl(VALID)),
        ("CRLF", jsonl(VALID).replace(b"\n", b"\r\n")),
        ("no final newline", jsonl(VALID).rstrip(b"\n")),
    ],
)
def test_tolerated_quirks_are_submitted_normalised(
    name: str,
    body: bytes,
    load_function: Callable[[str], Function],
    bucket: str,
    openai_sim: BatchSimulator,
) -> None:
    event = drop(bucket, "requests/quirky.jsonl", body)

    result = load_function("SubmitFunction").invoke(event)

    (batch_id,) = result["outcomes"][0]["batch_ids"]
    uploaded = openai_sim.file_bytes(openai_sim.batches[batch_id]["input_file_id"])
    assert uploaded == jsonl(VALID)


def test_a_rejection_email_lost_to_a_crash_is_sent_by_the_retry(
    load_function: Callable[[str], Function], bucket: str, inbox: Inbox
) -> None:
    event = drop(bucket, "requests/dupes.jsonl", lines_with(1, custom_id="req-0"))
    function = load_function("SubmitFunction")
    outbox = function.module.submitter._outbox
    real_send = outbox.send_once

    def crash(*args: Any, **kwargs: Any) -> bool:
        raise RuntimeError("crashed before the email")

    outbox.send_once = crash
    with pytest.raises(Exception, match="1 of 1 failed"):
        function.invoke(event)
    outbox.send_once = real_send
    function.invoke(event)
    function.invoke(event)

    assert len(inbox.messages()) == 1


def test_a_rejection_email_that_failed_to_publish_is_sent_by_the_retry(
    load_function: Callable[[str], Function], bucket: str, inbox: Inbox
) -> None:
    event = drop(bucket, "requests/dupes.jsonl", lines_with(1, custom_id="req-0"))
    function = load_function("SubmitFunction")
    publisher = function.module.submitter._outbox._publisher
    real_publish = publisher.publish

    def throttled(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("SNS throttled the publish")

    publisher.publish = throttled
    with pytest.raises(Exception, match="1 of 1 failed"):
        function.invoke(event)
    publisher.publish = real_publish
    function.invoke(event)  # Lambda's retry, a minute later: well inside the claim's lease

    assert len(inbox.messages()) == 1


def test_a_file_over_the_byte_cap_is_refused_before_it_is_read(
    load_function: Callable[..., Function],
    bucket: str,
    openai_sim: BatchSimulator,
    inbox: Inbox,
) -> None:
    body = b"not even JSON\n" * 10  # read, it would be reported as invalid_json, line by line
    event = drop(bucket, "requests/huge.jsonl", body)

    result = load_function("SubmitFunction", MAX_FILE_BYTES=str(len(body) - 1)).invoke(event)

    assert result["outcomes"][0]["status"] == "rejected"
    report = json.loads(
        boto3.client("s3")
        .get_object(Bucket=bucket, Key="reports/huge.jsonl.report.json")["Body"]
        .read()
    )
    assert report["counts_by_code"] == {"file_too_large": 1}
    assert report["problems"][0]["message"] == (
        f"line 1: the file is {len(body):,} bytes, more than the {len(body) - 1:,} bytes one "
        "file may hold; split it into several files"
    )
    assert openai_sim.count("POST /v1/files") == openai_sim.count("POST /v1/uploads") == 0
    (email,) = inbox.messages()
    assert "rejected" in email["subject"]
    assert "split it into several files" in email["body"]


def test_a_file_over_the_request_cap_is_refused_and_nothing_reaches_openai(
    load_function: Callable[..., Function],
    bucket: str,
    openai_sim: BatchSimulator,
    inbox: Inbox,
) -> None:
    event = drop(bucket, "requests/many.jsonl", jsonl(request_lines(50_001)))

    result = load_function("SubmitFunction", MAX_FILE_REQUESTS="50000").invoke(event)

    assert result["outcomes"][0]["status"] == "rejected"
    report = json.loads(
        boto3.client("s3")
        .get_object(Bucket=bucket, Key="reports/many.jsonl.report.json")["Body"]
        .read()
    )
    assert [(p["line"], p["code"]) for p in report["problems"]] == [(50_001, "too_many_requests")]
    assert report["request_count"] == 50_001
    # The upload begun alongside validation was abandoned at line 50,001: no file, no batch.
    assert openai_sim.file_ids() == []
    assert openai_sim.count("POST /v1/batches") == 0
    (email,) = inbox.messages()
    assert "more than 50,000 requests" in email["body"]
