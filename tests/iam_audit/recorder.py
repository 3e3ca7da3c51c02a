"""Records the AWS calls each function makes, through botocore's event hooks.

A call belongs to the function whose code made it. A client made while a function runs (in
practice, during its cold start) belongs to that function for good, so calls from the worker
threads of its thread pools, which do not inherit the context, are still its own. A call on any
other client belongs to the function running at that moment, if any. Calls made by a test's own
setup belong to no function and are not recorded.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from botocore import handlers

from local.lambda_runtime import Execution, running
from local.template_stack import ACCOUNT_ID
from tests.iam_audit.encryption import kms_needs
from tests.iam_audit.permissions import Account, missing_object_needs, needs
from tests.iam_audit.policy import Need

_CONTEXT_KEY = "iam_audit"  # where a call's owner and object wait for its response


@dataclass(frozen=True, eq=False)
class RecordedCall:
    execution: Execution
    api: str  # "s3.GetObject"
    needs: tuple[Need, ...]
    problem: str | None = None  # when the audit could not tell what the call needs


class CallRecorder:
    """The calls made since the last drain, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[RecordedCall] = []
        self.installed = False

    def add(self, call: RecordedCall) -> None:
        with self._lock:
            self._calls.append(call)

    def drain(self) -> list[RecordedCall]:
        with self._lock:
            calls, self._calls = self._calls, []
        return calls


RECORDER = CallRecorder()
_CLIENT_CLASS_EVENT = "creating-client-class"  # botocore builds a fresh class for every client


def install() -> None:
    """Hook every botocore session created from now on (they copy BUILTIN_HANDLERS)."""
    if not RECORDER.installed:
        handlers.BUILTIN_HANDLERS.append((_CLIENT_CLASS_EVENT, _add_audit_to_client_class))
        RECORDER.installed = True


def uninstall() -> None:
    if RECORDER.installed:
        handlers.BUILTIN_HANDLERS.remove((_CLIENT_CLASS_EVENT, _add_audit_to_client_class))
        RECORDER.installed = False


def _add_audit_to_client_class(base_classes: list[type], **_: Any) -> None:
    base_classes.insert(0, _AuditedClient)


class _AuditedClient:
    """Mixed into each client class: binds the client to the function making it, and hooks its
    calls."""

    meta: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        hooks = _ClientHooks(owner=running())
        # provide-client-params comes first for every call, pre-signed links included.
        self.meta.events.register("provide-client-params", hooks.before_call)
        self.meta.events.register("after-call.s3", hooks.after_s3_call)


@dataclass(frozen=True)
class _ClientHooks:
    owner: Execution | None

    def before_call(self, params: dict[str, Any], model: Any, context: Any, **_: Any) -> None:
        execution = self.owner or running()
        if execution is None:
            return  # a test's own setup
        service = model.service_model.service_name
        api = f"{service}.{model.name}"
        if isinstance(context, dict):
            context[_CONTEXT_KEY] = (execution, params.get("Bucket"), params.get("Key"))
        try:
            found = needs(service, model.name, params, _account(execution))
            found += kms_needs(found, execution.stack)
        except Exception as error:  # never break the call itself: report it instead
            RECORDER.add(RecordedCall(execution, api, (), f"{type(error).__name__}: {error}"))
            return
        RECORDER.add(RecordedCall(execution, api, tuple(found)))

    def after_s3_call(self, http_response: Any, model: Any, context: Any, **_: Any) -> None:
        owner, bucket, key = (context or {}).get(_CONTEXT_KEY, (None, None, None))
        status = getattr(http_response, "status_code", None)
        if owner is None or bucket is None or status != 404:
            return
        if model.name in ("GetObject", "HeadObject"):
            api = f"s3.{model.name} of s3://{bucket}/{key}, answered 404,"
            RECORDER.add(RecordedCall(owner, api, (missing_object_needs(str(bucket)),)))


def _account(execution: Execution) -> Account:
    stack = execution.stack
    secrets = {
        _secret_name(arn): arn
        for logical_id, resource in stack.template["Resources"].items()
        if resource["Type"] == "AWS::SecretsManager::Secret"
        and (arn := stack.physical_ids.get(logical_id))
    }
    return Account(stack.region, ACCOUNT_ID, secrets)


def _secret_name(arn: str) -> str:
    """A secret's name from its ARN, whose last six characters are a random suffix."""
    return arn.split(":secret:", 1)[-1][:-7]
