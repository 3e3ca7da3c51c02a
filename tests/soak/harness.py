"""Driving the soak: many jobs at once through shared ticks, with the plan's faults applied.

Time is the simulator's ManualClock: records, leases and OpenAI's batches all follow it, and
retry waits are recorded, never slept. A step drops the jobs due (or re-delivers, cancels,
re-uploads them), ticks the poll function once or twice at once, then moves the clock.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.exceptions import ClientError

from batchdrop import runtime
from batchdrop.cli.stack_client import BatchdropClient, StackInfo
from batchdrop.cli.views import UserError
from batchdrop.domain.limits import Limits
from batchdrop.domain.model import SourceObject
from batchdrop.jobs.launch import part_reference
from local.lambda_runtime import Function
from local.simulator import BatchSimulator, ManualClock
from local.simulator.faults import Fault
from local.simulator.lifecycle import Outcome
from local.template_stack import DeployedStack
from tests.conftest import SleepRecorder, load_event
from tests.soak.faults import REQUESTS_PER_BATCH, JobScript, Kill, OpenAIFault, SoakPlan
from tests.support import Killed, drop, jsonl, request_body

TICK_SECONDS = 300  # the template's schedule: every 5 minutes
IDLE_JUMP_SECONDS = 900  # once nothing moved in a tick: leases and backoffs are long
MAX_STEPS = 600
LANDING_WAIT = 10.0
ENDED = {"rejected", "completed", "failed", "expired", "cancelled"}


class Killer:
    """The plan's kills, armed per job: each fires once, at the named store call of that job,
    as a `Killed` the handler cannot catch (Powertools keeps INPROGRESS, the lease stays)."""

    def __init__(self) -> None:
        self._armed: dict[tuple[str, str], Kill] = {}
        self._lock = threading.Lock()
        self.fired: list[tuple[str, str, bool]] = []

    def arm(self, job_id: str, kill: Kill, scope: str) -> None:
        with self._lock:
            self._armed[(scope, job_id)] = kill

    def should_kill(self, scope: str, job_id: str, method: str) -> Kill | None:
        with self._lock:
            kill = self._armed.get((scope, job_id))
            if kill is None or kill.method != method:
                return None
            if kill.skip > 0:
                self._armed[(scope, job_id)] = Kill(kill.method, kill.before, kill.skip - 1)
                return None
            del self._armed[(scope, job_id)]
            self.fired.append((job_id, method, kill.before))
            return kill


class KillableStore:
    """A job store (or anything whose calls name the job first) that dies where armed."""

    def __init__(self, inner: Any, killer: Killer, scope: str) -> None:
        self._inner = inner
        self._killer = killer
        self._scope = scope

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._inner, name)
        if not callable(real):
            return real

        def call(*args: Any, **kwargs: Any) -> Any:
            job_id = args[0] if args and isinstance(args[0], str) else ""
            kill = self._killer.should_kill(self._scope, job_id, name)
            if kill is not None and kill.before:
                raise Killed(f"killed before {name}")
            result = real(*args, **kwargs)
            if kill is not None:
                raise Killed(f"killed after {name}")
            return result

        return call


@dataclass
class Dropped:
    """One uploaded object version: the file the user expects exactly one outcome email for."""

    script: JobScript
    job_id: str
    key: str
    body: bytes
    custom_ids: list[str]


@dataclass
class Observations:
    dead_letters: list[str] = field(default_factory=list)  # job ids whose event hit the DLQ
    tick_errors: list[str] = field(default_factory=list)
    # (job id, results object key) -> (version id, etag) when first seen with the job ended
    results_when_ended: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    retries: int = 0  # needs_attention jobs the operator retried
    steps: int = 0
    kills: int = 0
    late_faults: list[Fault] = field(default_factory=list)


def job_id_of(event: dict[str, Any]) -> str:
    """The job an S3 event names: the id batchdrop derives from the object version."""
    s3 = event["Records"][0]["s3"]
    return SourceObject(
        bucket=s3["bucket"]["name"],
        key=s3["object"]["key"],
        size=int(s3["object"]["size"]),
        etag=s3["object"]["eTag"],
        sequencer=s3["object"]["sequencer"],
        version_id=s3["object"].get("versionId"),
    ).job_id


class Soak:
    """The pipeline under the plan's faults: two submit and two poll execution environments."""

    def __init__(
        self,
        plan: SoakPlan,
        stack: DeployedStack,
        sim: BatchSimulator,
        load_function: Callable[..., Function],
        sleeps: SleepRecorder,
    ) -> None:
        self.plan, self.stack, self.sim = plan, stack, sim
        self.bucket = stack.resource("BatchBucket")
        self.table = boto3.resource("dynamodb").Table(stack.resource("JobsTable"))
        self.killer = Killer()
        self.seen = Observations()
        self.dropped: dict[str, Dropped] = {}  # by job id
        self._due: dict[int, list[tuple[str, Dropped]]] = {}  # step -> (action, job)
        self._creates: Counter[tuple[str, int]] = Counter()
        self._done: set[str] = set()  # jobs ended and emailed
        self._lock = threading.Lock()
        self._client = BatchdropClient(StackInfo.from_outputs(stack.outputs, "us-east-1"))
        limits = Limits(max_requests=REQUESTS_PER_BATCH)
        # Thousands of INFO lines cost real time; SOAK_LOG_LEVEL=INFO brings them back.
        quiet = {
            "POWERTOOLS_LOG_LEVEL": os.environ.get("SOAK_LOG_LEVEL", "CRITICAL"),
            "POWERTOOLS_METRICS_DISABLED": "true",  # an EMF line per flush otherwise
        }
        self.submitters = [load_function("SubmitFunction", **quiet) for _ in range(2)]
        for function in self.submitters:
            submitter = function.module.submitter
            submitter._limits = limits
            submitter._store = KillableStore(submitter._store, self.killer, "submit")
        self.pollers = [
            load_function("PollFunction", RESUBMIT_UNFINISHED="true", **quiet) for _ in "ab"
        ]
        for function in self.pollers:
            poller = function.module.poller
            poller._resumer._submitter._limits = limits
            finisher = poller._finisher
            finisher._store = KillableStore(finisher._store, self.killer, "finish")
            finisher._outbox._store = KillableStore(finisher._outbox._store, self.killer, "finish")
        sim.outcomes.choose_with(self._choose)
        sleeps.hook = self._let_late_calls_land

    @property
    def clock(self) -> ManualClock:
        clock = self.sim.clock
        assert isinstance(clock, ManualClock)
        return clock

    def run(self) -> None:
        """Drop the waves a step apart, then tick until every job has ended and emailed."""
        waves = list(self.plan.waves)
        for step in range(MAX_STEPS):
            self.seen.steps = step + 1
            self._release_held_calls()
            for script in waves.pop(0) if waves else []:
                self._drop(script, step, first=True)
            self._due_actions(step)
            moved = self._tick(step)
            self._observe_ended()
            self._trace(step)
            if not waves and not any(s > step for s in self._due) and self._all_ended():
                return
            busy = moved or bool(waves) or any(s == step + 1 for s in self._due)
            self.clock.advance(TICK_SECONDS if busy else IDLE_JUMP_SECONDS)
        raise AssertionError(f"jobs still running after {MAX_STEPS} steps: {self._running()}")

    def _trace(self, step: int) -> None:
        """SOAK_TRACE=path: one line per step, to see where a long run spends its time."""
        path = os.environ.get("SOAK_TRACE")
        if path:
            with open(path, "a") as trace:  # noqa: PTH123
                trace.write(
                    f"{time.monotonic():.1f} step {step} done {len(self._done)}/"
                    f"{len(self.dropped)} calls {len(self.sim.calls)} kills {self.seen.kills}\n"
                )

    # --- the submit path ----------------------------------------------------------------------

    def _drop(self, script: JobScript, step: int, *, first: bool) -> None:
        ids = [script.custom_id(n) for n in range(script.requests)]
        lines = [
            {"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
             "body": request_body("/v1/chat/completions", "gpt-4o-mini", n)}
            for n, cid in enumerate(ids)
        ]  # fmt: skip
        body = jsonl(lines)
        event = drop(self.bucket, script.key, body)
        job = Dropped(script, job_id_of(event), script.key, body, ids)
        self.dropped[job.job_id] = job
        if first:
            self._schedule(script, step, job)
            if script.submit_kill is not None:
                self.killer.arm(job.job_id, script.submit_kill, "submit")
            if script.finish_kill is not None:
                self.killer.arm(job.job_id, script.finish_kill, "finish")
            for fault in script.submit_faults:
                self._inject(fault)
        self._deliver(job, event, script.delivery if first else "once")

    def _schedule(self, script: JobScript, step: int, job: Dropped) -> None:
        if script.cancel_after_steps is not None:
            self._due.setdefault(step + script.cancel_after_steps, []).append(("cancel", job))
        if script.reupload_after_steps is not None:
            self._due.setdefault(step + script.reupload_after_steps, []).append(("reupload", job))

    def _deliver(self, job: Dropped, event: dict[str, Any], delivery: str) -> None:
        """S3's at-least-once delivery: once, twice in a row, or twice at the same moment."""
        if delivery != "concurrent":
            for function in self.submitters[: 2 if delivery == "twice" else 1]:
                self._invoke_async(function, event, job.job_id)
            return
        start = threading.Barrier(2)
        threads = [
            threading.Thread(target=self._invoke_async, args=(f, event, job.job_id, start))
            for f in self.submitters
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _invoke_async(
        self,
        function: Function,
        event: dict[str, Any],
        job_id: str,
        start: threading.Barrier | None = None,
    ) -> None:
        """Lambda's async invocation: the first try and two retries, a kill counting as a
        failure; after that the event sits in the dead-letter queue and the poller resumes."""
        if start is not None:
            start.wait()
        attempts = self.stack.async_configs["SubmitFunction"].max_retries + 1
        for _ in range(attempts):
            try:
                function.invoke(event)
                return
            except Killed:
                self.seen.kills += 1
            except Exception:  # noqa: S112 - Lambda retries whatever the handler raised
                continue
        with self._lock:
            self.seen.dead_letters.append(job_id)

    def _due_actions(self, step: int) -> None:
        """The user's side: `batchdrop cancel`, or the same file uploaded again (a new version)."""
        for action, job in self._due.pop(step, []):
            if action == "reupload":
                self._drop(job.script, step, first=False)
                continue
            with contextlib.suppress(UserError):  # it had ended already
                self._client.cancel(job.job_id)

    # --- OpenAI's side -----------------------------------------------------------------------

    def _inject(self, fault: OpenAIFault) -> None:
        injected = self.sim.faults.inject(
            fault.route, fault.kind, fault.times, lands_late=fault.lands_late, held=fault.held
        )
        if fault.lands_late:
            with self._lock:
                self.seen.late_faults.append(injected)

    def _choose(self, metadata: dict[str, str] | None) -> Outcome | None:
        """Each batch's fate, by its job and part, whatever order concurrent creates arrive in."""
        reference = part_reference(metadata or {})
        if reference is None:
            return None
        job_id, part = reference
        job = self.dropped.get(job_id)
        if job is None:
            return None
        fate = job.script.fates.get(part)
        if fate is None:
            return None
        with self._lock:
            self._creates[(job.job_id, part)] += 1
            creates = self._creates[(job.job_id, part)]
        if creates <= fate.token_limit_times:
            return Outcome("token_limit_exceeded")
        return Outcome(fate.kind, fate.finished_fraction, fate.missing_lines)

    def _let_late_calls_land(self, seconds: float) -> None:
        """A wait as long as the request's own timeout is when a late call lands (the settle);
        a held one lags further, until the next step, past every look the launcher makes."""
        if seconds < runtime.openai_timeout[1]:
            return
        with self._lock:
            late = list(self.seen.late_faults)
        for fault in late:
            if fault.remaining <= 0 and not fault.held:
                fault.landed.wait(LANDING_WAIT)

    def _release_held_calls(self) -> None:
        with self._lock:
            held = [f for f in self.seen.late_faults if f.held and f.remaining <= 0]
        for fault in held:
            if not fault.landed.is_set():
                fault.release()
                fault.landed.wait(LANDING_WAIT)

    # --- the poll path -----------------------------------------------------------------------

    def _tick(self, step: int) -> bool:
        """One tick, or two ticking at once; True when anything moved."""
        script = self.plan.step(step)
        for fault in script.faults:
            self._inject(fault)
        pollers = self.pollers if script.overlapping else self.pollers[step % 2 : step % 2 + 1]
        start = threading.Barrier(len(pollers))
        results: list[dict[str, Any] | None] = [None] * len(pollers)

        def tick(n: int) -> None:
            start.wait()
            try:
                results[n] = pollers[n].invoke(load_event("poll_tick.json"))
            except Killed:
                self.seen.kills += 1
            except Exception as error:
                self.seen.tick_errors.append(f"step {step}: {error!r}")

        threads = [threading.Thread(target=tick, args=(n,)) for n in range(len(pollers))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return any(_moved(summary) for summary in results)

    # --- what the run saw --------------------------------------------------------------------

    def jobs(self) -> list[dict[str, Any]]:
        items = _scan(self.table)
        return [item for item in items if item["sk"] == "JOB"]

    def _all_ended(self) -> bool:
        """Every job ended and emailed, and nothing left in any partition of the index: no batch
        live, no submission unfinished, no clean-up pending."""
        if len(self._done) < len(self.dropped):
            return False
        partitions = ("ACTIVE", "SUBMITTING", "CLEANUP")
        return not any(self._index_count(partition) for partition in partitions)

    def _running(self) -> list[str]:
        return sorted(set(self.dropped) - self._done)

    def _index_count(self, partition: str) -> int:
        return int(
            self.table.query(
                IndexName="ActiveIndex",
                KeyConditionExpression="active_pk = :p",
                ExpressionAttributeValues={":p": partition},
                Select="COUNT",
            )["Count"]
        )

    def _observe_ended(self) -> None:
        """Note each job's results objects as first seen once it has ended, to tell any later
        write apart. Only jobs not yet done are read: a full scan each step costs seconds."""
        s3 = boto3.client("s3")
        for job in self._read_jobs(sorted(set(self.dropped) - self._done)):
            if job.get("status") == "needs_attention":
                # Set aside after repeated failures: the operator, told by email and alarm,
                # retries it, as docs/deploy.md says; the faults may still be there.
                self._client.retry(str(job["job_id"]))
                self.seen.retries += 1
                continue
            if job.get("status") not in ENDED:
                continue
            for key in results_objects(job) if "results_key" in job else []:
                if (job["job_id"], key) not in self.seen.results_when_ended:
                    current = latest_version(s3, self.bucket, key)
                    if current:
                        self.seen.results_when_ended[(job["job_id"], key)] = current
            if _ended_and_emailed(job):
                self._done.add(str(job["job_id"]))

    def _read_jobs(self, job_ids: list[str]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for i in range(0, len(job_ids), 100):
            keys = [{"pk": f"JOB#{job_id}", "sk": "JOB"} for job_id in job_ids[i : i + 100]]
            request: dict[str, Any] = {self.table.name: {"Keys": keys, "ProjectionExpression":
                "job_id, #s, results_key, unfinished_key, notice_outcome",
                "ExpressionAttributeNames": {"#s": "status"}}}  # fmt: skip
            while request:
                response = self.table.meta.client.batch_get_item(RequestItems=request)
                found.extend(response["Responses"].get(self.table.name, []))
                request = response.get("UnprocessedKeys") or {}
        return found


def results_objects(job: dict[str, Any]) -> list[str]:
    """Every object of a job's results the user may rely on once it has been emailed."""
    results = str(job["results_key"])
    keys = [results, results.rsplit("/", 1)[0] + "/summary.json"]
    if job.get("unfinished_key"):
        keys.append(str(job["unfinished_key"]))
    return keys


def latest_version(s3: Any, bucket: str, key: str) -> tuple[str, str] | None:
    """(version id, etag) of the object's current version, or None when there is none. Any
    write after it, even of the same bytes, makes a new current version."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError:
        return None
    return str(head["VersionId"]), str(head["ETag"])


def _scan(table: Any) -> list[dict[str, Any]]:
    response = table.scan()
    items: list[dict[str, Any]] = response["Items"]
    while "LastEvaluatedKey" in response:
        response = table.scan(ExclusiveStartKey=response["LastEvaluatedKey"])
        items.extend(response["Items"])
    return items


def _ended_and_emailed(job: dict[str, Any] | None) -> bool:
    if job is None or job.get("status") not in ENDED:
        return False
    return (job.get("notice_outcome") or {}).get("state") == "sent"


def _moved(summary: dict[str, Any] | None) -> bool:
    if summary is None:
        return True  # killed or failed: whatever it was doing is still to do
    return bool(
        summary["changed"]
        or summary["finished_jobs"]
        or summary["resumed_submissions"]
        or summary["cleanups"]
        or summary["errors"]
    )
