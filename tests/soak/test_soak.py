"""A seeded fault soak: hundreds of jobs through submit and poll at once, under duplicate and
concurrent S3 events, OpenAI faults, late-landing creates, kills, overlapping ticks and every
kind of batch ending; then the promises are checked together, from what users and OpenAI saw.

`make soak SEED=… JOBS=…` replays a run. `tests/soak/faults.py` is what goes wrong;
`tests/soak/invariants.py` is what must hold anyway.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest

from local.inbox import Inbox
from local.lambda_runtime import Function
from local.simulator import BatchSimulator
from local.template_stack import DeployedStack
from tests.conftest import SleepRecorder
from tests.soak.faults import plan_soak
from tests.soak.harness import Soak
from tests.soak.invariants import Evidence, check_all, sim_batches
from tests.soak.shards import figures_line


def test_seeded_fault_soak(
    soak_seed: int,
    soak_jobs: int,
    stack: DeployedStack,
    openai_sim: BatchSimulator,
    load_function: Callable[..., Function],
    sleeps: SleepRecorder,
    inbox: Inbox,
) -> None:
    replay = f"make soak SEED={soak_seed} JOBS={soak_jobs}"
    print(f"\nsoak: seed={soak_seed} jobs={soak_jobs}; replay with: {replay}", flush=True)
    soak = Soak(plan_soak(soak_seed, soak_jobs), stack, openai_sim, load_function, sleeps)
    started = time.monotonic()
    try:
        soak.run()
    except AssertionError as error:
        pytest.fail(f"seed {soak_seed}: {error}\nreplay with: {replay}")
    evidence = Evidence(
        dropped=soak.dropped,
        jobs={job["job_id"]: job for job in soak.jobs()},
        emails=inbox.messages(),
        batches=sim_batches(openai_sim),
        seen=soak.seen,
        s3=boto3.client("s3"),
        bucket=soak.bucket,
        live_files=set(openai_sim.file_ids(purpose=None)),
    )
    _report(_figures(soak, evidence), time.monotonic() - started)
    _judge(check_all(evidence), soak_seed, replay)


def _figures(soak: Soak, evidence: Evidence) -> dict[str, int]:
    """What the run did, by name: printed, and (SOAK_FIGURES=path) written for `make soak`
    to add up over its shards."""
    recorded = {f for job in evidence.jobs.values() for f in job.get("openai_files", [])}
    outcomes = Counter(f"jobs {job['status']}" for job in evidence.jobs.values())
    return {
        "uploads": len(soak.dropped),
        "batches": len(evidence.batches),
        "emails": len(evidence.emails),
        "steps": soak.seen.steps,
        "kills": soak.seen.kills,
        "dead letters": len(soak.seen.dead_letters),
        "retried by the operator": soak.seen.retries,
        "failed ticks": len(soak.seen.tick_errors),
        "OpenAI calls": len(soak.sim.calls),
        **dict(sorted(outcomes.items())),
        "files left on OpenAI": len(evidence.live_files),
        "of them a job's": len(recorded & evidence.live_files),
    }


def _report(figures: dict[str, int], seconds: float) -> None:
    print(f"soak: {figures_line(figures)} in {seconds:.1f} s", flush=True)
    path = os.environ.get("SOAK_FIGURES")
    if path:
        Path(path).write_text(json.dumps(figures))


def _judge(results: dict[str, list[str]], seed: int, replay: str) -> None:
    """Every promise binds: a broken one fails the run with what broke it and how to replay."""
    lines = [
        f"seed {seed}: {name}:\n  " + "\n  ".join(found[:20])
        for name, found in results.items()
        if found
    ]
    assert not lines, "\n".join(lines) + f"\nreplay with: {replay}"
