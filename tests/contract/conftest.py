"""Fixtures: a fresh simulator on a manual clock, and the official SDK pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from openai import OpenAI

from local.simulator import BatchSimulator

API_KEY = "sk-contract-test-key-0000"


@pytest.fixture
def sim() -> Iterator[BatchSimulator]:
    with BatchSimulator(api_key=API_KEY, seed=7) as simulator:
        yield simulator


@pytest.fixture
def client(sim: BatchSimulator) -> Iterator[OpenAI]:
    sdk = OpenAI(
        api_key=API_KEY,
        base_url=sim.base_url,
        max_retries=0,
        _strict_response_validation=True,
    )
    yield sdk
    sdk.close()
