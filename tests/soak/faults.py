"""The soak's fault schedule: everything that goes wrong, drawn from one seed and nothing else.

A plan is a pure function of (seed, jobs): `make soak SEED=… JOBS=…` rebuilds the same files,
deliveries, OpenAI faults, kills, batch outcomes, cancels and overlapping ticks. Thread timing
inside one step (two deliveries at once, two ticks at once) is the one thing a seed cannot fix,
exactly as in Lambda; the harness lines those threads up with barriers.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

REQUESTS_PER_BATCH = 2  # small batches: 1 to 6 requests make 1 to 3 parts
WAVES = 5  # jobs are dropped in waves, with ticks in between, so submit and poll overlap
FAULT_KINDS = ("429", "500", "502", "503", "drop")
LATE_KINDS = ("500", "503", "drop", "drop", "drop", "drop", "drop", "drop", "hang")
SUBMIT_ROUTES = ("POST /v1/files", "POST /v1/batches", "GET /v1/batches")
TICK_ROUTES = (
    "GET /v1/batches/{batch_id}",
    "GET /v1/batches",
    "POST /v1/batches",
    "POST /v1/batches/{batch_id}/cancel",
    "GET /v1/files/{file_id}",
    "GET /v1/files/{file_id}/content",
    "POST /v1/files",
    "DELETE /v1/files/{file_id}",
)
# Where an attempt may die. Before `create_job`, nothing is recorded yet: Lambda's retry finds
# Powertools' marker and records the job itself, for the poller to resume.
SUBMIT_KILLS = (
    ("create_job", True),
    ("record_file", True),
    ("record_file", False),
    ("record_batch", True),
    ("record_batch", False),
    ("update_job", True),
    ("update_job", False),
)
# "Before mark_notice_sent" is left out: SNS has no idempotency key, the one documented gap.
FINISH_KILLS = (
    ("batches", True),  # the finish has just started
    ("update_job", True),  # results written, outcome not recorded
    ("update_job", False),  # outcome recorded, no email yet
    ("claim_notice", False),  # the email is claimed, then the process dies before publishing
    ("retire_batches", True),  # emailed, batches still in the active index
    ("add_follow_up", False),  # a follow-up's file recorded, its batch not created
    ("record_batch", True),  # a follow-up's batch created, not recorded
)


@dataclass(frozen=True)
class OpenAIFault:
    route: str
    kind: str
    times: int = 1
    lands_late: bool = False
    held: bool = False  # lands only at the next step: after the launcher's settle has passed


@dataclass(frozen=True)
class Kill:
    method: str
    before: bool
    skip: int = 0  # matching calls of this job let through first (reaches later parts)


@dataclass(frozen=True)
class BatchFate:
    kind: str = "completed"  # a simulator outcome
    finished_fraction: float = 0.5
    missing_lines: int = 0
    token_limit_times: int = 0  # creates of this part that fail on the enqueued-token limit


@dataclass
class JobScript:
    number: int
    requests: int
    failing: frozenset[int]  # request numbers whose custom_id OpenAI rejects ("fail-…")
    delivery: str  # "once", "twice" (one after the other) or "concurrent"
    submit_faults: list[OpenAIFault] = field(default_factory=list)
    submit_kill: Kill | None = None
    finish_kill: Kill | None = None
    fates: dict[int, BatchFate] = field(default_factory=dict)  # by part index (follow-ups too)
    cancel_after_steps: int | None = None
    reupload_after_steps: int | None = None  # the same file uploaded again: a new version

    @property
    def key(self) -> str:
        return f"requests/soak/job-{self.number:04d}.jsonl"

    @property
    def parts(self) -> int:
        return math.ceil(self.requests / REQUESTS_PER_BATCH)

    def custom_id(self, n: int) -> str:
        return f"{'fail-' if n in self.failing else ''}j{self.number}-r{n}"


@dataclass
class StepScript:
    overlapping: bool  # two poll functions tick at once
    faults: list[OpenAIFault]


@dataclass
class SoakPlan:
    seed: int
    jobs: list[JobScript]
    waves: list[list[JobScript]]
    steps: list[StepScript]  # one per step; the drain repeats the last pattern from the seed

    def step(self, number: int) -> StepScript:
        return self.steps[number % len(self.steps)]


def plan_soak(seed: int, jobs: int) -> SoakPlan:
    rng = random.Random(seed)
    scripts = [_job(rng, n) for n in range(jobs)]
    size = math.ceil(jobs / WAVES)
    waves = [scripts[i : i + size] for i in range(0, jobs, size)]
    steps = [_step(rng) for _ in range(64)]
    return SoakPlan(seed, scripts, waves, steps)


def _job(rng: random.Random, number: int) -> JobScript:
    requests = rng.randint(1, 3 * REQUESTS_PER_BATCH)
    script = JobScript(
        number=number,
        requests=requests,
        failing=frozenset(n for n in range(requests) if rng.random() < 0.08),
        delivery=rng.choices(("once", "twice", "concurrent"), (6, 2, 2))[0],
    )
    if rng.random() < 0.4:
        script.submit_faults = [_submit_fault(rng) for _ in range(rng.randint(1, 2))]
    if rng.random() < 0.2:
        method, before = rng.choice(SUBMIT_KILLS)
        script.submit_kill = Kill(method, before, rng.randrange(script.parts))
    if rng.random() < 0.15:
        method, before = rng.choice(FINISH_KILLS)
        script.finish_kill = Kill(method, before)
    script.fates = {index: _fate(rng) for index in range(script.parts + 3)}
    if rng.random() < 0.05:
        script.cancel_after_steps = rng.randint(0, 5)
    if rng.random() < 0.03:
        script.reupload_after_steps = rng.randint(0, 8)
    return script


def _submit_fault(rng: random.Random) -> OpenAIFault:
    route = rng.choice(SUBMIT_ROUTES)
    if route == "POST /v1/batches" and rng.random() < 0.5:
        return OpenAIFault(route, rng.choice(LATE_KINDS), lands_late=True, held=rng.random() < 0.2)
    times = 6 if rng.random() < 0.1 else rng.randint(1, 2)  # 6 outlasts every retry
    return OpenAIFault(route, rng.choice(FAULT_KINDS), times)


def _fate(rng: random.Random) -> BatchFate:
    kind = rng.choices(("completed", "expired", "all_failed"), (85, 10, 5))[0]
    return BatchFate(
        kind=kind,
        finished_fraction=round(rng.random(), 2),
        missing_lines=1 if rng.random() < 0.08 else 0,
        token_limit_times=rng.choices((0, 1, 7), (90, 8, 2))[0],  # 7 outlasts the 6 resubmits
    )


def _step(rng: random.Random) -> StepScript:
    faults = [
        OpenAIFault(rng.choice(TICK_ROUTES), rng.choice(FAULT_KINDS), rng.randint(1, 2))
        for _ in range(rng.choices((0, 1, 2, 4), (4, 3, 2, 1))[0])
    ]
    return StepScript(overlapping=rng.random() < 0.25, faults=faults)
