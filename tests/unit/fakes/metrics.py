"""Powertools' Metrics as the use cases use it: counts added up by name, nothing emitted."""

from __future__ import annotations

from collections import Counter

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricResolution, MetricUnit


class MetricsRecorder(Metrics):
    """The use cases take powertools' own class, so the recorder is one: it only overrides
    `add_metric`, the one method they call, and so never touches the shared metric set."""

    def __init__(self) -> None:
        super().__init__(namespace="batchdrop-tests")
        self.counts: Counter[str] = Counter()

    def add_metric(
        self,
        name: str,
        unit: MetricUnit | str,  # noqa: ARG002
        value: float,
        resolution: MetricResolution | int = 60,  # noqa: ARG002
    ) -> None:
        self.counts[name] += int(value)
