"""Run the measurements in turn and write docs/benchmarks.md.

python -m benchmarks                  # everything, as `make bench` does
python -m benchmarks --only poll      # one section (the report keeps the others' last run)
python -m benchmarks --only validation  # validation's peak RSS at 100k, 1M and 3M requests
python -m benchmarks --quick          # small sizes: a smoke run of the benchmarks themselves
python -m benchmarks.report           # rewrite the report from the last results
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import (
    cold_start,
    cost_model,
    poll_fanout,
    report,
    results,
    submit_stream,
    validation_memory,
)
from benchmarks.common import Plan
from benchmarks.machine import machine_facts
from benchmarks.services import ROOT, Services

OUTPUT = ROOT / "benchmarks" / "output"  # results.json and the workers' logs (git-ignored)
RESULTS = OUTPUT / "results.json"

Section = Callable[[Services, Plan, Path], dict[str, Any]]
SECTIONS: dict[str, Section] = {
    "submit": submit_stream.run,
    "poll": poll_fanout.run,
    "results": results.run,
    "cold_start": cold_start.run,
    "cost": cost_model.run,
    "validation": validation_memory.run,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--only", action="append", choices=sorted(SECTIONS), default=[])
    parser.add_argument("--quick", action="store_true", help="small sizes, for development")
    parser.add_argument("--no-report", action="store_true", help="keep docs/benchmarks.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    plan = Plan.quick_plan() if args.quick else Plan.full()
    wanted = args.only or list(SECTIONS)
    previous = _previous_results() if args.only else {}
    started = time.perf_counter()
    document: dict[str, Any] = {
        "plan": plan.label,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_facts(),
        "sections": dict(previous.get("sections", {})),
        "seconds": {**previous.get("seconds", {})},
    }
    logs = OUTPUT / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    workdir = Path(tempfile.mkdtemp(prefix="batchdrop-bench-"))
    try:
        with Services(logs) as services:
            for name in wanted:
                print(f"[bench] {name} …", flush=True)
                section_start = time.perf_counter()
                document["sections"][name] = SECTIONS[name](services, plan, workdir)
                document["seconds"][name] = time.perf_counter() - section_start
                print(f"[bench] {name} done in {document['seconds'][name]:.0f} s", flush=True)
                _save(document)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    document["total_seconds"] = time.perf_counter() - started
    if args.only:
        document["total_seconds"] = sum(document["seconds"].values())
    _save(document)
    if not args.no_report:
        written = report.write(document)
        print(f"[bench] wrote {', '.join(str(p.relative_to(ROOT)) for p in written)}")
    print(f"[bench] total {document['total_seconds']:.0f} s", flush=True)


def _previous_results() -> dict[str, Any]:
    if not RESULTS.exists():
        return {}
    previous: dict[str, Any] = json.loads(RESULTS.read_text())
    return previous


def _save(document: dict[str, Any]) -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
