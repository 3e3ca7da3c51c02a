"""The promises the soak checks at the end, from what the user and OpenAI can see: the inbox,
S3, the job records and every batch the simulator was asked to run.

Each check returns its violations, each naming the job (and batch) involved, so a failing run
says what broke and where; an empty list means the promise held for every job.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from batchdrop.jobs.launch import part_reference
from local.simulator import BatchSimulator
from tests.soak.harness import ENDED, Dropped, Observations, latest_version

# What results.jsonl may say of a request: ran and succeeded, ran and failed, never ran (may be
# sent again), or could not be placed (`unplaced`, issue 11 item 4: never sent again).
ACCOUNTED = frozenset({"succeeded", "failed", "unfinished", "unplaced"})
NOT_RUN_CODES = frozenset({"batch_expired", "batch_cancelled"})  # OpenAI: the request never ran
TERMINAL_FIELDS = ("completed_at", "failed_at", "expired_at", "cancelled_at")
# Emails about a job that are not its outcome: a stuck warning, a partial give-up, a job set
# aside for the operator.
NOT_OUTCOME = (" has been ", "could not be fully submitted", " needs attention, ")

Check = Callable[["Evidence"], list[str]]


@dataclass
class SimBatch:
    """One batch OpenAI was asked to run, as the simulator ended it."""

    id: str
    job_id: str
    token: str
    status: str
    created_at: int
    ended_at: int
    inputs: list[str]  # custom_ids of its input file
    ran: set[str]  # custom_ids with a result line saying the request ran
    in_files: set[str]  # custom_ids in either result file
    did_work: bool


@dataclass
class Evidence:
    dropped: dict[str, Dropped]
    jobs: dict[str, dict[str, Any]]
    emails: list[dict[str, Any]]
    batches: list[SimBatch]
    seen: Observations
    live_files: set[str]  # the files OpenAI holds at the end
    s3: Any
    bucket: str

    def results(self, job: Mapping[str, Any]) -> list[dict[str, Any]]:
        body = self.s3.get_object(Bucket=self.bucket, Key=job["results_key"])["Body"].read()
        return [json.loads(line) for line in body.splitlines()]


def sim_batches(sim: BatchSimulator) -> list[SimBatch]:
    """Every batch the simulator holds, with its input and result files read back."""
    found = []
    for batch_id in sim.batches:
        batch = sim.batches[batch_id]
        metadata = batch.get("metadata") or {}
        results = [_lines(sim, batch.get(f"{kind}_file_id")) for kind in ("output", "error")]
        lines = [line for file in results for line in file]
        counts = batch["request_counts"]
        found.append(
            SimBatch(
                id=batch_id,
                job_id=(part_reference(metadata) or ("", 0))[0],
                token=metadata.get("submission_token", ""),
                status=batch["status"],
                created_at=int(batch["created_at"]),
                ended_at=max(int(batch.get(f) or 0) for f in TERMINAL_FIELDS),
                inputs=[line["custom_id"] for line in _lines(sim, batch["input_file_id"])],
                ran={line["custom_id"] for line in lines if _ran(line)},
                in_files={line["custom_id"] for line in lines},
                did_work=batch["status"] in {"completed", "expired"}
                or counts["completed"] + counts["failed"] > 0,
            )
        )
    return found


def _lines(sim: BatchSimulator, file_id: str | None) -> list[dict[str, Any]]:
    if not file_id:
        return []
    return [json.loads(line) for line in sim.file_bytes(file_id).splitlines() if line.strip()]


def _ran(line: dict[str, Any]) -> bool:
    code = ((line.get("error") or {}).get("code")) if isinstance(line.get("error"), dict) else None
    return code not in NOT_RUN_CODES


# --- the promises ----------------------------------------------------------------------------


def one_outcome_email_per_file(evidence: Evidence) -> list[str]:
    """Every dropped file (each uploaded version) ends, and its uploader gets exactly one
    outcome email: none is lost to a crash, none is sent twice by overlapping ticks."""
    problems = []
    versions: dict[str, list[str]] = defaultdict(list)
    for job_id, job in evidence.dropped.items():
        versions[job.key].append(job_id)
        record = evidence.jobs.get(job_id)
        status = record.get("status") if record else "no record"
        if status not in ENDED:
            problems.append(f"job {job_id} ({job.key}) never ended: {status}")
    for key, job_ids in sorted(versions.items()):
        name = key.rsplit("/", 1)[-1]
        subjects = [e["subject"] for e in evidence.emails if f" {name} " in f"{e['subject']} "]
        outcomes = [s for s in subjects if not any(mark in s for mark in NOT_OUTCOME)]
        if len(outcomes) != len(job_ids):
            problems.append(
                f"{key} (jobs {', '.join(job_ids)}): {len(outcomes)} outcome emails for "
                f"{len(job_ids)} uploads: {outcomes}"
            )
    return problems


def one_live_batch_per_submission(evidence: Evidence) -> list[str]:
    """No two batches that carry one submission token both ran: a duplicate create is
    cancelled before it does any work (and so before it costs anything)."""
    by_token: dict[str, list[SimBatch]] = defaultdict(list)
    for batch in evidence.batches:
        if batch.did_work:
            by_token[batch.token].append(batch)
    return [
        f"job {batches[0].job_id}: token {token} ran in batches "
        f"{', '.join(b.id + ' (' + b.status + ')' for b in batches)}"
        for token, batches in sorted(by_token.items())
        if len(batches) > 1
    ]


def nothing_that_ran_is_sent_again(evidence: Evidence) -> list[str]:
    """No request that has a result line saying it ran is in any batch created once that
    result existed: nothing that ran is paid for twice."""
    return _sent_again(evidence, lambda batch: batch.ran, "had a result")


def nothing_missing_from_a_completed_batch_is_sent_again(evidence: Evidence) -> list[str]:
    """A request absent from both files of a *completed* batch may well have run (issue 11
    item 4): only OpenAI's word, or absence from an expired or cancelled batch, means not run."""

    def lost(batch: SimBatch) -> set[str]:
        return set(batch.inputs) - batch.in_files if batch.status == "completed" else set()

    return _sent_again(evidence, lost, "was missing from a completed batch")


def _sent_again(evidence: Evidence, settled: Callable[[SimBatch], set[str]], why: str) -> list[str]:
    by_job: dict[str, list[SimBatch]] = defaultdict(list)
    for batch in evidence.batches:
        by_job[batch.job_id].append(batch)
    problems = []
    for job_id, batches in sorted(by_job.items()):
        for earlier in batches:
            ids = settled(earlier)
            for later in batches:
                again = ids & set(later.inputs)
                if later is not earlier and later.created_at >= earlier.ended_at and again:
                    problems.append(
                        f"job {job_id}: {sorted(again)} {why} in {earlier.id} and were sent "
                        f"again in {later.id}"
                    )
    return problems


def every_request_accounted_for(evidence: Evidence) -> list[str]:
    """results.jsonl holds each request of the input exactly once, with a status that says
    what became of it; a request OpenAI rejects is never reported as a success."""
    problems = []
    for job_id, job in sorted(evidence.dropped.items()):
        record = evidence.jobs.get(job_id) or {}
        if "results_key" not in record:
            problems.append(f"job {job_id}: no results ({record.get('status', 'no record')})")
            continue
        statuses: dict[str, list[str]] = defaultdict(list)
        for line in evidence.results(record):
            statuses[line["custom_id"]].append(line["status"])
        for cid in job.custom_ids:
            found = statuses.pop(cid, [])
            if len(found) != 1 or found[0] not in ACCOUNTED:
                problems.append(f"job {job_id}: request {cid} is in its results as {found}")
            elif cid.startswith("fail-") and found[0] == "succeeded":
                problems.append(f"job {job_id}: rejected request {cid} reported as succeeded")
        if statuses:
            problems.append(f"job {job_id}: results name requests it never had: {sorted(statuses)}")
    return problems


def results_never_overwritten(evidence: Evidence) -> list[str]:
    """Once a job has ended, no later write touches its results: not an overlapping tick, not
    a stale round, not the next version of the same file. The bucket is versioned, so any
    write, even of the same bytes, would have made a new current version."""
    problems = []
    for (job_id, key), when_ended in sorted(evidence.seen.results_when_ended.items()):
        now = latest_version(evidence.s3, evidence.bucket, key)
        if now != when_ended:
            problems.append(f"job {job_id}: {key} written again after it ended ({now})")
    return problems


def no_reported_job_leaves_files_on_openai(evidence: Evidence) -> list[str]:
    """Once a job is reported, every file it recorded on OpenAI (inputs, outputs, errors) is
    deleted, whatever deletes failed on the way."""
    problems = []
    for job_id, job in sorted(evidence.jobs.items()):
        if job.get("status") not in ENDED or not job.get("openai_files"):
            continue
        left = sorted(set(job["openai_files"]) & evidence.live_files)
        state = (job.get("file_cleanup") or {}).get("state")
        if left or state != "done":
            problems.append(f"job {job_id}: clean-up {state}, files left on OpenAI: {left}")
    return problems


PROMISES: dict[str, Check] = {
    check.__name__: check
    for check in (
        one_outcome_email_per_file,
        one_live_batch_per_submission,
        nothing_that_ran_is_sent_again,
        nothing_missing_from_a_completed_batch_is_sent_again,
        every_request_accounted_for,
        results_never_overwritten,
        no_reported_job_leaves_files_on_openai,
    )
}


def check_all(evidence: Evidence, names: Iterable[str] = PROMISES) -> dict[str, list[str]]:
    return {name: PROMISES[name](evidence) for name in names}
