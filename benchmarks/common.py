"""What every measurement shares: checks against targets, the plan's sizes, memory, timing."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MB = 1_000_000  # file sizes are decimal megabytes, as "a 200 MB file" is usually meant
MIB = 1024 * 1024
SIM_API_KEY = "sk-batchdrop-bench-0123456789abcdef"  # the simulator's key, stored in the secret
ENDPOINT = "/v1/chat/completions"
MODEL = "gpt-4o-mini"
TIMES = "\N{MULTIPLICATION SIGN}"


@dataclass(frozen=True)
class Check:
    """One target of the issue: what was measured, and whether it met the goal."""

    section: str
    name: str
    target: str
    measured: str
    passed: bool | None  # None: reported for context, no target

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Plan:
    """How big each measurement is. `full()` is what `make bench` runs and the issue asks for;
    `quick()` is a smoke run of the same code for developing the benchmarks themselves."""

    submit_sizes_mb: tuple[int, ...] = (20, 100, 200)
    submit_line_bytes: int = 4_000  # 200 MB / 4,000 bytes = 50,000 lines
    poll_counts: tuple[int, ...] = (100, 300, 1_000)
    poll_latencies: tuple[float, ...] = (0.020, 0.100)
    poll_active_for_history: int = 100
    poll_history: tuple[int, ...] = (1_000, 100_000)
    merge_lines: int = 50_000
    stream_mb: int = 500
    long_line_mb: int = 100  # one result line this long, merged in bounded memory
    import_runs: int = 7
    repeats: int = 2  # runs of each side of a ratio, alternating; the best of each counts
    cost_lines: int = 1_000
    validation_requests: tuple[int, ...] = (100_000, 1_000_000, 3_000_000)
    quick: bool = False
    label: str = "full"

    @classmethod
    def full(cls) -> Plan:
        return cls()

    @classmethod
    def quick_plan(cls) -> Plan:
        return cls(
            submit_sizes_mb=(2, 10, 20),
            poll_counts=(20, 50),
            poll_latencies=(0.010,),
            poll_active_for_history=10,
            poll_history=(100, 2_000),
            merge_lines=5_000,
            stream_mb=50,
            long_line_mb=100,
            import_runs=3,
            repeats=1,
            cost_lines=100,
            validation_requests=(10_000, 50_000, 100_000),
            quick=True,
            label="quick",
        )


_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_rss() -> float:
    """Start measuring peak RSS from now; returns the current RSS (MiB), the baseline.

    On Linux, writing 5 to /proc/self/clear_refs resets the peak (VmHWM) to the current RSS,
    so a peak reached while importing does not hide what the measured call adds. Elsewhere the
    baseline is ru_maxrss so far, which can only understate the growth.
    """
    try:
        _CLEAR_REFS.write_text("5")
        return _status_mib("VmRSS")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss_mib() -> float:
    """The peak RSS since the last reset_peak_rss() (VmHWM), in MiB."""
    try:
        return _status_mib("VmHWM")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_figures(baseline: float) -> dict[str, float]:
    """The peak RSS since reset_peak_rss() returned `baseline`, and how much it grew."""
    peak = peak_rss_mib()
    return {"rss_baseline_mib": baseline, "rss_peak_mib": peak, "rss_growth_mib": peak - baseline}


def _status_mib(field: str) -> float:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024  # kB
    raise OSError(f"no {field} in {_STATUS}")


class Stopwatch:
    def __init__(self) -> None:
        self.seconds = 0.0


@contextmanager
def stopwatch() -> Iterator[Stopwatch]:
    watch = Stopwatch()
    start = time.perf_counter()
    try:
        yield watch
    finally:
        watch.seconds = time.perf_counter() - start


def best_of(
    runs: int, first: Callable[[int], dict[str, Any]], second: Callable[[int], dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run two measurements alternately `runs` times each; keep each one's fastest run, with
    every run's time in it (`runs_seconds`)."""
    firsts, seconds = [], []
    for attempt in range(runs):
        firsts.append(first(attempt))
        seconds.append(second(attempt))
    return _fastest(firsts), _fastest(seconds)


def _fastest(results: list[dict[str, Any]]) -> dict[str, Any]:
    best = min(results, key=lambda result: float(result["seconds"]))
    return {**best, "runs_seconds": [result["seconds"] for result in results]}


@contextmanager
def cpu_meter(moto_pid: int, here: str) -> Iterator[dict[str, float]]:
    """CPU seconds spent while the block ran: in this process (named `here`), in moto, and in
    the simulator, which runs in the runner (this child's parent)."""
    spent: dict[str, float] = {}
    start = (time.process_time(), cpu_seconds(moto_pid), cpu_seconds(os.getppid()))
    try:
        yield spent
    finally:
        spent[here] = time.process_time() - start[0]
        spent["moto"] = cpu_seconds(moto_pid) - start[1]
        spent["simulator"] = cpu_seconds(os.getppid()) - start[2]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of another process so far (Linux /proc; 0.0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("inf")


def fmt_seconds(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


def fmt_mib(mib: float) -> str:
    return f"{mib:.1f} MiB"
