"""The ports: what the use cases (`jobs/`) need of the world, each as a narrow Protocol.

`jobs/` names only these; the adapters fit them without naming them, and `runtime.py` has mypy
check that fit where it wires one to the other. What crosses a port travels with it: the byte
streams, the notice, the retry policy, and the records and batches (`records.py`). A port's
failures are in `errors.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Required, TypedDict

from batchdrop.records import Batch, BatchRecord, FileCleanup, JobRecord

# An upload's body: called again for every attempt, so a retry re-reads the same bytes.
BodyFactory = Callable[[], Iterable[bytes]]


class Readable(Protocol):
    """Anything with a bytes `read(n)`: an open binary file, BytesIO, a botocore StreamingBody."""

    def read(self, size: int, /) -> bytes: ...


class Writable(Protocol):
    """A binary sink: an open binary file, BytesIO, an object store's writer."""

    def write(self, data: bytes, /) -> object: ...


@dataclass(frozen=True)
class Notice:
    """A person-readable message to the job's owner."""

    subject: str
    body: str
    # Message attributes let a subscription filter, e.g. only {"status": ["failed"]}.
    attributes: dict[str, str] = field(default_factory=dict)


class Retry(Protocol):
    """How often a call is tried, and how long to wait between tries."""

    @property
    def attempts(self) -> int: ...

    def delay(self, attempt: int, retry_after: float | None) -> float: ...

    def sleep(self, seconds: float, /) -> None: ...


class ObjectStore(Protocol):
    """S3: the dropped files, and everything batchdrop writes back beside them."""

    def open(
        self,
        bucket: str,
        key: str,
        version_id: str | None = None,
        *,
        start: int = 0,
        end: int | None = None,
    ) -> Readable: ...

    def size(self, bucket: str, key: str) -> int | None: ...

    def user_metadata(self, bucket: str, key: str, version_id: str | None = None) -> dict[str, str]:
        """The object's user-defined metadata (x-amz-meta-*), keys lower-cased."""
        ...

    def put_json(
        self, bucket: str, key: str, document: Any, *, create_only: bool = False
    ) -> None: ...

    def read_json(self, bucket: str, key: str) -> tuple[Any, str] | None: ...

    def replace_json(self, bucket: str, key: str, document: Any, etag: str | None) -> bool: ...

    def upload_file(
        self, path: Path, bucket: str, key: str, *, create_only: bool = False
    ) -> None: ...

    def upload_stream(
        self, source: Readable, bucket: str, key: str, *, create_only: bool = False
    ) -> None: ...

    def writer(
        self, bucket: str, key: str, *, create_only: bool = False
    ) -> AbstractContextManager[Writable]: ...

    def presigned_url(self, bucket: str, key: str) -> str: ...


class FileObject(TypedDict, total=False):
    """An OpenAI file, as the Files API returns it."""

    id: Required[str]
    bytes: int
    filename: str
    purpose: str
    status: str


class Upload(TypedDict, total=False):
    """An OpenAI upload (files over 64 MB, sent in parts), or one of its parts."""

    id: Required[str]
    status: str
    file: FileObject


class BatchAPI(Protocol):
    """OpenAI's Files, Uploads and Batches APIs, as far as batch jobs use them."""

    @property
    def read_timeout(self) -> float: ...

    def upload_file(
        self, filename: str, size: int, body: BodyFactory, *, expires_after: int | None = None
    ) -> FileObject: ...

    def file_stream(self, file_id: str) -> AbstractContextManager[Readable]: ...

    def video_content(self, video_id: str) -> AbstractContextManager[Readable]: ...

    def create_upload(
        self, filename: str, size: int, *, expires_after: int | None = None
    ) -> Upload: ...

    def add_upload_part(self, upload_id: str, size: int, body: BodyFactory) -> Upload: ...

    def complete_upload(self, upload_id: str, part_ids: list[str]) -> Upload: ...

    def cancel_upload(self, upload_id: str) -> Upload: ...

    def create_batch(
        self,
        input_file_id: str,
        endpoint: str,
        metadata: Mapping[str, str],
        *,
        output_expires_after: int | None = None,
    ) -> Batch: ...

    def retrieve_batch(self, batch_id: str) -> Batch: ...

    def cancel_batch(self, batch_id: str) -> Batch: ...

    def list_batches(self) -> Iterator[Batch]: ...

    def delete_file(self, file_id: str) -> object: ...


class JobRepository(Protocol):
    """The job and batch records. Every write that changes state is conditional: one that
    loses to another invocation raises StaleRecordError (or says so in its result)."""

    def now(self) -> int: ...

    # jobs
    def create_job(self, job_id: str, fields: JobRecord) -> bool: ...

    def get_job(self, job_id: str) -> JobRecord | None: ...

    def update_job(
        self,
        job_id: str,
        changes: JobRecord,
        *,
        expected_status: str | set[str] | None = None,
        finished: bool = False,
    ) -> None: ...

    # the submission lease
    def take_submit_lease(
        self, job_id: str, lease_seconds: int, *, resume: bool
    ) -> JobRecord | None: ...

    def release_submit_lease(
        self, job_id: str, held_until: int, retry_at: int, error: str
    ) -> None: ...

    def submitting_jobs(self) -> Iterator[JobRecord]: ...

    # finishing attempts
    def update_finish_attempt(
        self, job_id: str, changes: JobRecord, *, open_until: int | None
    ) -> None: ...

    def park_batches(self, job_id: str) -> int: ...

    # notices
    def claim_notice(self, job_id: str, kind: str, lease_seconds: int) -> int | None: ...

    def release_notice(self, job_id: str, kind: str, claimed_at: int) -> None: ...

    def notice_state(self, job_id: str, kind: str) -> str | None: ...

    def mark_notice_sent(self, job_id: str, kind: str, message_id: str) -> None: ...

    def mark_notice_refused(self, job_id: str, kind: str, claimed_at: int, reason: str) -> None: ...

    # batches
    def batches(self, job_id: str) -> list[BatchRecord]: ...

    def active_batches(self) -> Iterator[BatchRecord]: ...

    def record_file(self, job_id: str, index: int, fields: BatchRecord) -> None: ...

    def record_batch(self, job_id: str, index: int, batch: Batch) -> None:
        """The part's first batch wins: recording it again changes nothing, and recording
        another raises StaleRecordError."""
        ...

    def update_batch(
        self,
        job_id: str,
        index: int,
        changes: BatchRecord,
        *,
        expected_version: int | None = None,
    ) -> None: ...

    def add_follow_up(self, job_id: str, index: int, fields: BatchRecord) -> None: ...

    def retire_batches(self, job_id: str, indices: list[int]) -> None: ...

    def note_duplicates(
        self, job_id: str, index: int, found: list[str], cancelled: list[str]
    ) -> None: ...

    # deleting a reported job's files on OpenAI
    def schedule_file_cleanup(self, job_id: str, file_ids: list[str]) -> None: ...

    def file_cleanups(self) -> Iterator[JobRecord]: ...

    def record_file_cleanup(self, job_id: str, attempts: int, cleanup: FileCleanup) -> bool: ...


class Publisher(Protocol):
    """Where notices go out to the job's owner (SNS, which emails them)."""

    def publish(self, notice: Notice) -> str: ...
