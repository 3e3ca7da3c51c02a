"""2. Poll fan-out: one tick over many active batches, concurrent against one at a time.

The runner's process hosts the simulator (a manual clock, a fixed latency per call) and writes
the records straight to DynamoDB: one job per batch, cloned from a job made by the real JobStore.
Every batch is still `validating` in its record while the simulator says `in_progress`, so each
tick changes every batch; the child restores the records before each of its two ticks, which
makes them the same work: the template's PollConcurrency (from POLL_CONCURRENCY), then
POLL_CONCURRENCY=1, each a fresh cold start, back to back.

Then the sparse index is put to the test: the same tick over 100 active batches with 1,000 and
with 100,000 finished records (items without active_pk) beside them, counting DynamoDB requests
with a wrapper around botocore's one call method; and an idle tick once nothing is active.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from urllib3.connectionpool import HTTPConnectionPool

from batchdrop.adapters.job_store import JobStore
from batchdrop.adapters.openai_api import OpenAIBatchAPI
from benchmarks.common import (
    ENDPOINT,
    MODEL,
    SIM_API_KEY,
    TIMES,
    Check,
    Plan,
    cpu_meter,
    fmt_seconds,
    ratio,
    stopwatch,
)
from benchmarks.counting import CallCounter
from benchmarks.dynamo import RawItem, get_item, put_items, renamed
from benchmarks.services import Services, StackInfo, load_function
from local.s3_events import sample_event
from local.simulator import BatchSimulator, ManualClock

SECTION = "Poll fan-out"
SPEEDUP_TARGET = 10.0
LEAVE_VALIDATING_SECONDS = 61  # the simulator's validating phase is 60 s
TEMPLATE_JOB = "bench000000"


class Fleet:
    """N batches on the simulator and their records, written on demand."""

    def __init__(self, sim: BatchSimulator, info: StackInfo, count: int) -> None:
        self.sim = sim
        self._templates: tuple[RawItem, RawItem] | None = None
        self.table = info.resource("JobsTable")
        self.bucket = info.resource("BatchBucket")
        api = OpenAIBatchAPI(sim.base_url, lambda: SIM_API_KEY)
        line = json.dumps(
            {
                "custom_id": "req-0",
                "method": "POST",
                "url": ENDPOINT,
                "body": {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
            }
        ).encode()
        self.line = line + b"\n"
        self.file_id = str(
            api.upload_file("bench.jsonl", len(self.line), lambda: [self.line])["id"]
        )
        self.batches = [api.create_batch(self.file_id, ENDPOINT, {}) for _ in range(count)]

    def use_stack(self, info: StackInfo) -> None:
        self.table = info.resource("JobsTable")
        self.bucket = info.resource("BatchBucket")
        self._templates = None

    def templates(self) -> tuple[RawItem, RawItem]:
        """The job and batch items of one real submission, made by JobStore itself."""
        if self._templates is None:
            store = JobStore(boto3.resource("dynamodb").Table(self.table), retention_days=90)
            store.create_job(
                TEMPLATE_JOB,
                {
                    "status": "active",
                    "endpoint": ENDPOINT,
                    "model": MODEL,
                    "source_bucket": self.bucket,
                    "source_key": f"requests/{TEMPLATE_JOB}.jsonl",
                    "filename": f"{TEMPLATE_JOB}.jsonl",
                    "request_count": 1,
                    "batch_count": 1,
                },
            )
            store.record_file(
                TEMPLATE_JOB,
                0,
                {
                    "kind": "part",
                    "file_id": self.file_id,
                    "submission_token": "0" * 32,
                    "first_line": 1,
                    "request_count": 1,
                    "bytes": len(self.line),
                    "start": 0,
                    "end": len(self.line),
                },
            )
            store.record_batch(TEMPLATE_JOB, 0, self.batches[0])
            job = get_item(self.table, f"JOB#{TEMPLATE_JOB}", "JOB")
            batch = get_item(self.table, f"JOB#{TEMPLATE_JOB}", "BATCH#0000")
            self._templates = (job, batch)
        assert self._templates is not None
        return self._templates

    def active_items(self, start: int, end: int) -> tuple[list[RawItem], list[RawItem]]:
        """Job and batch items of active jobs [start, end), each with its own batch."""
        job, batch = self.templates()
        jobs, batches = [], []
        for n in range(start, end):
            names = [
                (TEMPLATE_JOB, f"bench{n:06d}"),
                (self.batches[0]["id"], self.batches[n]["id"]),
            ]
            jobs.append(renamed(job, names))
            batches.append(renamed(batch, names))
        return jobs, batches

    def finished_items(self, start: int, end: int) -> list[RawItem]:
        """Records of finished jobs: a job item and a batch item off the active index, alternately,
        so `end - start` records in all."""
        job, batch = self.templates()
        done_job = {**job, "status": {"S": "completed"}}
        done_batch = {k: v for k, v in batch.items() if k not in {"active_pk", "active_sk"}} | {
            "status": {"S": "completed"},
            "final": {"BOOL": True},
        }
        items = []
        for n in range(start, end):
            template = done_job if n % 2 == 0 else done_batch
            items.append(renamed(template, [(TEMPLATE_JOB, f"done{n // 2:07d}")]))
        return items


def run(services: Services, plan: Plan, workdir: Path) -> dict[str, Any]:
    info = services.fresh_stack()
    clock = ManualClock(start=time.time())
    fanout: list[dict[str, Any]] = []
    with BatchSimulator(api_key=SIM_API_KEY, clock=clock) as sim:
        fleet = Fleet(sim, info, max(plan.poll_counts))
        clock.advance(LEAVE_VALIDATING_SECONDS)  # every batch is in_progress from now on
        written = 0
        for count in plan.poll_counts:
            jobs, batches = fleet.active_items(written, count)
            put_items(fleet.table, jobs + batches)
            written = count
            _, all_batches = fleet.active_items(0, count)
            items_path = workdir / f"active-{count}.json"
            items_path.write_text(json.dumps(all_batches))
            for latency in plan.poll_latencies:
                sim.latency = latency
                result = services.run_worker(
                    "poll.tick",
                    {
                        "stack": info.to_dict(),
                        "openai_base_url": sim.base_url,
                        "items_path": str(items_path),
                        "moto_pid": services.moto_pid,
                    },
                    timeout=1200,
                )
                fanout.append({"active": count, "latency_ms": round(latency * 1000), **result})
        history = _history(services, plan, sim, fleet, workdir)
    return {
        "fanout": fanout,
        "history": history,
        "checks": [c.as_dict() for c in checks(fanout, history, plan)],
    }


def _history(
    services: Services, plan: Plan, sim: BatchSimulator, fleet: Fleet, workdir: Path
) -> list[dict[str, Any]]:
    info = services.fresh_stack()
    fleet.use_stack(info)
    sim.latency = min(plan.poll_latencies)
    jobs, batches = fleet.active_items(0, plan.poll_active_for_history)
    put_items(fleet.table, jobs + batches)
    items_path = workdir / "history-active.json"
    items_path.write_text(json.dumps(batches))
    rows: list[dict[str, Any]] = []
    written = 0
    for index, finished in enumerate(plan.poll_history):
        with stopwatch() as writing:
            put_items(fleet.table, fleet.finished_items(written, finished), threads=4)
        written = finished
        last = index == len(plan.poll_history) - 1
        result = services.run_worker(
            "poll.history",
            {
                "stack": info.to_dict(),
                "openai_base_url": sim.base_url,
                "items_path": str(items_path),
                "idle_tick": last,
                "moto_pid": services.moto_pid,
            },
        )
        rows.append(
            {
                "finished_records": finished,
                "active": plan.poll_active_for_history,
                "write_seconds": writing.seconds,
                **result,
            }
        )
    return rows


def dynamodb_calls(calls: dict[str, dict[str, int]]) -> dict[str, int]:
    return {k: v for k, v in calls["aws"].items() if k.startswith("dynamodb:")}


def checks(fanout: list[dict[str, Any]], history: list[dict[str, Any]], plan: Plan) -> list[Check]:
    result: list[Check] = []
    largest = max(plan.poll_counts)
    for row in fanout:
        if row["active"] != largest:
            continue
        speedup = ratio(row["sequential"]["seconds"], row["concurrent"]["seconds"])
        result.append(
            Check(
                SECTION,
                f"{largest:,} active batches at {row['latency_ms']} ms: concurrent tick vs "
                "one at a time",
                f"≥ {SPEEDUP_TARGET:.0f}{TIMES} faster",
                f"{speedup:.1f}{TIMES} ({fmt_seconds(row['concurrent']['seconds'])} vs "
                f"{fmt_seconds(row['sequential']['seconds'])})",
                speedup >= SPEEDUP_TARGET,
            )
        )
    if len(history) > 1:
        first, last = history[0], history[-1]
        a, b = dynamodb_calls(first["tick"]["calls"]), dynamodb_calls(last["tick"]["calls"])
        result.append(
            Check(
                SECTION,
                f"DynamoDB requests per tick ({first['active']} active): "
                f"{first['finished_records']:,} vs {last['finished_records']:,} finished records",
                "identical",
                f"{sum(a.values()):,} vs {sum(b.values()):,}"
                + ("" if a == b else f" (differ: {a} vs {b})"),
                a == b,
            )
        )
    return result


# --- in the measured children -------------------------------------------------------------------


class PoolOverflows(logging.Handler):
    """Counts urllib3's "Connection pool is full, discarding connection" warnings by the pool's
    port: each is a connection opened for one request, then thrown away."""

    def __init__(self, names: dict[int, str]) -> None:
        super().__init__(logging.WARNING)
        self.names = names
        self.by_host: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("Connection pool is full"):
            self.by_host[self._service()] += 1

    def _service(self) -> str:
        # The message names the host only; the pool that logs it is a caller of this frame.
        frame = sys._getframe()
        while frame is not None:
            pool = frame.f_locals.get("self")
            if isinstance(pool, HTTPConnectionPool):
                return self.names.get(pool.port or 0, f"port {pool.port}")
            frame = frame.f_back  # type: ignore[assignment]
        return "unknown"

    def take(self) -> dict[str, int]:
        counts, self.by_host = dict(self.by_host), Counter()
        return counts


def _install_pool_counter(openai_base_url: str) -> PoolOverflows:
    names = {
        urlsplit(os.environ["AWS_ENDPOINT_URL"]).port or 0: "AWS (moto)",
        urlsplit(openai_base_url).port or 0: "OpenAI (simulator)",
    }
    handler = PoolOverflows(names)
    pool_logger = logging.getLogger("urllib3.connectionpool")
    pool_logger.addHandler(handler)
    pool_logger.propagate = False
    return handler


def _timed_tick(
    function: Any, counter: CallCounter, overflows: PoolOverflows, moto_pid: int
) -> dict[str, Any]:
    """One tick, with the CPU time it cost here, in moto and in the simulator (the runner)."""
    overflows.take()
    before = counter.snapshot()
    with cpu_meter(moto_pid, here="poller") as cpu, stopwatch() as watch:
        summary = function.invoke(sample_event("poll_tick.json"))
    return {
        "seconds": watch.seconds,
        "cpu_seconds": cpu,
        "concurrency": function.module.settings.poll_concurrency,
        "summary": summary,
        "calls": counter.since(before),
        "pool_overflows": overflows.take(),
    }


def tick_task(params: dict[str, Any]) -> dict[str, Any]:
    info = StackInfo.from_dict(params["stack"])
    items: list[RawItem] = json.loads(Path(params["items_path"]).read_text())
    table = info.resource("JobsTable")
    counter = CallCounter().install()
    overflows = _install_pool_counter(params["openai_base_url"])
    result: dict[str, Any] = {}
    for label, env in (("concurrent", {}), ("sequential", {"POLL_CONCURRENCY": "1"})):
        function = load_function(info, "PollFunction", params["openai_base_url"], **env)
        put_items(table, items)  # every batch `validating` again in its record
        result[label] = _timed_tick(function, counter, overflows, params["moto_pid"])
    return result


def history_task(params: dict[str, Any]) -> dict[str, Any]:
    info = StackInfo.from_dict(params["stack"])
    items: list[RawItem] = json.loads(Path(params["items_path"]).read_text())
    table = info.resource("JobsTable")
    counter = CallCounter().install()
    overflows = _install_pool_counter(params["openai_base_url"])
    function = load_function(info, "PollFunction", params["openai_base_url"])
    put_items(table, items)
    result: dict[str, Any] = {"tick": _timed_tick(function, counter, overflows, params["moto_pid"])}
    if params["idle_tick"]:
        retired = [
            {k: v for k, v in i.items() if k not in {"active_pk", "active_sk"}} for i in items
        ]
        put_items(table, retired)  # nothing is active any more
        result["idle"] = _timed_tick(function, counter, overflows, params["moto_pid"])
    return result
