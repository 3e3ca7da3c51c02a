"""Just enough of the Lambda runtime to run batchdrop's handlers without Docker.

A function is loaded the way template.yaml names it (CodeUri + Handler) into a fresh module, as a
new execution environment would, and invoked asynchronously with the retries and the on-failure
destination that the template configures.

While a function's code runs (its cold start, an invocation, Lambda's on-failure send on its
behalf), `running()` says which function of which deployment it is, so that a test can hold each
AWS call to the role the template gives that function.
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3

from local.template_stack import TEMPLATE, AsyncConfig, DeployedStack, load_template

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass(frozen=True, eq=False)
class Execution:
    """Whose code is running: one function of one deployment, whose AWS calls use its role."""

    function: str  # the function's logical id in the template
    stack: DeployedStack


_running: ContextVar[Execution | None] = ContextVar("running", default=None)


def running() -> Execution | None:
    """The function whose code is running in this context, or None (a test's own setup)."""
    return _running.get()


@contextmanager
def executing(execution: Execution) -> Iterator[None]:
    token = _running.set(execution)
    try:
        yield
    finally:
        _running.reset(token)


@dataclass
class LambdaContext:
    """The attributes Powertools reads from a real Lambda context."""

    function_name: str
    memory_limit_in_mb: int = 512
    timeout_seconds: int = 900
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = ""
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = ""
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds
        if not self.invoked_function_arn:
            self.invoked_function_arn = (
                f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"
            )

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    code_dir: Path
    module: str
    handler: str
    timeout: int
    memory: int


def function_spec(logical_id: str, template_path: Path = TEMPLATE) -> FunctionSpec:
    """Where a function's code lives and what it is given, read from the SAM template."""
    template = load_template(template_path)
    props = template["Resources"][logical_id]["Properties"]
    defaults = template.get("Globals", {}).get("Function", {})
    module, handler = props["Handler"].rsplit(".", 1)
    return FunctionSpec(
        logical_id=logical_id,
        code_dir=template_path.parent / props["CodeUri"],
        module=module,
        handler=handler,
        timeout=int(props.get("Timeout", defaults.get("Timeout", 3))),
        memory=int(props.get("MemorySize", defaults.get("MemorySize", 128))),
    )


_env_lock = threading.Lock()
_env_users = 0
_env_saved: dict[str, str | None] = {}


@contextmanager
def environment(variables: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, for None, unset) process environment variables while a handler loads or runs,
    or while the local stack is up.

    Invocations overlap in the local stack, so the original values are saved by the first
    and restored by the last; restoring per call would let one call put back another's values.
    """
    global _env_users
    with _env_lock:
        for name, value in variables.items():
            _env_saved.setdefault(name, os.environ.get(name))
            _set(name, value)
        _env_users += 1
    try:
        yield
    finally:
        with _env_lock:
            _env_users -= 1
            if _env_users == 0:
                for name, value in _env_saved.items():
                    _set(name, value)
                _env_saved.clear()


def _set(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def load_function(spec: FunctionSpec, env: Mapping[str, str]) -> ModuleType:
    """Import a handler module afresh, like a cold start in a new execution environment."""
    path = spec.code_dir / f"{spec.module}.py"
    # Named as Lambda names it ("app"), since libraries key state on the module name, but kept
    # out of sys.modules so that every load is a separate execution environment.
    module_spec = importlib.util.spec_from_file_location(spec.module, path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(module_spec)
    with environment(env):
        module_spec.loader.exec_module(module)
    return module


@dataclass
class Function:
    """A loaded function: its handler, its spec, its environment and where it is deployed."""

    spec: FunctionSpec
    module: ModuleType
    env: dict[str, str]
    execution: Execution

    @classmethod
    def load(cls, stack: DeployedStack, logical_id: str, overrides: Mapping[str, str]) -> Function:
        spec = function_spec(logical_id)
        env = {
            **stack.env(logical_id),
            "AWS_LAMBDA_FUNCTION_NAME": stack.resource(logical_id),
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory),
            **overrides,
        }
        execution = Execution(logical_id, stack)
        # The cold start runs as the function too: its clients are made, and may call, there.
        with executing(execution):
            module = load_function(spec, env)
        return cls(spec, module, env, execution)

    def invoke(self, event: dict[str, Any]) -> Any:
        """A synchronous invocation: the handler's result, or its exception."""
        context = LambdaContext(
            function_name=self.spec.logical_id,
            memory_limit_in_mb=self.spec.memory,
            timeout_seconds=self.spec.timeout,
        )
        handler: Handler = getattr(self.module, self.spec.handler)
        with environment(self.env), executing(self.execution):
            return handler(event, context)

    def invoke_async(
        self,
        event: dict[str, Any],
        config: AsyncConfig,
        session: boto3.session.Session | None = None,
    ) -> AsyncResult:
        """Lambda's asynchronous invocation: retried, then sent to the on-failure destination."""
        attempts = config.max_retries + 1
        error: BaseException | None = None
        for _attempt in range(attempts):
            try:
                return AsyncResult(self.invoke(event), attempts=_attempt + 1)
            except Exception as exc:
                error = exc
        assert error is not None
        if config.on_failure_queue_url:
            record = _failure_record(self.spec.logical_id, event, error, attempts)
            with executing(self.execution):  # Lambda sends it with the function's role
                sqs = (session or boto3.session.Session()).client("sqs")
                sqs.send_message(
                    QueueUrl=config.on_failure_queue_url, MessageBody=json.dumps(record)
                )
        return AsyncResult(None, attempts=attempts, error=error)


@dataclass(frozen=True)
class AsyncResult:
    result: Any
    attempts: int
    error: BaseException | None = None


def _failure_record(
    function: str, event: dict[str, Any], error: BaseException, attempts: int
) -> dict[str, Any]:
    """The record Lambda sends to an on-failure destination."""
    return {
        "version": "1.0",
        "timestamp": datetime.now(UTC).isoformat(),
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": f"arn:aws:lambda:us-east-1:123456789012:function:{function}",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": attempts,
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
        "responsePayload": {"errorType": type(error).__name__, "errorMessage": str(error)},
    }
