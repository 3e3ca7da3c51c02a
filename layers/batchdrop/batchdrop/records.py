"""The shapes of what batchdrop keeps and reads: its job and batch records, and OpenAI's batch.

They are TypedDicts, so records stay the plain dicts DynamoDB and OpenAI hand over, while mypy
checks every key the code reads or writes. A record's keys are all optional (`total=False`): it
grows as its job moves on, and the same shape serves as a set of changes to one, in which None
removes a key (so a key the use cases may set to None is typed `| None`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Required, TypedDict, cast


class RequestCounts(TypedDict, total=False):
    total: int
    completed: int
    failed: int


class BatchErrorDetail(TypedDict, total=False):
    code: str | None
    message: str | None
    line: int | None
    param: str | None


class BatchErrors(TypedDict, total=False):
    object: str
    data: list[BatchErrorDetail]


class Usage(TypedDict, total=False):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: dict[str, int]
    output_tokens_details: dict[str, int]


class BatchFields(TypedDict, total=False):
    """What the records keep of an OpenAI batch (`openai_fields`): status, counts, usage,
    timestamps and errors."""

    status: str
    endpoint: str
    model: str
    input_file_id: str
    output_file_id: str
    error_file_id: str
    request_counts: RequestCounts
    usage: Usage
    errors: BatchErrors
    created_at: int
    in_progress_at: int
    finalizing_at: int
    completed_at: int
    failed_at: int
    expired_at: int
    cancelling_at: int
    cancelled_at: int
    expires_at: int


class Batch(BatchFields, total=False):
    """An OpenAI batch as the Batches API returns it."""

    id: Required[str]
    object: str
    completion_window: str
    metadata: dict[str, str] | None


class PlannedPart(TypedDict):
    """One part of a job's plan, recorded before any batch is created."""

    index: int
    first_line: int
    requests: int


class FileCleanup(TypedDict, total=False):
    """Deleting a reported job's files on OpenAI (jobs/cleanup.py): what is left, and how the
    attempts went. `state` is "pending" until nothing is left ("done"), or until the attempts
    run out ("gave_up": OpenAI's own expiry of each file removes the rest)."""

    state: str
    left: list[str]
    deleted: int
    attempts: int
    last_error: str | None


class JobRecord(TypedDict, total=False):
    """One job (sk "JOB"): its source, its plan, its submission lease, its finishing attempts
    and, once finished, its outcome. Notices' states (`notice_<kind>`) live on it too, but only
    the job store reads them, by a key it builds."""

    pk: str
    sk: str
    job_id: str
    created_at: int
    updated_at: int
    status: str
    expires_at: int | None
    # the dropped object
    source_bucket: str
    source_key: str
    source_version: str | None
    source_etag: str
    source_size: int
    source_sequencer: str
    filename: str
    results_prefix: str
    # the submission: its lease, its place in the index of submissions, its resumptions
    lease_until: int
    active_pk: str
    active_sk: str
    resumes: int
    last_error: str
    submission_abandoned_at: int
    not_submitted_parts: list[PlannedPart]
    not_submitted_from_line: int
    # the plan, recorded before any batch
    endpoint: str | None
    model: str | None
    request_count: int
    batch_count: int
    bytes: int
    planned_parts: list[PlannedPart]
    submitted_at: int
    # the file's options, from its S3 metadata: pairs for every batch, and expiry overrides
    metadata: dict[str, str]
    input_expiry_seconds: int | None
    output_expiry_seconds: int | None
    # a refusal
    report_key: str
    problem_count: int
    counts_by_code: dict[str, int]
    problems_preview: list[dict[str, Any]]
    # the user's requests
    cancel_requested: bool
    retried_at: int
    # finishing attempts
    finish_attempted_at: int
    finish_attempt_until: int | None
    finish_failures: int
    last_finish_error: str | None
    needs_attention_at: int
    # the outcome
    total: int
    succeeded: int
    failed: int
    unfinished: int
    unplaced: int
    failed_by_code: dict[str, int]
    unplaced_by_reason: dict[str, int]
    usage: dict[str, int]  # summed over every batch, flat (domain/usage.py)
    models: list[str]  # the models OpenAI says ran the batches
    results_key: str
    unfinished_key: str | None
    not_succeeded_key: str | None
    batch_errors: list[BatchErrorDetail]
    finished_at: int
    # the job's files on OpenAI (inputs, outputs, errors), and their deletion once reported
    openai_files: list[str]
    file_cleanup: FileCleanup


class BatchRecord(TypedDict, total=False):
    """One part of a job (sk "BATCH#0000"): its uploaded file, then the OpenAI batch that runs
    it, and the batches that ran it before (token-limit resubmissions) or beside it
    (duplicates). A follow-up of a round's unfinished requests is one too (`kind`)."""

    pk: str
    sk: str
    job_id: str
    index: int
    kind: str  # "part" or "follow_up"
    round: int  # follow-ups only: 1, 2, ...
    status: str  # "uploaded", "not_submitted", or the batch's OpenAI status
    created_at: int
    updated_at: int
    version: int
    expires_at: int | None
    # the uploaded file, recorded before its batch is created
    file_id: str
    submission_token: str
    first_line: int
    request_count: int
    bytes: int
    start: int  # the raw byte range of the dropped file
    end: int
    # the batch, and its place in the active index (or parked off it)
    batch_id: str
    openai: BatchFields
    active_pk: str
    active_sk: str
    parked_sk: str
    final: bool
    cancel_requested: bool
    # when a poll tick last took over a launch left unfinished (its lease runs from then)
    launch_taken_at: int | None
    # token-limit resubmissions
    retry_at: int | None
    pending_token: str | None
    pending_since: int | None
    resubmits: int
    previous_batch_ids: list[str]
    # duplicates the sweep found
    duplicate_batch_ids: set[str]
    duplicates_cancelled: list[str]


_KEPT_BATCH_FIELDS = tuple(BatchFields.__annotations__)


def openai_fields(batch: Batch) -> BatchFields:
    """What the records keep of an OpenAI batch: status, counts, usage, timestamps and errors."""
    fields: Mapping[str, object] = batch
    kept = {name: fields[name] for name in _KEPT_BATCH_FIELDS if fields.get(name) is not None}
    return cast(BatchFields, kept)


def requests_run(batch: BatchFields) -> int:
    """How many of a batch's requests ran (completed or failed): what it has cost so far."""
    counts = batch.get("request_counts") or {}
    return counts.get("completed", 0) + counts.get("failed", 0)
