"""The whole pipeline in a test: drop a file, let the schedule tick, read what the user gets."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3

from local.inbox import Inbox
from local.lambda_runtime import Function
from local.simulator import BatchSimulator, ManualClock
from local.template_stack import DeployedStack
from tests.conftest import load_event
from tests.support import drop

TICK_SECONDS = 120  # simulated time between two poll ticks


class Pipeline:
    def __init__(
        self,
        load_function: Callable[..., Function],
        stack: DeployedStack,
        sim: BatchSimulator,
        inbox: Inbox,
        **poll_env: str,
    ) -> None:
        self.stack = stack
        self.sim = sim
        self.inbox = inbox
        self.bucket = stack.resource("BatchBucket")
        self.submit_function = load_function("SubmitFunction")
        self.poll_function = load_function("PollFunction", **poll_env)
        self.table = boto3.resource("dynamodb").Table(stack.resource("JobsTable"))
        self.s3 = boto3.client("s3")

    @property
    def clock(self) -> ManualClock:
        clock = self.sim.clock
        assert isinstance(clock, ManualClock)
        return clock

    def submit(
        self, key: str, body: bytes, metadata: dict[str, str] | None = None
    ) -> dict[str, Any]:
        result = self.submit_function.invoke(drop(self.bucket, key, body, metadata=metadata))
        outcome: dict[str, Any] = result["outcomes"][0]
        return outcome

    def tick(self) -> dict[str, Any]:
        summary: dict[str, Any] = self.poll_function.invoke(load_event("poll_tick.json"))
        return summary

    def run(self, job_id: str, *, max_ticks: int = 60) -> dict[str, Any]:
        """Tick every TICK_SECONDS of simulated time until the job has an outcome."""
        for _ in range(max_ticks):
            self.clock.advance(TICK_SECONDS)
            self.tick()
            job = self.job(job_id)
            if job["status"] not in {"submitting", "active"}:
                return job
        raise AssertionError(f"job {job_id} did not finish in {max_ticks} ticks")

    def job(self, job_id: str) -> dict[str, Any]:
        item: dict[str, Any] = self.table.get_item(Key={"pk": f"JOB#{job_id}", "sk": "JOB"})["Item"]
        return item

    def result(self, job_id: str, name: str = "results.jsonl") -> str:
        """The key of one of a job's results: its last round's files, or raw/ in its folder."""
        job = self.job(job_id)
        if name.startswith("raw/"):
            return f"{job['results_prefix']}{name}"
        results = str(job.get("results_key") or f"{job['results_prefix']}results.jsonl")
        return results.removesuffix("results.jsonl") + name

    def parts(self, job_id: str) -> list[dict[str, Any]]:
        items = self.table.query(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :batch)",
            ExpressionAttributeValues={":pk": f"JOB#{job_id}", ":batch": "BATCH#"},
        )["Items"]
        return list(items)

    def active_index(self, partition: str = "ACTIVE") -> list[dict[str, Any]]:
        """The sparse index's live batches, or (SUBMITTING) the jobs still being submitted."""
        return list(
            self.table.query(
                IndexName="ActiveIndex",
                KeyConditionExpression="active_pk = :a",
                ExpressionAttributeValues={":a": partition},
            )["Items"]
        )

    def read(self, key: str) -> bytes:
        body: bytes = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body

    def read_jsonl(self, key: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.read(key).splitlines()]

    def exists(self, key: str) -> bool:
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=key)
        return any(obj["Key"] == key for obj in listed.get("Contents", []))
