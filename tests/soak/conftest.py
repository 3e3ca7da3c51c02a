"""The soak's simulator: seeded by the soak, on a manual clock, with a short completion window
so that expired batches come within a few dozen ticks instead of a simulated day."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from batchdrop import runtime
from local.simulator import BatchSimulator, Timings
from tests.conftest import SIM_API_KEY

DEFAULT_SEED = 11  # a fixed seed, so a plain run is red only when the code changed
DEFAULT_JOBS = 200
IN_PROGRESS_SECONDS = 300  # a batch that runs well ends 420 s after its create: two ticks
COMPLETION_WINDOW_SECONDS = 1800
READ_TIMEOUT_SECONDS = 1.0  # a "hang" costs this much real time; settle waits are recorded


@pytest.fixture
def soak_seed() -> int:
    return int(os.environ.get("SOAK_SEED") or DEFAULT_SEED)


@pytest.fixture
def soak_jobs() -> int:
    return int(os.environ.get("SOAK_JOBS") or DEFAULT_JOBS)


@pytest.fixture
def openai_sim(soak_seed: int, monkeypatch: pytest.MonkeyPatch) -> Iterator[BatchSimulator]:
    monkeypatch.setattr(runtime, "openai_timeout", (1.0, READ_TIMEOUT_SECONDS))
    timings = Timings(in_progress=IN_PROGRESS_SECONDS, completion_window=COMPLETION_WINDOW_SECONDS)
    with BatchSimulator(api_key=SIM_API_KEY, seed=soak_seed, timings=timings) as sim:
        yield sim
