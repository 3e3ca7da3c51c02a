"""Clocks that drive the simulated batch lifecycle.

The simulator never runs background timers: every status is computed from `clock.now()`
when it is read, so a test can move time forward with `ManualClock.advance` and a demo can
compress a day into minutes with `ScaledClock`.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Current simulated time, in Unix seconds."""
        ...


class ManualClock:
    """A clock that only moves when told to; the default for tests."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock cannot move backwards")
        with self._lock:
            self._now += seconds
            return self._now


class ScaledClock:
    """Real elapsed time multiplied by `speed` (60.0: one real second is a simulated minute)."""

    def __init__(self, speed: float = 60.0, start: float | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._start = time.time() if start is None else float(start)
        self._origin = time.monotonic()

    def now(self) -> float:
        return self._start + (time.monotonic() - self._origin) * self.speed
