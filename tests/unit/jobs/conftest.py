"""Each test gets a world of its own: fresh fakes, a clock at a fixed start."""

from __future__ import annotations

import pytest

from tests.unit.fakes.world import World


@pytest.fixture
def world() -> World:
    return World()
