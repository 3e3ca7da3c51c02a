"""The check of each test's recorded calls against the callers' roles, and the run's ledger of
which grants were used.

A call its role does not allow fails the test, naming the function, the call, the action and the
ARN. A grant no call used is only reported, at the end of the run: some are used by the Lambda
service rather than by the code (logs, traces), and a partial run cannot tell the rest.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from tests.iam_audit.policy import Need, evaluate
from tests.iam_audit.recorder import RECORDER, RecordedCall
from tests.iam_audit.roles import Grant, RolePolicy, role_policy

# Used with the role by the Lambda service itself, not by the function's code: never recorded.
USED_BY_LAMBDA = {
    "logs:CreateLogStream": "Lambda writes the function's logs",
    "logs:PutLogEvents": "Lambda writes the function's logs",
    "xray:PutTraceSegments": "Lambda's X-Ray daemon sends the traces",
    "xray:PutTelemetryRecords": "Lambda's X-Ray daemon sends the traces",
}


@dataclass
class Ledger:
    """What the run has seen: tests and calls audited, and the grants that allowed a call."""

    used: set[Grant] = field(default_factory=set)
    tests: int = 0
    calls: int = 0

    def check(self, calls: Iterable[RecordedCall]) -> list[str]:
        """What is wrong with these calls: one line per call a role does not allow."""
        problems: dict[str, None] = {}  # ordered, without repeats
        policies: dict[tuple[int, str], RolePolicy] = {}
        for call in calls:
            self.calls += 1
            execution = call.execution
            if call.problem is not None:
                problems[f"{execution.function} {call.api}: {call.problem}"] = None
                continue
            key = (id(execution.stack), execution.function)
            if key not in policies:
                policies[key] = role_policy(execution.stack, execution.function)
            for need in call.needs:
                problem = self._check_one(policies[key], call.api, need)
                if problem is not None:
                    problems[problem] = None
        return list(problems)

    def _check_one(self, policy: RolePolicy, api: str, need: Need) -> str | None:
        decision = evaluate(policy.statements, need)
        if decision.allowed:
            self.used.update(policy.grants_used(need, decision))
            return None
        reason = (
            f"denied by {decision.denied_by.label}"
            if decision.denied_by
            else f"not allowed by {policy.role}"
        )
        if policy.unevaluated:
            reason += f" (managed policies not read: {', '.join(policy.unevaluated)})"
        return f"{policy.function} {api} needs {need.describe()}: {reason}"

    def unused(self, declared: Iterable[Grant]) -> tuple[list[Grant], list[Grant]]:
        """The declared grants no call used: those of the code, and those Lambda itself uses."""
        left = sorted(set(declared) - self.used)
        return (
            [grant for grant in left if grant.action not in USED_BY_LAMBDA],
            [grant for grant in left if grant.action in USED_BY_LAMBDA],
        )


LEDGER = Ledger()


class TestAudit:
    """One test's audit: its calls are checked when it ends, or earlier if it asks."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, ledger: Ledger = LEDGER) -> None:
        self._ledger = ledger
        self._problems: list[str] = []
        self.calls: list[RecordedCall] = []  # every call checked so far
        RECORDER.drain()  # whatever ran before this test is not its business
        ledger.tests += 1

    def problems(self) -> list[str]:
        """Every call so far that its role does not allow."""
        calls = RECORDER.drain()
        self.calls += calls
        self._problems += self._ledger.check(calls)
        return list(self._problems)

    def take_problems(self) -> list[str]:
        """The problems so far, which the test then owns: they no longer fail it."""
        taken = self.problems()
        self._problems.clear()
        return taken


def report(ledger: Ledger, declared: Iterable[Grant], *, full_run: bool) -> list[str]:
    """The end-of-run summary: the grants no recorded call used."""
    if ledger.calls == 0:
        return [f"no AWS call of a function was recorded in {ledger.tests} tests"]
    by_code, by_lambda = ledger.unused(declared)
    lines = [
        f"{ledger.calls} AWS calls of functions in {ledger.tests} tests; "
        f"{len(by_code)} grants no recorded call used:"
    ]
    lines += [f"  {grant.describe()}" for grant in by_code]
    if by_lambda:
        lines.append("used by the Lambda service with the role, so never recorded:")
        lines += [f"  {grant.describe()}  [{USED_BY_LAMBDA[grant.action]}]" for grant in by_lambda]
    if not full_run:
        lines.append("(a partial run: the tests that did not run may use some of these)")
    return lines
