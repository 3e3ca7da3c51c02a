"""The batchdrop command against a running local stack, and `batchdrop local up` itself."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from batchdrop.cli.commands import main
from local.inbox import Inbox
from local.stack import LocalOptions, LocalStack
from tests.support import jsonl, request_lines

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def local_stack(tmp_path: Path) -> Iterator[tuple[LocalStack, Path]]:
    with LocalStack(LocalOptions(speed=600, tick_seconds=0.2, quiet=True)) as local:
        yield local, local.write_state(tmp_path / "local.json")


def run(state: Path, *args: str) -> int:
    return main(["--local", "--state", str(state), *args])


def test_submit_wait_status_and_results(
    local_stack: tuple[LocalStack, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, state = local_stack
    requests_file = tmp_path / "cli job.jsonl"
    requests_file.write_bytes(jsonl(request_lines(8)))

    assert run(state, "submit", str(requests_file), "--wait", "--timeout", "60") == 0
    out = capsys.readouterr().out
    assert "Valid: 8 requests" in out
    assert "8/8" in out
    assert "completed" in out

    assert run(state, "status") == 0
    table = capsys.readouterr().out
    assert "cli job.jsonl" in table
    assert "completed" in table
    assert "8 ok, 0 failed" in table

    assert run(state, "status", "cli job.jsonl") == 0
    details = capsys.readouterr().out
    assert "history:" in details
    assert "in_progress" in details
    assert re.search(r"results:  results/cli job/\d{8}T\d{6}Z-[0-9a-f]{8}/results\.jsonl", details)

    assert run(state, "--json", "status", "cli job.jsonl") == 0
    record = json.loads(capsys.readouterr().out)
    assert record["status"] == "completed"
    assert record["succeeded"] == 8

    assert run(state, "retry", "cli job.jsonl") == 1  # only a job set aside can be retried
    assert "is completed; only a job that needs attention" in capsys.readouterr().err

    assert run(state, "results", "cli job.jsonl", "-o", str(tmp_path / "out"), "--raw") == 0
    results = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["custom_id"] for line in results] == [f"req-{n}" for n in range(8)]
    assert list((tmp_path / "out" / "raw").glob("*.output.jsonl"))


def test_results_download_the_images_beside_the_results(
    local_stack: tuple[LocalStack, Path], tmp_path: Path
) -> None:
    _, state = local_stack
    requests_file = tmp_path / "pictures.jsonl"
    body = {"model": "gpt-image-1", "prompt": "a lighthouse", "n": 2}
    url = "/v1/images/generations"
    lines = [{"custom_id": f"pic-{n}", "method": "POST", "url": url, "body": body} for n in (0, 1)]
    requests_file.write_bytes(jsonl(lines))
    assert run(state, "submit", str(requests_file), "--wait", "--timeout", "60") == 0

    assert run(state, "results", "pictures.jsonl", "-o", str(tmp_path / "out")) == 0
    names = sorted(path.name for path in (tmp_path / "out").glob("*.png"))
    assert names == ["pic-0(1).png", "pic-0(2).png", "pic-1(1).png", "pic-1(2).png"]
    assert (tmp_path / "out" / "pic-1(2).png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_submit_metadata_reaches_every_batch_and_status_shows_it_with_the_tokens(
    local_stack: tuple[LocalStack, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local, state = local_stack
    requests_file = tmp_path / "tagged.jsonl"
    requests_file.write_bytes(jsonl(request_lines(3)))

    assert run(
        state, "submit", str(requests_file), "--wait", "--timeout", "60",
        "--metadata", "customer_id=user_123",
        "--metadata", "batch_description=Nightly eval ☕",
        "--metadata", "batchdrop-output-expiry-seconds=86400",
    ) == 0  # fmt: skip
    capsys.readouterr()
    local.wait_for_tick()  # the tick that finished the job has deleted its files too

    (batch,) = [b for b in local.sim.batches.values() if b["metadata"].get("customer_id")]
    assert batch["metadata"]["customer_id"] == "user_123"
    assert batch["metadata"]["batch_description"] == "Nightly eval ☕"
    assert "batchdrop-output-expiry-seconds" not in batch["metadata"]
    assert run(state, "status", "tagged.jsonl") == 0
    details = capsys.readouterr().out
    assert "metadata: batch_description = Nightly eval ☕" in details
    assert "metadata: customer_id = user_123" in details
    assert re.search(r"tokens:   [\d,]+ in, [\d,]+ out, [\d,]+ total", details)
    assert "openai:   2 files deleted" in details  # its input and output file
    assert run(state, "--json", "status", "tagged.jsonl") == 0
    record = json.loads(capsys.readouterr().out)
    assert record["metadata"] == {"batch_description": "Nightly eval ☕", "customer_id": "user_123"}
    assert record["usage"]["total_tokens"] == batch["usage"]["total_tokens"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["submit", "missing.jsonl"], "missing.jsonl: no such file"),
        (["status", "0123456789abcdef"], "no job '0123456789abcdef'"),
        (["results", "nobody.jsonl"], "no job 'nobody.jsonl'"),
        (["cancel", "0123456789abcdef"], "no job '0123456789abcdef'"),
        (["retry", "0123456789abcdef"], "no job '0123456789abcdef'"),
        (["submit", "any.jsonl", "--metadata", "novalue"], "write it as KEY=VALUE"),
        (["submit", "any.jsonl", "--metadata", f"{'k' * 65}=v"], "OpenAI allows 64"),
    ],
)
def test_bad_input_is_one_clear_line_and_a_failing_exit(
    args: list[str],
    message: str,
    local_stack: tuple[LocalStack, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, state = local_stack
    assert run(state, *args) == 1
    err = capsys.readouterr().err
    assert err.startswith("batchdrop: ")
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_an_invalid_file_fails_fast_with_line_numbers_and_is_not_uploaded(
    local_stack: tuple[LocalStack, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local, state = local_stack
    bad = tmp_path / "bad.jsonl"
    lines = request_lines(3)
    lines[2]["custom_id"] = lines[0]["custom_id"]
    bad.write_bytes(jsonl(lines))

    assert run(state, "submit", str(bad)) == 1

    err = capsys.readouterr().err
    assert "line 3" in err
    assert "already used on line 1" in err
    listed = boto3.client("s3").list_objects_v2(Bucket=local.describe()["outputs"]["BucketName"])
    assert listed.get("KeyCount", 0) == 0


def test_no_stack_and_no_local_state_are_one_clear_line(
    local_stack: tuple[LocalStack, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # CloudFormation calls go to moto here (the local stack points AWS_ENDPOINT_URL at it).
    assert main(["--stack", "no-such-stack", "status"]) == 1
    assert "cannot read stack 'no-such-stack'" in capsys.readouterr().err
    assert main(["--local", "--state", str(tmp_path / "none.json"), "status"]) == 1
    assert "batchdrop local up" in capsys.readouterr().err


def test_cancel_end_to_end_keeps_partial_results_and_emails_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Slow enough that the cancel lands while the batch runs: 600 simulated seconds in
    progress take 5 real seconds at speed 120."""
    with LocalStack(LocalOptions(speed=120, tick_seconds=0.3, quiet=True)) as local:
        state = local.write_state(tmp_path / "local.json")
        inbox = Inbox(local.describe()["outputs"]["TopicArn"])
        requests_file = tmp_path / "stop me.jsonl"
        requests_file.write_bytes(jsonl(request_lines(20)))
        assert run(state, "--json", "submit", str(requests_file)) == 0
        (job,) = json.loads(capsys.readouterr().out)
        time.sleep(1.5)  # let the batch start running: a cancel before it starts has no output

        assert run(state, "cancel", job["job_id"]) == 0
        assert "Cancel requested" in capsys.readouterr().out
        view = _wait_until_finished(state, job["job_id"], capsys)

        assert view["status"] == "cancelled"
        assert view["unfinished"] > 0
        assert local.sim is not None
        (batch_id,) = [b["batch_id"] for b in view["batches"]]
        assert local.sim.batches[batch_id]["status"] == "cancelled"
        assert run(state, "results", job["job_id"], "-o", str(tmp_path / "out")) == 0
        assert (tmp_path / "out" / "unfinished.jsonl").exists()
        assert (tmp_path / "out" / "not_succeeded.jsonl").exists()
        emails = _wait_for_emails(inbox)
        assert len(emails) == 1
        assert "cancelled" in emails[0]["subject"]


def _wait_until_finished(
    state: Path, job_id: str, capsys: pytest.CaptureFixture[str]
) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert run(state, "--json", "status", job_id) == 0
        view: dict[str, object] = json.loads(capsys.readouterr().out)
        if view["status"] not in {"submitting", "active"}:
            return view
        time.sleep(0.2)
    raise AssertionError("the job did not finish")


def _wait_for_emails(inbox: Inbox) -> list[dict[str, object]]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if emails := inbox.messages():
            time.sleep(0.5)
            return emails + inbox.messages()  # and nothing more arrives after the first
        time.sleep(0.1)
    return []


def test_local_up_as_a_subprocess_takes_a_plain_boto3_upload_to_results_and_email(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "batchdrop.cli", "local", "up", "--speed", "600", "--tick", "0.2"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": f"{ROOT}:{ROOT / 'layers/batchdrop'}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line) for line in process.stdout or []], daemon=True
    ).start()
    try:
        endpoint = _read_until(lines, "endpoint:").split("endpoint:")[1].strip()
        bucket = _read_until(lines, "bucket:").split("s3://")[1].split("/")[0]
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="any",
            aws_secret_access_key="any",
        )
        s3.put_object(Bucket=bucket, Key="requests/plain.jsonl", Body=jsonl(request_lines(5)))

        subject = _read_until(lines, "Subject:")
        assert subject.strip() == "Subject: batchdrop: plain.jsonl completed, 5/5 ok"
        # The stable pointer leads to the newest job's own folder.
        pointer = s3.get_object(Bucket=bucket, Key="results/plain/latest.json")["Body"].read()
        latest = json.loads(pointer)
        key = latest["results"].removeprefix(f"s3://{bucket}/")
        results = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert len(results.splitlines()) == 5
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    assert not (tmp_path / ".batchdrop" / "local.json").exists()


def _read_until(lines: queue.Queue[str], marker: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if marker in line:
            return line
    raise AssertionError(f"no line with {marker!r} within {timeout} s")
