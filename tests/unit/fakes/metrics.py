"""Powertools' Metrics as the use cases use it: counts added up by name, nothing emitted."""

from __future__ import annotations

from collections import Counter
from typing import Any


class MetricsRecorder:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def add_metric(self, name: str, unit: Any, value: float) -> None:  # noqa: ARG002
        self.counts[name] += int(value)
