"""`make soak`: JOBS jobs as shards of at most SHARD_JOBS, each on a stack and a seed of its own
(SEED, SEED+1, …), as many at once as there are cores; then the figures of all of them.

One shard is one Python process bound by moto's CPU, and a tick's work grows with the jobs in
flight, so many small shards finish sooner than one large run and use every core. A failing
shard prints how to replay exactly it (`make soak SEED=s JOBS=n SHARD_JOBS=n`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Shard:
    seed: int
    jobs: int

    @property
    def replay(self) -> str:
        return f"make soak SEED={self.seed} JOBS={self.jobs} SHARD_JOBS={self.jobs}"


def plan(seed: int, jobs: int, shard_jobs: int) -> list[Shard]:
    """Shards of `shard_jobs` (the last one smaller), with consecutive seeds."""
    sizes = [min(shard_jobs, jobs - start) for start in range(0, jobs, shard_jobs)]
    return [Shard(seed + n, size) for n, size in enumerate(sizes)]


def run(shard: Shard, figures: Path) -> tuple[Shard, int, str]:
    """One shard in a pytest process of its own; its exit code and its output."""
    env = {
        **os.environ,
        "SOAK_SEED": str(shard.seed),
        "SOAK_JOBS": str(shard.jobs),
        "SOAK_FIGURES": str(figures / f"{shard.seed}.json"),
    }
    command = [sys.executable, "-m", "pytest", "tests/soak", "-p", "no:logging", "-q", "-s"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    return shard, done.returncode, done.stdout + done.stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--shard-jobs", type=int, required=True)
    parser.add_argument("--parallel", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    if min(args.jobs, args.shard_jobs, args.parallel) < 1:
        parser.error("--jobs, --shard-jobs and --parallel must be at least 1")
    shards = plan(args.seed, args.jobs, args.shard_jobs)
    print(f"soak: {args.jobs} jobs as {len(shards)} shards, {args.parallel} at once", flush=True)
    started = time.monotonic()
    failed: list[Shard] = []
    with (
        tempfile.TemporaryDirectory(prefix="soak-") as scratch,
        ThreadPoolExecutor(max_workers=args.parallel) as pool,
    ):
        running = [pool.submit(run, shard, Path(scratch)) for shard in shards]
        for done, future in enumerate(as_completed(running), start=1):
            shard, code, output = future.result()
            progress = (
                f"  [{done}/{len(shards)}, {time.monotonic() - started:.0f} s] seed {shard.seed}"
            )
            if code == 0:
                print(f"{progress}: passed ({_line(output)})", flush=True)
                continue
            failed.append(shard)
            print(f"{progress}: FAILED\n{output}\n  replay with: {shard.replay}", flush=True)
        totals = _totals(Path(scratch))
    elapsed = time.monotonic() - started
    passed = len(shards) - len(failed)
    print(f"soak: {passed}/{len(shards)} shards passed in {elapsed:.0f} s; {figures_line(totals)}")
    for shard in failed:
        print(f"soak: replay the failed shard with: {shard.replay}")
    return 1 if failed else 0


def figures_line(figures: dict[str, int]) -> str:
    """A run's figures as one line: "208 uploads, 537 batches, ..."."""
    return ", ".join(f"{value:,} {name}" for name, value in figures.items())


def _line(output: str) -> str:
    figures = [line for line in output.splitlines() if line.startswith("soak: ") and " in " in line]
    return figures[-1].removeprefix("soak: ") if figures else "no figures"


def _totals(folder: Path) -> dict[str, int]:
    totals: Counter[str] = Counter()
    for path in sorted(folder.glob("*.json")):
        totals.update(json.loads(path.read_text()))
    return dict(totals)


if __name__ == "__main__":
    raise SystemExit(main())
