"""Shared fixtures: AWS in moto, built from template.yaml, and the OpenAI simulator beside it.

Every test run imports this file, the unit tests' too, so moto, boto3, the SAM translator and
the local stack are imported by the fixtures that use them, not here: `make unit` never pays
for them (they take seconds to import).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aws_lambda_powertools import Metrics

from batchdrop import SERVICE

if TYPE_CHECKING:
    from local.inbox import Inbox
    from local.lambda_runtime import Function
    from local.simulator import BatchSimulator
    from local.template_stack import DeployedStack

EVENTS = Path(__file__).resolve().parent.parent / "events"
SIM_API_KEY = "sk-batchdrop-test-0123456789abcdef"


@pytest.fixture(autouse=True)
def fresh_powertools() -> None:
    """Powertools keeps process-wide state that Lambda would start afresh in each environment:
    metrics buffered but not flushed, and the service's logger bound to the stdout of the moment
    it was configured (each test captures a new stdout)."""
    Metrics().clear_metrics()
    service = logging.getLogger(SERVICE)
    for handler in list(service.handlers):
        service.removeHandler(handler)
    for marker in ("init", "powertools_handler"):  # how Powertools recognises its own setup
        if hasattr(service, marker):
            delattr(service, marker)
    # A child logger takes its level from the environment of its first import (a quiet local
    # stack says WARNING); here every test's logs follow the service logger's level.
    # (setLevel clears every logger's cache, so only the children that need it are reset.)
    for name, child in logging.root.manager.loggerDict.items():
        if (
            name.startswith(f"{SERVICE}.")
            and isinstance(child, logging.Logger)
            and child.level != logging.NOTSET
        ):
            child.setLevel(logging.NOTSET)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Standard AWS variables only; nothing here may reach a real account."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "OPENAI_API_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "batchdrop")


@pytest.fixture
def stack(aws_env: None, request: pytest.FixtureRequest) -> Iterator[DeployedStack]:
    """Every data resource of template.yaml, created in moto; a test deploys it with other
    parameter values through indirect parametrization (`parametrize("stack", [{...}],
    indirect=True)`)."""
    from moto import mock_aws

    from local.moto_dynamodb import tune_moto_dynamodb
    from local.template_stack import deploy

    tune_moto_dynamodb()
    with mock_aws():
        yield deploy(parameters=getattr(request, "param", None))


@pytest.fixture
def openai_sim() -> Iterator[BatchSimulator]:
    from local.simulator import BatchSimulator

    with BatchSimulator(api_key=SIM_API_KEY, seed=3) as sim:
        yield sim


class SleepRecorder:
    """Stands in for time.sleep in retry policies: records the waits instead of waiting.

    A test may set `hook` to make a wait stand for something happening meanwhile (say, a late
    call landing on the simulator once a wait is long enough for it)."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.hook: Callable[[float], None] | None = None

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.hook is not None:
            self.hook(seconds)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> SleepRecorder:
    from batchdrop import runtime
    from batchdrop.adapters.openai_api import RetryPolicy

    recorder = SleepRecorder()
    monkeypatch.setattr(runtime, "retry_policy", RetryPolicy(sleep=recorder))
    return recorder


@pytest.fixture
def load_function(
    stack: DeployedStack,
    openai_sim: BatchSimulator,
    sleeps: SleepRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Function]:
    """Cold-start a function with the environment the template gives it, pointed at the
    simulator, with the simulator's key stored in the template's secret. Records and
    deadlines follow the simulator's clock, so tests move time for both at once."""
    import boto3

    from batchdrop import runtime
    from local.lambda_runtime import Function

    secret = stack.resource("OpenAIApiKeySecret")
    boto3.client("secretsmanager").put_secret_value(SecretId=secret, SecretString=SIM_API_KEY)
    monkeypatch.setattr(runtime, "clock", openai_sim.clock.now)

    def load(logical_id: str, **overrides: str) -> Function:
        env = {"OPENAI_BASE_URL": openai_sim.base_url, **overrides}
        return Function.load(stack, logical_id, env)

    return load


@pytest.fixture
def bucket(stack: DeployedStack) -> str:
    return stack.resource("BatchBucket")


@pytest.fixture
def inbox(stack: DeployedStack) -> Inbox:
    from local.inbox import Inbox

    return Inbox(stack.resource("NotificationTopic"))


def load_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event
