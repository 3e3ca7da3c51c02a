"""A faithful local OpenAI Batch API (Files, Uploads, Batches) on a loopback HTTP server."""

from .clock import Clock, ManualClock, ScaledClock
from .lifecycle import Timings
from .simulator import BatchSimulator

__all__ = ["BatchSimulator", "Clock", "ManualClock", "ScaledClock", "Timings"]
