"""The composition root: real adapters built from the settings, once per cold start.

Each adapter is bound to the port it plays (`objects: ObjectStore = S3Objects(...)`), so mypy
checks here that it fits the Protocol the use cases were written against.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aws_lambda_powertools import Metrics

from batchdrop.adapters import aws_clients
from batchdrop.adapters.job_store import JobStore
from batchdrop.adapters.openai_api import OpenAIBatchAPI, RetryPolicy
from batchdrop.adapters.s3_objects import S3Objects
from batchdrop.adapters.secrets import api_key_provider
from batchdrop.adapters.sns import SnsNotifier
from batchdrop.jobs.launch import BatchLauncher
from batchdrop.jobs.outbox import NoticeOutbox
from batchdrop.ports import BatchAPI, JobRepository, ObjectStore, Publisher, Retry
from batchdrop.settings import Settings

if TYPE_CHECKING:
    from batchdrop.jobs.poll import Poller
    from batchdrop.jobs.submit import Submitter

# One policy for every OpenAI call; tests swap it for one that records waits instead of sleeping.
retry_policy: Retry = RetryPolicy()
# What "now" is for records and deadlines; tests tie it to the simulator's clock.
clock: Callable[[], float] = time.time
# (connect, read) seconds: a read waits long for big uploads and slow file downloads.
openai_timeout = (5.0, 120.0)


def job_store(settings: Settings) -> JobRepository:
    table = aws_clients.resource("dynamodb").Table(settings.table_name)
    store: JobRepository = JobStore(table, settings.record_retention_days, clock=clock)
    return store


def object_store() -> ObjectStore:
    objects: ObjectStore = S3Objects(aws_clients.client("s3"))
    return objects


def notice_outbox(settings: Settings, store: JobRepository) -> NoticeOutbox:
    publisher: Publisher = SnsNotifier(aws_clients.client("sns"), settings.topic_arn)
    return NoticeOutbox(store, publisher)


def openai_api(settings: Settings) -> BatchAPI:
    key = api_key_provider(settings.api_key_secret, aws_clients.client("secretsmanager"))
    api: BatchAPI = OpenAIBatchAPI(
        settings.openai_base_url,
        key,
        retry=retry_policy,
        timeout=openai_timeout,
        pool_size=max(settings.poll_concurrency, 10),
    )
    return api


# Each function imports only its own domain: a cold start pays for what it runs.


def poller(settings: Settings, metrics: Metrics) -> Poller:
    from batchdrop.jobs.cleanup import OpenAIFileCleanup
    from batchdrop.jobs.duplicate_batches import DuplicateBatchSweeper
    from batchdrop.jobs.finish import JobFinisher
    from batchdrop.jobs.poll import Poller
    from batchdrop.jobs.resume import SubmissionResumer
    from batchdrop.jobs.submit import SUBMIT_LEASE_SECONDS

    store = job_store(settings)
    api = openai_api(settings)
    objects = object_store()
    launcher = _launcher(settings, objects, api)
    outbox = notice_outbox(settings, store)
    cleanup = OpenAIFileCleanup(
        store=store, api=api, metrics=metrics, enabled=settings.delete_openai_files
    )
    finisher = JobFinisher(
        input_prefix=settings.input_prefix,
        objects=objects,
        api=api,
        launcher=launcher,
        store=store,
        outbox=outbox,
        cleanup=cleanup,
        metrics=metrics,
        resubmit_unfinished=settings.resubmit_unfinished,
        workdir=Path(tempfile.gettempdir()),
    )
    resumer = SubmissionResumer(
        store=store,
        submitter=_submitter(settings, metrics, store, objects, launcher, outbox),
        outbox=outbox,
        metrics=metrics,
        input_prefix=settings.input_prefix,
        max_resumes=settings.submit_resume_limit,
        give_up_after_seconds=settings.submit_give_up_hours * 3600,
        lease_seconds=SUBMIT_LEASE_SECONDS,
    )
    return Poller(
        store=store,
        api=api,
        launcher=launcher,
        duplicates=DuplicateBatchSweeper(api=api, store=store, metrics=metrics),
        outbox=outbox,
        finisher=finisher,
        cleanup=cleanup,
        resumer=resumer,
        metrics=metrics,
        concurrency=settings.poll_concurrency,
        stuck_after_seconds=settings.stuck_after_minutes * 60,
        finish_attempts_before_attention=settings.finish_attempts_before_attention,
    )


def submitter(settings: Settings, metrics: Metrics) -> Submitter:
    store = job_store(settings)
    objects = object_store()
    return _submitter(
        settings,
        metrics,
        store,
        objects,
        _launcher(settings, objects, openai_api(settings)),
        notice_outbox(settings, store),
    )


def _launcher(settings: Settings, objects: ObjectStore, api: BatchAPI) -> BatchLauncher:
    return BatchLauncher(
        objects,
        api,
        retry_policy,
        input_expiry_seconds=settings.input_file_expiry_seconds,
        output_expiry_seconds=settings.output_file_expiry_seconds,
    )


def _submitter(
    settings: Settings,
    metrics: Metrics,
    store: JobRepository,
    objects: ObjectStore,
    launcher: BatchLauncher,
    outbox: NoticeOutbox,
) -> Submitter:
    """The submit function's use case; the poller holds one too, to resume submissions, and
    gives it the launcher its own batches go through."""
    from batchdrop.jobs.submit import Submitter

    return Submitter(
        input_prefix=settings.input_prefix,
        objects=objects,
        store=store,
        launcher=launcher,
        outbox=outbox,
        metrics=metrics,
        limits=settings.limits,
    )
