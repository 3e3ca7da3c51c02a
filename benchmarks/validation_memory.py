"""6. Validation memory: peak RSS of validating files of short requests, 100k to 3M of them.

Each size runs `validate_stream` in a fresh child over a stream of short chat requests (about
135 bytes each, so 3M is about 400 MB) made as they are read, so the measurement holds no file.
Beside it, another child builds what validation kept before issue 10, a dict from each
custom_id's 16-byte digest to its line number, for the same ids: the memory the spilled runs
save. The submit function has 512 MB; the largest file must stay well inside it.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from batchdrop.domain.duplicate_ids import custom_id_digest
from batchdrop.domain.validation import validate_stream
from benchmarks.common import (
    MB,
    Check,
    Plan,
    fmt_mib,
    reset_peak_rss,
    rss_figures,
    stopwatch,
)
from benchmarks.services import Services

SECTION = "Validation memory"
GROWTH_TARGET_MIB = 64.0
FUNCTION_MEMORY_MIB = 512.0  # SubmitFunction's MemorySize in template.yaml
_PATTERN = (
    b'{"custom_id":"r-%08d","method":"POST","url":"/v1/chat/completions",'
    b'"body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}}\n'
)


class ShortRequests:
    """`count` short request lines, made as they are read (a `Readable`)."""

    def __init__(self, count: int) -> None:
        self._lines: Iterator[bytes] = (_PATTERN % n for n in range(count))
        self._buffer = bytearray()

    def read(self, size: int, /) -> bytes:
        while len(self._buffer) < size:
            chunk = b"".join(itertools.islice(self._lines, 4096))
            if not chunk:
                break
            self._buffer += chunk
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out


def run(services: Services, plan: Plan, workdir: Path) -> dict[str, Any]:
    rows = []
    for count in plan.validation_requests:
        spill = Path(tempfile.mkdtemp(prefix="spill-", dir=workdir))
        measured = services.run_worker("validation.stream", {"count": count, "spill": str(spill)})
        before = services.run_worker("validation.dict", {"count": count})
        rows.append({"requests": count, "bytes": count * len(_PATTERN % 0), **measured,
                     "dict": before})  # fmt: skip
    return {"rows": rows, "checks": [c.as_dict() for c in checks(rows)]}


def checks(rows: list[dict[str, Any]]) -> list[Check]:
    result = [
        Check(
            SECTION,
            f"{row['requests']:,} requests ({row['bytes'] / MB:,.0f} MB): validation peak RSS "
            "growth",
            f"< {GROWTH_TARGET_MIB:.0f} MiB",
            f"{fmt_mib(row['rss_growth_mib'])} (a dict of digests alone: "
            f"{fmt_mib(row['dict']['rss_growth_mib'])})",
            row["rss_growth_mib"] < GROWTH_TARGET_MIB,
        )
        for row in rows
    ]
    largest = rows[-1]
    result.append(
        Check(
            SECTION,
            f"{largest['requests']:,} requests: the validating process's peak RSS",
            f"< half the submit function's {FUNCTION_MEMORY_MIB:.0f} MB",
            fmt_mib(largest["rss_peak_mib"]),
            largest["rss_peak_mib"] < FUNCTION_MEMORY_MIB / 2,
        )
    )
    return result


# --- in the measured children -------------------------------------------------------------------


def stream_task(params: dict[str, Any]) -> dict[str, Any]:
    """validate_stream over the generated requests, spilling to a directory of the runner's."""
    spill = Path(params["spill"])
    tempfile.tempdir = str(spill)  # where validate_stream's duplicate check spills
    baseline = reset_peak_rss()
    with stopwatch() as watch:
        report = validate_stream(ShortRequests(int(params["count"])))
    memory = rss_figures(baseline)
    if not report.ok or report.request_count != params["count"]:
        raise RuntimeError(f"the generated file is not what was meant: {report.summary()}")
    return {"seconds": watch.seconds, **memory, "spill_left": len(list(spill.iterdir()))}


def dict_task(params: dict[str, Any]) -> dict[str, Any]:
    """What validation kept before: every custom_id's digest mapped to its line number."""
    baseline = reset_peak_rss()
    with stopwatch() as watch:
        seen = {custom_id_digest(f"r-{n:08d}"): n + 1 for n in range(int(params["count"]))}
    memory = rss_figures(baseline)
    return {"seconds": watch.seconds, **memory, "entries": len(seen)}
