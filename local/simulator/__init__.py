"""A faithful local OpenAI Batch API (Files, Uploads, Batches, and the content of the videos
batches make) on a loopback HTTP server."""

from .clock import Clock, ManualClock, ScaledClock
from .lifecycle import Timings
from .simulator import BatchSimulator

__all__ = ["BatchSimulator", "Clock", "ManualClock", "ScaledClock", "Timings"]
