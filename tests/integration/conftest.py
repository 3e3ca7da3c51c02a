"""Fixtures for the end-to-end tests: the pipeline from a dropped file to the email."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from local.inbox import Inbox
from local.lambda_runtime import Function
from local.simulator import BatchSimulator
from local.template_stack import DeployedStack
from tests.pipeline import Pipeline


@pytest.fixture
def pipeline(
    load_function: Callable[..., Function],
    stack: DeployedStack,
    openai_sim: BatchSimulator,
    inbox: Inbox,
) -> Pipeline:
    return Pipeline(load_function, stack, openai_sim, inbox)
