"""Fixtures for the end-to-end tests: the pipeline from a dropped file to the email; and the
least-privilege audit, which holds every AWS call a function makes to that function's role."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from local.inbox import Inbox
from local.lambda_runtime import Function
from local.simulator import BatchSimulator
from local.template_stack import DeployedStack
from tests.iam_audit import recorder
from tests.iam_audit.audit import LEDGER, TestAudit, report
from tests.iam_audit.roles import template_grants
from tests.pipeline import Pipeline

HERE = Path(__file__).resolve().parent


@pytest.fixture
def pipeline(
    load_function: Callable[..., Function],
    stack: DeployedStack,
    openai_sim: BatchSimulator,
    inbox: Inbox,
) -> Pipeline:
    return Pipeline(load_function, stack, openai_sim, inbox)


@pytest.fixture(scope="session", autouse=True)
def record_aws_calls() -> Iterator[None]:
    recorder.install()
    yield
    recorder.uninstall()


@pytest.fixture(autouse=True)
def least_privilege(record_aws_calls: None) -> Iterator[TestAudit]:
    """Fails the test (at teardown) for each call a function made that its role does not allow."""
    audit = TestAudit()
    yield audit
    problems = audit.problems()
    if problems:
        lines = "\n".join(f"  {problem}" for problem in problems)
        pytest.fail(f"calls their role in template.yaml does not allow:\n{lines}", pytrace=False)


def pytest_sessionfinish(session: pytest.Session) -> None:
    _stopped_early.append(bool(session.shouldstop or session.shouldfail))


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    if LEDGER.tests == 0:
        return
    terminalreporter.section("least privilege: grants no recorded call used")
    full_run = _selects_every_test(config) and not any(_stopped_early)
    for line in report(LEDGER, template_grants(), full_run=full_run):
        terminalreporter.write_line(line)


_stopped_early: list[bool] = []


def _selects_every_test(config: pytest.Config) -> bool:
    """Was every integration test asked for: a directory that holds them all, no -k or -m?"""
    if config.option.keyword or config.option.markexpr:
        return False
    paths = [Path(arg).resolve() for arg in config.args if "::" not in arg]
    return any(path == HERE or path in HERE.parents for path in paths)
