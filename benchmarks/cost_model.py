"""5. Cost model: the AWS requests one job costs from drop to email, and an idle tick's cost.

One child hosts its own simulator on a manual clock (as tests/pipeline.py does), cold-starts
both functions, drops a request file, invokes the submit function once with its S3 event, then
ticks the poll function every PollSchedule interval of simulated time until the job is reported,
and once more with nothing active. Every AWS request (any boto3 client) and every OpenAI request
is counted per invocation; the user's own upload of the file is not part of the pipeline's bill.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import boto3

from batchdrop import runtime
from benchmarks.common import ENDPOINT, MODEL, SIM_API_KEY, Check, Plan
from benchmarks.counting import CallCounter, by_service
from benchmarks.services import Services, StackInfo, load_function
from local.s3_events import object_created, sample_event
from local.simulator import BatchSimulator, ManualClock

SECTION = "Cost model"
MAX_TICKS = 30
FAILED_EVERY = 50
_RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours)\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600}
SECONDS_PER_MONTH = 30 * 86_400


def schedule_seconds(expression: str) -> int:
    match = _RATE.fullmatch(expression)
    if match is None:
        raise ValueError(f"the cost model understands rate(N minutes|hours), not {expression!r}")
    return int(match[1]) * _UNIT_SECONDS[match[2].rstrip("s")]


def run(services: Services, plan: Plan, _workdir: Path) -> dict[str, Any]:
    info = services.fresh_stack()
    interval = schedule_seconds(info.parameters["PollSchedule"])
    result = services.run_worker(
        "cost.lifecycle",
        {"stack": info.to_dict(), "lines": plan.cost_lines, "tick_seconds": interval},
    )
    result["tick_seconds"] = interval
    result["ticks_per_month"] = SECONDS_PER_MONTH // interval
    return {**result, "checks": [c.as_dict() for c in checks(result)]}


def checks(result: dict[str, Any]) -> list[Check]:
    idle = result["idle"]["calls"]
    aws_calls, openai_calls = idle["aws"], idle["openai"]
    lifecycle = result["lifecycle_totals"]
    return [
        Check(
            SECTION,
            "Idle poll tick (nothing active): AWS and OpenAI requests",
            "1 DynamoDB Query, no OpenAI call",
            ", ".join(f"{n} {op}" for op, n in aws_calls.items())
            + f"; {sum(openai_calls.values())} OpenAI",
            aws_calls == {"dynamodb:Query": 1} and not openai_calls,
        ),
        Check(
            SECTION,
            f"One job of {result['lines']:,} requests, drop to email: AWS requests",
            "reported",
            ", ".join(f"{name} {count}" for name, count in lifecycle["by_service"].items())
            + f"; Lambda invocations {lifecycle['lambda_invocations']}",
            None,
        ),
    ]


# --- in the measured child ----------------------------------------------------------------------


def request_file(lines: int) -> bytes:
    rows = []
    for n in range(lines):
        custom_id = f"fail-{n}" if n % FAILED_EVERY == FAILED_EVERY - 1 else f"req-{n}"
        body = {"model": MODEL, "messages": [{"role": "user", "content": f"question {n}"}]}
        rows.append(
            json.dumps({"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body})
        )
    return ("\n".join(rows) + "\n").encode()


def lifecycle_task(params: dict[str, Any]) -> dict[str, Any]:
    info = StackInfo.from_dict(params["stack"])
    counter = CallCounter().install()
    clock = ManualClock(start=time.time())
    with BatchSimulator(api_key=SIM_API_KEY, clock=clock) as sim:
        runtime.clock = clock.now  # records and deadlines keep the simulator's time
        submit = load_function(info, "SubmitFunction", sim.base_url)
        poll = load_function(info, "PollFunction", sim.base_url)
        bucket = info.resource("BatchBucket")
        key = f"{info.env('SubmitFunction')['INPUT_PREFIX']}cost-model.jsonl"
        body = request_file(int(params["lines"]))
        put = boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=body)  # the user's
        event = object_created(
            bucket=bucket,
            key=key,
            size=len(body),
            etag=put["ETag"],
            sequencer="0055AED6DCD90281E5",
            version_id=put.get("VersionId"),
            region=info.region,
        )
        phases: list[dict[str, Any]] = []
        before = counter.snapshot()
        outcome = submit.invoke(event)["outcomes"][0]
        phases.append({"phase": "submit", "calls": counter.since(before), "result": outcome})
        job_id = outcome["job_id"]
        for tick in range(1, MAX_TICKS + 1):
            clock.advance(int(params["tick_seconds"]))
            before = counter.snapshot()
            summary = poll.invoke(sample_event("poll_tick.json"))
            phases.append(
                {"phase": f"tick {tick}", "calls": counter.since(before), "result": summary}
            )
            if job_id in summary["finished_jobs"]:
                break
        else:
            raise RuntimeError(f"the job did not finish in {MAX_TICKS} ticks")
        clock.advance(int(params["tick_seconds"]))
        before = counter.snapshot()
        idle_summary = poll.invoke(sample_event("poll_tick.json"))
        idle = {"phase": "idle tick", "calls": counter.since(before), "result": idle_summary}
    totals: dict[str, int] = {}
    openai_total = 0
    for phase in phases:
        for name, count in phase["calls"]["aws"].items():
            totals[name] = totals.get(name, 0) + count
        openai_total += sum(phase["calls"]["openai"].values())
    return {
        "lines": int(params["lines"]),
        "bytes": len(body),
        "outcome": summary["finished_jobs"][job_id],
        "phases": phases,
        "idle": idle,
        "lifecycle_totals": {
            "aws": dict(sorted(totals.items())),
            "by_service": by_service(totals),
            "openai": openai_total,
            "lambda_invocations": len(phases),
            "ticks": len(phases) - 1,
        },
    }
