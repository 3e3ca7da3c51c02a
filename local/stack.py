"""batchdrop on a laptop: moto as a real HTTP endpoint, the OpenAI simulator beside it, and the
functions run the way template.yaml wires them.

Every object created under the input prefix reaches the submit function as the S3 event AWS
would send (found by watching the bucket's versions, since moto's own events carry no version
or sequencer), through Lambda's asynchronous retries and on-failure queue; the poll function
runs on the template's schedule, compressed by the simulator's clock speed.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import requests
from moto.server import ThreadedMotoServer

from batchdrop import SERVICE, runtime
from local.lambda_runtime import Function, environment
from local.moto_dynamodb import tune_moto_dynamodb
from local.s3_events import object_created, sample_event
from local.simulator import BatchSimulator, ScaledClock
from local.template_stack import DeployedStack, S3Trigger, deploy

LOCAL_API_KEY = "sk-batchdrop-local"
REAL_OPENAI_URL = "https://api.openai.com/v1"
STATE_FILE = Path(".batchdrop") / "local.json"  # where `batchdrop --local` finds the stack
_RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class LocalOptions:
    openai: str = "sim"  # "sim", or "real" for the real OpenAI API with OPENAI_API_KEY
    speed: float = 60.0  # simulated seconds per real second (the simulator's and the schedule's)
    watch_interval: float = 0.25  # how often the bucket is checked for new objects
    tick_seconds: float | None = None  # override the compressed schedule (real mode: 30 s)
    quiet: bool = False  # keep the functions' INFO logs and metric lines off the terminal


class LocalStack:
    def __init__(self, options: LocalOptions | None = None) -> None:
        self.options = options or LocalOptions()
        self.endpoint = ""
        self.stack: DeployedStack | None = None
        self.sim: BatchSimulator | None = None
        self._moto: ThreadedMotoServer | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._invocations = ThreadPoolExecutor(max_workers=5, thread_name_prefix="submit")
        self._seen: set[tuple[str, str]] = set()
        self._sequencer = itertools.count(1)
        self.ticks = 0  # poll ticks ended, raising or not
        self._ticked = threading.Condition()
        self.errors: list[str] = []
        self._environment = ExitStack()  # this process's AWS clients point at moto until stop
        self._saved_clock = runtime.clock

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> LocalStack:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access log line per call
        port = _free_port()
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self._moto.start()
        self.endpoint = f"http://127.0.0.1:{port}"
        # moto keeps its state per process; a new local stack starts from an empty account.
        requests.post(f"{self.endpoint}/moto-api/reset", timeout=10).raise_for_status()
        self._environment.enter_context(
            environment(
                {
                    "AWS_ENDPOINT_URL": self.endpoint,
                    "AWS_ACCESS_KEY_ID": "local",
                    "AWS_SECRET_ACCESS_KEY": "local",
                    "AWS_DEFAULT_REGION": "us-east-1",
                    "AWS_PROFILE": None,
                    "AWS_SESSION_TOKEN": None,
                    "POWERTOOLS_TRACE_DISABLED": "1",  # no X-Ray daemon on a laptop
                }
            )
        )
        tune_moto_dynamodb()
        self.stack = deploy(parameters={"NotificationEmail": "you@example.com"})
        base_url, key = self._openai()
        boto3.client("secretsmanager").put_secret_value(
            SecretId=self.stack.resource("OpenAIApiKeySecret"), SecretString=key
        )
        overrides = {"OPENAI_BASE_URL": base_url}
        if self.options.quiet:
            overrides |= {"POWERTOOLS_LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true"}
        self.submit = Function.load(self.stack, "SubmitFunction", overrides)
        self.poll = Function.load(self.stack, "PollFunction", overrides)
        if self.options.quiet:
            # Child loggers hand their records to the service logger's handler whatever that
            # logger's own level is, so the handler is what filters.
            for handler in logging.getLogger(SERVICE).handlers:
                handler.setLevel(logging.WARNING)
        self._spawn(self._watch_bucket, "watch-s3")
        self._spawn(self._run_schedule, "schedule")
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._invocations.shutdown(wait=True)
        if self.sim is not None:
            self.sim.stop()
        if self._moto is not None:
            self._moto.stop()
        runtime.clock = self._saved_clock
        self._environment.close()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def describe(self) -> dict[str, Any]:
        """What a client needs to use this stack: the endpoint and the stack's outputs."""
        assert self.stack is not None
        return {
            "endpoint": self.endpoint,
            "region": self.stack.region,
            "outputs": self.stack.outputs,
            "openai_base_url": self.sim.base_url if self.sim else REAL_OPENAI_URL,
        }

    def write_state(self, path: Path = STATE_FILE) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.describe(), indent=2) + "\n")
        return path

    # --- wiring ------------------------------------------------------------------------------

    def _openai(self) -> tuple[str, str]:
        if self.options.openai == "real":
            key = os.environ.get("OPENAI_API_KEY", "").strip()
            if not key:
                raise SystemExit("--openai real needs OPENAI_API_KEY in the environment")
            return REAL_OPENAI_URL, key
        clock = ScaledClock(speed=self.options.speed)
        self.sim = BatchSimulator(api_key=LOCAL_API_KEY, clock=clock).start()
        # Records, deadlines and stuck warnings keep the simulator's time, as in production
        # they keep OpenAI's.
        runtime.clock = clock.now
        return self.sim.base_url, LOCAL_API_KEY

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _watch_bucket(self) -> None:
        assert self.stack is not None
        s3 = boto3.client("s3")
        while not self._stop.wait(self.options.watch_interval):
            for trigger in self.stack.s3_triggers:
                self._deliver_new_objects(s3, trigger)

    def _deliver_new_objects(self, s3: Any, trigger: S3Trigger) -> None:
        assert self.stack is not None
        pages = s3.get_paginator("list_object_versions").paginate(
            Bucket=trigger.bucket, Prefix=trigger.prefix
        )
        for page in pages:
            for version in page.get("Versions", []):
                seen = (version["Key"], version["VersionId"])
                if seen in self._seen or not trigger.matches("ObjectCreated:Put", version["Key"]):
                    continue
                self._seen.add(seen)
                event = object_created(
                    bucket=trigger.bucket,
                    key=version["Key"],
                    size=version["Size"],
                    etag=version["ETag"],
                    sequencer=f"{next(self._sequencer):018X}",
                    version_id=version["VersionId"],
                    region=self.stack.region,
                )
                self._invocations.submit(self._invoke_submit, trigger.function, event)

    def _invoke_submit(self, function: str, event: dict[str, Any]) -> None:
        assert self.stack is not None
        result = self.submit.invoke_async(event, self.stack.async_configs[function])
        if result.error is not None:
            self.errors.append(f"{function}: {result.error}")

    def _run_schedule(self) -> None:
        assert self.stack is not None
        (schedule,) = self.stack.schedules
        interval = self.options.tick_seconds or self._compressed(schedule.expression)
        tick = sample_event_tick()
        while not self._stop.wait(interval):
            try:
                self.poll.invoke(tick)
            except Exception as exc:
                self.errors.append(f"poll: {exc}")
            with self._ticked:
                self.ticks += 1
                self._ticked.notify_all()

    def wait_for_tick(self, timeout: float = 60.0) -> None:
        """Return once a poll tick that had not ended at the call has ended: whatever a tick
        was in the middle of (say, the clean-up after a job's finish) is then done."""
        with self._ticked:
            seen = self.ticks
            if not self._ticked.wait_for(lambda: self.ticks > seen, timeout):
                raise TimeoutError(f"no poll tick ended within {timeout} s")

    def _compressed(self, expression: str) -> float:
        if self.options.openai == "real":
            return 30.0
        match = _RATE.fullmatch(expression)
        if match is None:
            raise ValueError(f"the local schedule understands rate(N unit), not {expression!r}")
        seconds = int(match[1]) * _UNIT_SECONDS[match[2].rstrip("s")]
        return seconds / self.options.speed


def sample_event_tick() -> dict[str, Any]:
    return sample_event("poll_tick.json")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
