"""The words batchdrop speaks: the dropped object, the job it becomes and the batches it holds."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import PurePosixPath


class JobStatus(StrEnum):
    SUBMITTING = "submitting"  # claimed; files are being validated and uploaded
    ACTIVE = "active"  # every batch is created on OpenAI; the poller tracks them
    REJECTED = "rejected"  # the file was invalid; no batch was created
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    # Set aside after failing to finish N ticks in a row: its batches leave the active index but
    # every record, file and object is kept until `batchdrop retry` puts it back to active.
    NEEDS_ATTENTION = "needs_attention"


# OpenAI batch statuses after which nothing changes any more.
TERMINAL_BATCH_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})


@dataclass(frozen=True, slots=True)
class SourceObject:
    """One version of a dropped S3 object, as the S3 event names it."""

    bucket: str
    key: str
    size: int
    etag: str
    sequencer: str
    version_id: str | None = None

    @property
    def identity(self) -> str:
        """What makes two deliveries the same upload: the version, or ETag + sequencer."""
        version = self.version_id or f"{self.etag}:{self.sequencer}"
        return f"s3://{self.bucket}/{self.key}#{version}"

    @property
    def job_id(self) -> str:
        return hashlib.sha256(self.identity.encode()).hexdigest()[:16]

    @property
    def filename(self) -> str:
        return PurePosixPath(self.key).name or "requests.jsonl"


# Where batchdrop writes; an input prefix may overlap neither, or its outputs would be submitted.
REPORTS_PREFIX = "reports/"
RESULTS_PREFIX = "results/"
OUTPUT_PREFIXES = (RESULTS_PREFIX, REPORTS_PREFIX)


def relative_key(key: str, input_prefix: str) -> str:
    """The key below the input prefix, used to place reports and results next to the input."""
    return key[len(input_prefix) :] if key.startswith(input_prefix) else key


def report_key(key: str, input_prefix: str) -> str:
    return f"{REPORTS_PREFIX}{relative_key(key, input_prefix)}.report.json"


def results_prefix(key: str, input_prefix: str, created_at: int, job_id: str) -> str:
    """Each job's own folder, named for the file, when it arrived and the job: a new version of
    the same file never writes over an earlier job's results."""
    started = datetime.fromtimestamp(created_at, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{results_folder(key, input_prefix)}{started}-{job_id[:8]}/"


def results_folder(key: str, input_prefix: str) -> str:
    """Where every job of one file keeps its results, and the pointer to the newest."""
    stem = relative_key(key, input_prefix).removesuffix(".jsonl")
    return f"{RESULTS_PREFIX}{stem}/"


def round_prefix(job_prefix: str, round_number: int) -> str:
    """A round's own outputs: the first round's at the job's folder, each follow-up round's
    beside them, so no round writes over another's."""
    return job_prefix if round_number == 0 else f"{job_prefix}round-{round_number}/"
