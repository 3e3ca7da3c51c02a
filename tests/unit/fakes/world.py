"""The one place where the use cases are built on the fakes.

A `World` holds a clock and one of each fake, shared the way the composition root
(`batchdrop.runtime`) shares the real adapters, and builds the use cases as it does. When a
constructor changes, only this module changes with it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger

from batchdrop import SERVICE
from batchdrop.adapters.openai_api import RetryPolicy
from batchdrop.domain.limits import DEFAULT_LIMITS, Limits
from batchdrop.domain.model import SourceObject
from batchdrop.jobs.cleanup import OpenAIFileCleanup
from batchdrop.jobs.duplicate_batches import DuplicateBatchSweeper
from batchdrop.jobs.finish import JobFinisher
from batchdrop.jobs.launch import BatchLauncher
from batchdrop.jobs.outbox import NoticeOutbox
from batchdrop.jobs.poll import Finisher, Poller, TickSummary
from batchdrop.jobs.resume import SubmissionResumer
from batchdrop.jobs.submit import SUBMIT_LEASE_SECONDS, SubmitOutcome, Submitter
from batchdrop.records import BatchRecord
from tests.support import jsonl, request_lines
from tests.unit.fakes.batch_api import FakeBatchAPI
from tests.unit.fakes.clock import FakeClock
from tests.unit.fakes.job_store import FakeJobStore
from tests.unit.fakes.metrics import MetricsRecorder
from tests.unit.fakes.object_store import FakeObjectStore
from tests.unit.fakes.publisher import FakePublisher

BUCKET = "batchdrop-bucket"
INPUT_PREFIX = "requests/"
INVOCATION_SECONDS = 900.0  # a whole Lambda invocation ahead


def plenty_of_time() -> float:
    return INVOCATION_SECONDS


@dataclass(frozen=True)
class Options:
    """The settings the use cases take, at the template's defaults unless a test says."""

    limits: Limits = DEFAULT_LIMITS  # OpenAI's, and no cap on the whole file
    resubmit_unfinished: bool = False
    stuck_after_seconds: int = 120 * 60
    finish_attempts_before_attention: int = 5
    submit_resume_limit: int = 8
    submit_give_up_seconds: int = 24 * 3600
    concurrency: int = 4
    input_expiry_seconds: int | None = None  # None: OpenAI's default, nothing sent
    output_expiry_seconds: int | None = None
    delete_openai_files: bool = True


class World:
    def __init__(self, options: Options | None = None) -> None:
        # The use cases log through child loggers, which need their parent: each function's
        # handler makes it. Quiet: only warnings and errors, which pytest shows on a failure.
        Logger(service=SERVICE, level="WARNING")
        self.options = options or Options()
        self.clock = FakeClock()
        self.store = FakeJobStore(self.clock)
        self.api = FakeBatchAPI(self.clock)
        self.objects = FakeObjectStore()
        self.publisher = FakePublisher()
        self.metrics = MetricsRecorder()
        self.sleeps: list[float] = []
        self.retry = RetryPolicy(sleep=self.sleeps.append)

    # --- the use cases, built as runtime.py builds them ---------------------------------------

    def outbox(self) -> NoticeOutbox:
        return NoticeOutbox(self.store, self.publisher)

    def launcher(self) -> BatchLauncher:
        return BatchLauncher(
            self.objects,
            self.api,
            self.retry,
            input_expiry_seconds=self.options.input_expiry_seconds,
            output_expiry_seconds=self.options.output_expiry_seconds,
        )

    def submitter(self) -> Submitter:
        return Submitter(
            input_prefix=INPUT_PREFIX,
            objects=self.objects,
            store=self.store,
            launcher=self.launcher(),
            outbox=self.outbox(),
            metrics=self.metrics,
            limits=self.options.limits,
        )

    def cleanup(self) -> OpenAIFileCleanup:
        return OpenAIFileCleanup(
            store=self.store,
            api=self.api,
            metrics=self.metrics,
            enabled=self.options.delete_openai_files,
        )

    def finisher(self) -> JobFinisher:
        return JobFinisher(
            input_prefix=INPUT_PREFIX,
            objects=self.objects,
            api=self.api,
            launcher=self.launcher(),
            store=self.store,
            outbox=self.outbox(),
            cleanup=self.cleanup(),
            metrics=self.metrics,
            resubmit_unfinished=self.options.resubmit_unfinished,
            workdir=Path(tempfile.gettempdir()),
        )

    def resumer(self) -> SubmissionResumer:
        return SubmissionResumer(
            store=self.store,
            submitter=self.submitter(),
            outbox=self.outbox(),
            metrics=self.metrics,
            input_prefix=INPUT_PREFIX,
            max_resumes=self.options.submit_resume_limit,
            give_up_after_seconds=self.options.submit_give_up_seconds,
            lease_seconds=SUBMIT_LEASE_SECONDS,
        )

    def poller(self, *, finisher: Finisher | None = None) -> Poller:
        """`finisher` stands in for the JobFinisher when a test scripts what finishing does."""
        return Poller(
            store=self.store,
            api=self.api,
            launcher=self.launcher(),
            duplicates=DuplicateBatchSweeper(
                api=self.api,
                store=self.store,
                metrics=self.metrics,
            ),
            outbox=self.outbox(),
            finisher=finisher or self.finisher(),
            cleanup=self.cleanup(),
            resumer=self.resumer(),
            metrics=self.metrics,
            concurrency=self.options.concurrency,
            stuck_after_seconds=self.options.stuck_after_seconds,
            finish_attempts_before_attention=self.options.finish_attempts_before_attention,
        )

    # --- the user's side ------------------------------------------------------------------------

    def drop(self, key: str, body: bytes, metadata: dict[str, str] | None = None) -> SourceObject:
        """Put a file in the bucket, with its S3 user metadata; the object the S3 event would
        name."""
        version = self.objects.put(BUCKET, key, body, metadata)
        return SourceObject(BUCKET, key, len(body), f'"etag-{key}"', f"seq{version}", version)

    def submit(self, key: str = "requests/chat.jsonl", requests: int = 3) -> SubmitOutcome:
        """Drop a valid file of `requests` requests and submit it."""
        return self.submitter().submit(self.drop(key, jsonl(request_lines(requests))))

    def tick(self, time_left: Callable[[], float] = plenty_of_time) -> TickSummary:
        return self.poller().tick(time_left)

    def parts(self, job_id: str) -> list[BatchRecord]:
        return self.store.batches(job_id)

    def result(self, job_id: str, name: str = "results.jsonl") -> list[dict[str, Any]]:
        """A JSONL file in the job's results folder."""
        prefix = self.store.job(job_id)["results_prefix"]
        return self.objects.read_jsonl(BUCKET, f"{prefix}{name}")
