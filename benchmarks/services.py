"""The services a measurement runs against, and the child processes it is measured in.

The runner's process holds moto's process and, per measurement, an OpenAI simulator; every
measured piece of code runs in a fresh child (`python -m benchmarks.worker`), pointed at both
through AWS_ENDPOINT_URL and OPENAI_BASE_URL, so its peak RSS is its own and nothing else's.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import boto3
import requests

from benchmarks.common import SIM_API_KEY
from local.lambda_runtime import Function
from local.template_stack import DeployedStack, deploy

ROOT = Path(__file__).resolve().parent.parent
# What the functions log and the metrics they print would only fill the workers' logs.
QUIET = {"POWERTOOLS_LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true"}


@dataclass(frozen=True)
class StackInfo:
    """The part of a deployment a child needs to load the template's functions (JSON-able)."""

    name: str
    region: str
    parameters: dict[str, str]
    physical_ids: dict[str, str]
    function_env: dict[str, dict[str, str]]

    @classmethod
    def of(cls, stack: DeployedStack) -> StackInfo:
        return cls(
            stack.name, stack.region, stack.parameters, stack.physical_ids, stack.function_env
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StackInfo:
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def stack(self) -> DeployedStack:
        return DeployedStack(
            self.name,
            self.region,
            dict(self.parameters),
            {},
            physical_ids=dict(self.physical_ids),
            function_env={k: dict(v) for k, v in self.function_env.items()},
        )

    def resource(self, logical_id: str) -> str:
        return self.physical_ids[logical_id]

    def env(self, function: str) -> dict[str, str]:
        return dict(self.function_env[function])


def load_function(info: StackInfo, logical_id: str, openai_base_url: str, **env: str) -> Function:
    """A cold start of one of the template's functions, quiet, pointed at the simulator."""
    overrides = {"OPENAI_BASE_URL": openai_base_url, **QUIET, **env}
    return Function.load(info.stack(), logical_id, overrides)


class WorkerError(RuntimeError):
    pass


class Services:
    """moto in its own process; deployments of template.yaml into it; measured children."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.endpoint = ""
        self._moto: subprocess.Popen[bytes] | None = None
        self._moto_log: IO[bytes] | None = None
        self._workers = 0

    def start(self) -> Services:
        self.logdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self._moto_log = (self.logdir / "moto.log").open("wb")
        self._moto = subprocess.Popen(  # noqa: S603 - our own module, by path
            [sys.executable, "-m", "benchmarks.moto_server", "--port", str(port)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=self._moto_log,
            stderr=subprocess.STDOUT,
        )
        self.endpoint = f"http://127.0.0.1:{port}"
        _wait_for(f"{self.endpoint}/moto-api/", self._moto)
        os.environ.update(
            {
                "AWS_ENDPOINT_URL": self.endpoint,
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench",
                "AWS_DEFAULT_REGION": "us-east-1",
                "POWERTOOLS_TRACE_DISABLED": "1",  # no X-Ray daemon here
            }
        )
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "OPENAI_API_KEY"):
            os.environ.pop(name, None)
        return self

    @property
    def moto_pid(self) -> int:
        assert self._moto is not None
        return self._moto.pid

    def stop(self) -> None:
        if self._moto is not None:
            assert self._moto.stdin is not None
            self._moto.stdin.close()  # moto_server stops when its stdin closes
            try:
                self._moto.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._moto.kill()
                self._moto.wait(timeout=10)
            self._moto = None
        if self._moto_log is not None:
            self._moto_log.close()

    def __enter__(self) -> Services:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def fresh_stack(self) -> StackInfo:
        """An empty moto with template.yaml's resources and the simulator's key as the secret."""
        requests.post(f"{self.endpoint}/moto-api/reset", timeout=30).raise_for_status()
        stack = deploy(parameters={"NotificationEmail": "bench@example.com"})
        boto3.client("secretsmanager").put_secret_value(
            SecretId=stack.resource("OpenAIApiKeySecret"), SecretString=SIM_API_KEY
        )
        return StackInfo.of(stack)

    def run_worker(
        self, task: str, params: dict[str, Any], *, timeout: float = 900.0
    ) -> dict[str, Any]:
        """Run one task in a fresh child process and return what it reported."""
        self._workers += 1
        name = f"{self._workers:02d}-{task}"
        with tempfile.TemporaryDirectory(prefix="bench-worker-") as scratch:
            request, result = Path(scratch) / "request.json", Path(scratch) / "result.json"
            request.write_text(json.dumps({"task": task, "params": params}))
            log_path = self.logdir / f"{name}.log"
            with log_path.open("wb") as log:
                completed = subprocess.run(  # noqa: S603 - our own module, by path
                    [sys.executable, "-m", "benchmarks.worker", str(request), str(result)],
                    cwd=ROOT,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                    check=False,
                )
            if completed.returncode != 0 or not result.exists():
                tail = log_path.read_text(errors="replace")[-3000:]
                raise WorkerError(f"worker {task} exited {completed.returncode}:\n{tail}")
            report: dict[str, Any] = json.loads(result.read_text())
            return report


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_for(url: str, process: subprocess.Popen[bytes], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise WorkerError(f"the service behind {url} exited with {process.returncode}")
        try:
            requests.get(url, timeout=1)
        except requests.RequestException:
            time.sleep(0.1)
        else:
            return
    raise WorkerError(f"{url} did not come up within {seconds:.0f} s")
