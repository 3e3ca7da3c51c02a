"""Bring a finished job home: its raw files, its results in input order, and one email.

The steps run in an order that a crash can interrupt anywhere: results are written to S3 first
(rewriting them is harmless), then the outcome is recorded, then the email goes through the
outbox (sent once), then the job's files on OpenAI are scheduled for deletion, and only then do
the job's batches leave the active index. Until that last step every tick finds the job again
and resumes where it stopped.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from batchdrop import SERVICE
from batchdrop.domain.emails import JobOutcome, outcome_notice
from batchdrop.domain.lines import IterableReader, normalised_lines
from batchdrop.domain.merge_inputs import (
    failed_for_good,
    follow_up_rounds,
    is_part,
    part_ending,
    round_of,
)
from batchdrop.domain.model import (
    TERMINAL_BATCH_STATUSES,
    JobStatus,
    results_folder,
    results_prefix,
    round_prefix,
)
from batchdrop.domain.results import MergeSummary, PartInput, ResultFile, merge_in_input_order
from batchdrop.domain.usage import models_used, summed_usage
from batchdrop.domain.validation import validate_stream
from batchdrop.errors import AlreadyWrittenError
from batchdrop.jobs.cleanup import OpenAIFileCleanup, job_files
from batchdrop.jobs.launch import BatchLauncher, ObjectVersion, batch_metadata
from batchdrop.jobs.media import MediaSaver, SavedMedia
from batchdrop.jobs.outbox import NoticeOutbox
from batchdrop.ports import BatchAPI, JobRepository, Notice, ObjectStore, Readable
from batchdrop.records import BatchErrorDetail, BatchRecord, JobRecord, openai_fields

logger = Logger(service=SERVICE, child=True)

FINISH_RESERVE_SECONDS = 60.0  # a merge needs room; otherwise the next tick finishes the job
MAX_FOLLOW_UP_ROUNDS = 2  # how often unfinished requests are resubmitted automatically
POINTER_ATTEMPTS = 3  # jobs of one file finishing at once race for latest.json; few ever do


class JobFinisher:
    def __init__(
        self,
        *,
        input_prefix: str,
        objects: ObjectStore,
        api: BatchAPI,
        launcher: BatchLauncher,
        store: JobRepository,
        outbox: NoticeOutbox,
        cleanup: OpenAIFileCleanup,
        metrics: Metrics,
        resubmit_unfinished: bool,
        workdir: Path,
    ) -> None:
        self._input_prefix = input_prefix
        self._objects = objects
        self._api = api
        self._launcher = launcher
        self._store = store
        self._outbox = outbox
        self._cleanup = cleanup
        self._metrics = metrics
        self._resubmit_unfinished = resubmit_unfinished
        self._workdir = workdir
        self._media = MediaSaver(objects=objects, api=api)

    def finish(self, job_id: str, time_left: Callable[[], float]) -> str:
        """ "not_ready", "follow_up" or the job's outcome once it is saved and reported."""
        job = self._store.get_job(job_id)
        records = self._store.batches(job_id)
        # A part whose submission was given up never ran: the job is what was submitted.
        parts = sorted(
            (item for item in records if item.get("status") != "not_submitted"),
            key=lambda item: int(item["index"]),
        )
        if job is None or not parts or not all(part.get("final") for part in parts):
            return "not_ready"
        if job["status"] == JobStatus.SUBMITTING:
            # Its submission is still running or waits in the DLQ; finishing needs all parts.
            logger.warning("batches ended before their job was submitted", extra={"job_id": job_id})
            return "not_ready"
        if time_left() < FINISH_RESERVE_SECONDS:
            logger.info(
                "too little time left to finish; the next tick will", extra={"job_id": job_id}
            )
            return "not_ready"
        if job["status"] == JobStatus.ACTIVE:
            copies = self._duplicate_copies(parts)
            if copies is None:
                logger.info("a duplicate batch has not ended yet", extra={"job_id": job_id})
                return "not_ready"
            summary, unfinished_key, media = self._bring_home(job, parts, copies)
            if self._wants_follow_up(job, parts, summary) and unfinished_key:
                self._launch_follow_up(job, parts, unfinished_key)
                return "follow_up"
            files = job_files([*records, *copies])
            self._record_outcome(job, parts, summary, unfinished_key, copies, media, files)
            job = self._store.get_job(job_id) or job
        self._point_to_newest(job)
        if not self._outbox.send_once(job_id, "outcome", self._notice(job)):
            return "not_ready"  # another sender holds the email; stay active until it is out
        # Results home, email out: only now may the job's files on OpenAI go.
        self._cleanup.schedule(job)
        self._store.retire_batches(job_id, [int(part["index"]) for part in parts])
        return str(job["status"])

    # --- results ---------------------------------------------------------------------------

    def _duplicate_copies(self, parts: list[BatchRecord]) -> list[BatchRecord] | None:
        """The batches a part's token made besides the part's own (found by the duplicate
        sweep), each as a copy of its part: whatever one ran was paid for, so its results count
        as the part's. None while one has not ended, cancelled or not."""
        copies: list[BatchRecord] = []
        for part in parts:
            # The part's own batch may be a duplicate it adopted: its results are the part's.
            own = {part.get("batch_id"), *part.get("previous_batch_ids", [])}
            for batch_id in sorted(set(part.get("duplicate_batch_ids", ())) - own):
                batch = self._api.retrieve_batch(batch_id)
                if batch["status"] not in TERMINAL_BATCH_STATUSES:
                    return None
                fields: BatchRecord = {"batch_id": batch_id, "status": batch["status"]}
                copies.append({**part, **fields, "openai": openai_fields(batch)})
        return copies

    def _bring_home(
        self, job: JobRecord, parts: list[BatchRecord], copies: list[BatchRecord]
    ) -> tuple[MergeSummary, str | None, SavedMedia | None]:
        """Save the raw files, this round's merged results and their images or videos, each
        written only where nothing is yet: a slow attempt from an earlier round can never write
        over a later one's. Every round saves its media: a video may expire before the next."""
        bucket = job["source_bucket"]
        job_prefix = self._job_prefix(job)
        prefix = round_prefix(job_prefix, _round(parts))
        inputs = [
            PartInput(self._input_stream(job, part), *part_ending(part, copies))
            for part in parts
            if is_part(part)
        ]
        results = self._result_files(bucket, job_prefix, parts, copies)
        scratch = Path(tempfile.mkdtemp(prefix="finish-", dir=self._workdir))
        try:
            unfinished_path = scratch / "unfinished.jsonl"
            not_succeeded_path = scratch / "not_succeeded.jsonl"
            with (
                suppress(AlreadyWrittenError),  # an earlier attempt of this round wrote it whole
                self._objects.writer(bucket, f"{prefix}results.jsonl", create_only=True) as merged,
                unfinished_path.open("wb") as unfinished,
                not_succeeded_path.open("wb") as not_succeeded,
            ):
                summary = merge_in_input_order(
                    inputs, results, merged, unfinished, workdir=scratch,
                    not_succeeded=not_succeeded,
                    follow_up_rounds=follow_up_rounds([*parts, *copies]),
                )  # fmt: skip
            for name, path in (
                ("unfinished.jsonl", unfinished_path),
                ("not_succeeded.jsonl", not_succeeded_path),
            ):
                with suppress(AlreadyWrittenError):  # written whole by an earlier attempt
                    self._objects.upload_file(path, bucket, f"{prefix}{name}", create_only=True)
            unfinished_key = f"{prefix}unfinished.jsonl" if summary.unfinished else None
            media = self._media.save(str(job.get("endpoint", "")), bucket, prefix, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        logger.info(
            "results saved",
            extra={"job_id": job["job_id"], "results": f"s3://{bucket}/{prefix}results.jsonl"},
        )
        return summary, unfinished_key, media

    def _job_prefix(self, job: JobRecord) -> str:
        """The job's own results folder, as recorded when it was claimed."""
        recorded = job.get("results_prefix")
        if recorded:
            return str(recorded)
        return results_prefix(
            job["source_key"], self._input_prefix, int(job["created_at"]), job["job_id"]
        )

    def _point_to_newest(self, job: JobRecord) -> None:
        """Keep results/<name>/latest.json on the newest job of the file, whatever order jobs
        finish in: each write is conditional on what was read, and a lost race reads again."""
        bucket = job["source_bucket"]
        key = f"{results_folder(job['source_key'], self._input_prefix)}latest.json"
        pointer = {
            "job_id": job["job_id"],
            "created_at": int(job["created_at"]),
            "results": f"s3://{bucket}/{job['results_key']}",
        }
        for _ in range(POINTER_ATTEMPTS):
            current = self._objects.read_json(bucket, key)
            if current is not None and (
                int(current[0].get("created_at", 0)),
                str(current[0].get("job_id")),
            ) >= (pointer["created_at"], pointer["job_id"]):
                return  # it already names this job, or a newer one
            if self._objects.replace_json(bucket, key, pointer, current[1] if current else None):
                return
        logger.warning("gave up moving the latest pointer", extra={"job_id": job["job_id"]})

    def _result_files(
        self,
        bucket: str,
        prefix: str,
        parts: list[BatchRecord],
        copies: list[BatchRecord],
    ) -> list[ResultFile]:
        """Each batch's saved output and error files, with the part or round they belong to;
        a duplicate's files belong to its part."""
        positions = {int(part["index"]): n for n, part in enumerate(p for p in parts if is_part(p))}
        files = []
        sources = [(part, False) for part in parts] + [(copy, True) for copy in copies]
        for part, duplicate in sources:
            for kind in ("output", "error"):
                key = self._save_raw(bucket, prefix, part, kind)
                if key is not None:
                    position = positions.get(int(part["index"])) if is_part(part) else None
                    stream = self._s3_stream(bucket, key)
                    files.append(ResultFile(stream, position, round_of(part), duplicate))
        return files

    def _save_raw(self, bucket: str, prefix: str, part: BatchRecord, kind: str) -> str | None:
        """Stream one of OpenAI's result files into S3 as it is, in constant memory."""
        batch = part.get("openai", {})
        file_id = batch.get("output_file_id") if kind == "output" else batch.get("error_file_id")
        if not file_id:
            return None  # e.g. "completed" with every request failed has no output file
        key = f"{prefix}raw/{part['batch_id']}.{kind}.jsonl"
        if self._objects.size(bucket, key) is not None:
            return key  # an object appears only whole: an earlier finish saved it
        with (
            suppress(AlreadyWrittenError),  # an overlapping finish saved it meanwhile
            self._api.file_stream(file_id) as content,
        ):
            self._objects.upload_stream(content, bucket, key, create_only=True)
        return key

    def _input_stream(self, job: JobRecord, part: BatchRecord) -> Callable[[], Readable]:
        """The part's requests exactly as they were sent to OpenAI."""
        start, end = int(part["start"]), int(part["end"])

        def open_input() -> Readable:
            body = self._objects.open(
                job["source_bucket"], job["source_key"], job.get("source_version"),
                start=start, end=end,
            )  # fmt: skip
            return IterableReader(normalised_lines(body, range_start=start))

        return open_input

    def _s3_stream(self, bucket: str, key: str) -> Callable[[], Readable]:
        return lambda: self._objects.open(bucket, key)

    # --- follow-ups of unfinished requests ---------------------------------------------------

    def _wants_follow_up(
        self, job: JobRecord, parts: list[BatchRecord], summary: MergeSummary
    ) -> bool:
        rounds = _round(parts)
        return (
            self._resubmit_unfinished
            and summary.unfinished > 0
            and not job.get("cancel_requested")
            # A part that failed for good is not sent again; one that may clear is followed up.
            and not any(failed_for_good(part) for part in parts)
            and rounds < MAX_FOLLOW_UP_ROUNDS
        )

    def _launch_follow_up(
        self, job: JobRecord, parts: list[BatchRecord], unfinished_key: str
    ) -> None:
        """Submit the unfinished requests as new batches of the same job."""
        bucket, job_id = job["source_bucket"], job["job_id"]
        source = ObjectVersion(bucket, unfinished_key)
        plan = validate_stream(self._objects.open(bucket, unfinished_key))
        round_number = _round(parts) + 1
        next_index = max(int(part["index"]) for part in parts) + 1
        stem = str(job["filename"]).removesuffix(".jsonl")
        for offset, part in enumerate(plan.parts):
            index = next_index + offset
            file_id = self._launcher.upload(
                source,
                part,
                f"{stem}.unfinished{round_number}.{offset + 1}.jsonl",
                verbatim=plan.verbatim,
                expiry_seconds=job.get("input_expiry_seconds"),
            )
            token = uuid.uuid4().hex
            self._store.add_follow_up(
                job_id,
                index,
                {
                    "kind": "follow_up",
                    "round": round_number,
                    "file_id": file_id,
                    "submission_token": token,
                    "request_count": part.line_count,
                    "status": "uploaded",
                },
            )
            batch = self._launcher.create_or_adopt(
                file_id=file_id,
                endpoint=str(job["endpoint"]),
                metadata=batch_metadata(job_id, index, token, job.get("metadata")),
                recorded_at=self._store.now(),
                look_first=False,
                output_expiry_seconds=job.get("output_expiry_seconds"),
            )
            self._store.record_batch(job_id, index, batch)
            logger.info(
                "resubmitted unfinished requests",
                extra={"job_id": job_id, "batch_id": batch["id"], "requests": part.line_count},
            )

    # --- outcome -----------------------------------------------------------------------------

    def _record_outcome(
        self,
        job: JobRecord,
        parts: list[BatchRecord],
        summary: MergeSummary,
        unfinished_key: str | None,
        copies: list[BatchRecord],
        media: SavedMedia | None,
        files: list[str],
    ) -> None:
        outcome = _outcome(parts, summary)
        usage = _usage([*parts, *copies])  # a duplicate's tokens were paid for too
        prefix = round_prefix(self._job_prefix(job), _round(parts))
        record: JobRecord = {
            "status": outcome,
            "total": summary.total,
            "succeeded": summary.succeeded,
            "failed": summary.failed,
            "unfinished": summary.unfinished,
            "unplaced": summary.unplaced,
            "failed_by_code": dict(summary.failed_by_code),
            "unplaced_by_reason": dict(summary.unplaced_by_reason),
            "usage": usage,
            "models": models_used(part.get("openai", {}).get("model") for part in parts),
            "results_key": f"{prefix}results.jsonl",
            "unfinished_key": unfinished_key,
            "not_succeeded_key": (
                f"{prefix}not_succeeded.jsonl" if summary.total > summary.succeeded else None
            ),
            "batch_errors": _batch_errors(parts),
            "finished_at": self._store.now(),
            "openai_files": files,
        }
        with suppress(AlreadyWrittenError):  # an earlier attempt of this round wrote it
            self._objects.put_json(job["source_bucket"], f"{prefix}summary.json", {
                "job_id": job["job_id"],
                "source": f"s3://{job['source_bucket']}/{job['source_key']}",
                "metadata": job.get("metadata", {}), **record,
                "unplaced_results": summary.unplaced_results,  # bounded; counted in full above
                **({"media": media.to_dict()} if media is not None else {}),
            }, create_only=True)  # fmt: skip
        self._store.update_job(
            job["job_id"], record, expected_status=JobStatus.ACTIVE, finished=True
        )
        self._metrics.add_metric("RequestsSucceeded", MetricUnit.Count, summary.succeeded)
        self._metrics.add_metric("RequestsFailed", MetricUnit.Count, summary.failed)
        self._metrics.add_metric("TokensUsed", MetricUnit.Count, usage["total_tokens"])
        logger.info("job finished", extra={"job_id": job["job_id"], "outcome": outcome})

    def _notice(self, job: JobRecord) -> Notice:
        bucket = job["source_bucket"]
        unfinished_key = job.get("unfinished_key")
        not_succeeded_key = job.get("not_succeeded_key")
        return outcome_notice(
            JobOutcome(
                filename=str(job["filename"]),
                source_uri=f"s3://{bucket}/{job['source_key']}",
                input_prefix=self._input_prefix,
                outcome=str(job["status"]),
                endpoint=str(job.get("endpoint", "")),
                total=int(job["total"]),
                succeeded=int(job["succeeded"]),
                failed=int(job["failed"]),
                unfinished=int(job["unfinished"]),
                failed_by_code=job.get("failed_by_code", {}),
                started_at=int(job["created_at"]),
                finished_at=int(job["finished_at"]),
                usage=job.get("usage", {}),
                models=job.get("models", []),
                metadata=job.get("metadata", {}),
                results_uri=f"s3://{bucket}/{job['results_key']}",
                results_link=self._objects.presigned_url(bucket, job["results_key"]),
                unfinished_uri=f"s3://{bucket}/{unfinished_key}" if unfinished_key else None,
                batch_errors=job.get("batch_errors", []),
                batch_count=int(job.get("batch_count", 1)),
                not_submitted_from_line=(
                    int(job["not_submitted_from_line"]) if job.get("not_submitted_parts") else None
                ),
                unplaced=int(job.get("unplaced", 0)),
                unplaced_by_reason={
                    k: int(v) for k, v in job.get("unplaced_by_reason", {}).items()
                },
                not_succeeded_uri=f"s3://{bucket}/{not_succeeded_key}"
                if not_succeeded_key
                else None,
            )
        )


def _round(parts: list[BatchRecord]) -> int:
    """The job's current round: 0, or the latest follow-up of its unfinished requests."""
    return max(round_of(part) for part in parts)


def _outcome(parts: list[BatchRecord], summary: MergeSummary) -> str:
    statuses = {part["status"] for part in parts}
    latest = max(round_of(part) for part in parts)
    # A part that failed for a reason that clears, and was followed up since, is settled by
    # its follow-up: the job failed only if a failed part still speaks for its requests.
    if any(
        part["status"] == "failed" and (failed_for_good(part) or round_of(part) == latest)
        for part in parts
    ):
        return JobStatus.FAILED
    if summary.unfinished:
        return JobStatus.CANCELLED if "cancelled" in statuses else JobStatus.EXPIRED
    return JobStatus.COMPLETED


def _usage(parts: list[BatchRecord]) -> dict[str, int]:
    return summed_usage(part.get("openai", {}).get("usage") for part in parts)


def _batch_errors(parts: list[BatchRecord]) -> list[BatchErrorDetail]:
    errors: list[BatchErrorDetail] = []
    for part in parts:
        if part["status"] == "failed":
            data = (part.get("openai", {}).get("errors") or {}).get("data") or []
            errors.extend(
                {"code": error.get("code"), "line": error.get("line"),
                 "message": error.get("message")}
                for error in data
            )  # fmt: skip
    return errors[:100]
