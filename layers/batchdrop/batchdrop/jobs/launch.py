"""Putting a planned part on OpenAI: stream its bytes up, then create its batch exactly once.

Used for a dropped file's parts, for follow-ups of unfinished requests and for resubmissions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial

from aws_lambda_powertools import Logger

from batchdrop import SERVICE
from batchdrop.domain.approval import ApprovedBytes, UploadAbandoned
from batchdrop.domain.lines import normalised_lines
from batchdrop.domain.split_plan import Part
from batchdrop.errors import OpenAIError
from batchdrop.ports import BatchAPI, BodyFactory, ObjectStore, Retry
from batchdrop.records import Batch, BatchRecord, openai_fields

logger = Logger(service=SERVICE, child=True)

WRITE_BUFFER_BYTES = 1024 * 1024  # lines are sent in ~1 MiB writes, not one syscall each
ADOPTION_WINDOW_SECONDS = 600  # how long before its record a matching batch may have been made
# After a create whose outcome is unknown, the looks for its token wait these multiples of the
# read timeout. The first lets a create the client gave up on land: OpenAI has had it for one
# timeout already and now gets as long again. The second lets a listing that lags behind a
# create catch up. Only after both miss is the batch created again.
SETTLE_FRACTIONS = (1.0, 0.5)
# Creates with an unknown outcome in one call, at most. Each costs up to a connect and read
# timeout plus the settle (about 2.5 x 120 s), so three fit in one 15-minute invocation; after the
# third, the caller's own recovery (a Lambda retry, the poll's launch lease) looks later.
AMBIGUOUS_CREATES_MAX = 3


@dataclass(frozen=True)
class ObjectVersion:
    bucket: str
    key: str
    version_id: str | None = None


class BatchLauncher:
    def __init__(
        self,
        objects: ObjectStore,
        api: BatchAPI,
        retry: Retry,
        *,
        input_expiry_seconds: int | None = None,
        output_expiry_seconds: int | None = None,
    ) -> None:
        self._objects = objects
        self._api = api
        self._retry = retry
        # The deployment's expiry of uploaded input files and of batches' output and error
        # files on OpenAI (None: OpenAI's default); a job's own options override them.
        self._input_expiry = input_expiry_seconds
        self._output_expiry = output_expiry_seconds
        self._settle = settle_delays(api.read_timeout)

    def upload(
        self,
        source: ObjectVersion,
        part: Part,
        filename: str,
        *,
        verbatim: bool = False,
        approved: ApprovedBytes | None = None,
        expiry_seconds: int | None = None,
    ) -> str:
        """Stream one part to OpenAI and return the file id; a part over the upload limit was
        planned as several chunks and goes through the Uploads API, one chunk per part.
        `verbatim` when validation found nothing to rewrite: the raw bytes go as they are.
        `approved` (verbatim only) while validation is still reading: each chunk waits for it.
        `expiry_seconds`: the file's own expiry on OpenAI, instead of the deployment's."""
        if approved is not None and not verbatim:
            raise ValueError("only raw bytes can be sent while validation approves them")
        reader = partial(self._range_reader, source, verbatim=verbatim, approved=approved)
        expires_after = expiry_seconds or self._input_expiry
        if len(part.chunks) == 1:
            uploaded = self._api.upload_file(
                filename, part.size, reader(part.start, part.end), expires_after=expires_after
            )
            return str(uploaded["id"])
        for attempt in range(self._retry.attempts):
            if approved is not None and approved.abandoned:
                raise UploadAbandoned("abandoned before a fresh upload was started")
            try:
                return self._upload_in_parts(part, filename, reader, expires_after)
            except OpenAIError as error:
                # Whether the upload completed is unknown, and OpenAI offers no way to look an
                # upload up: start a fresh one from the same ranges (an unused file costs no
                # batch). Every other failure was already retried request by request.
                if not error.ambiguous or attempt == self._retry.attempts - 1:
                    raise
                logger.warning("an upload may not have completed; starting it again")
                self._retry.sleep(self._retry.delay(attempt, None))
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    def _upload_in_parts(
        self,
        part: Part,
        filename: str,
        reader: Callable[[int, int], BodyFactory],
        expires_after: int | None,
    ) -> str:
        upload = self._api.create_upload(filename, part.size, expires_after=expires_after)
        try:
            part_ids = [
                self._api.add_upload_part(upload["id"], chunk.size, reader(chunk.start, chunk.end))[
                    "id"
                ]
                for chunk in part.chunks
            ]
            completed = self._api.complete_upload(upload["id"], part_ids)
        except Exception:
            self._cancel_quietly(upload["id"])
            raise
        return str(completed["file"]["id"])

    def create_or_adopt(
        self,
        *,
        file_id: str,
        endpoint: str,
        metadata: Mapping[str, str],
        recorded_at: int,
        look_first: bool,
        output_expiry_seconds: int | None = None,
    ) -> Batch:
        """Create the batch, or adopt the one an interrupted attempt created (found by the
        `submission_token` in its metadata). `look_first` when an earlier attempt may have
        got as far as creating it. A create that failed in a way that may have taken effect
        is looked for only after it has had time to land (see SETTLE_FRACTIONS).
        `output_expiry_seconds`: its output files' own expiry, instead of the deployment's."""
        token = metadata["submission_token"]
        if look_first and (adopted := self.find(token, recorded_at)) is not None:
            logger.info("adopted a batch created before an interruption")
            return adopted
        unknown = 0
        for attempt in range(self._retry.attempts):
            try:
                return self._api.create_batch(
                    file_id,
                    endpoint,
                    metadata,
                    output_expires_after=output_expiry_seconds or self._output_expiry,
                )
            except OpenAIError as error:
                unknown += error.ambiguous
                last = attempt == self._retry.attempts - 1 or unknown >= AMBIGUOUS_CREATES_MAX
                if not error.retryable or last:
                    raise
                if not error.ambiguous:
                    # Refused outright (a 429 that outlasted the adapter's retries): not created.
                    self._retry.sleep(self._retry.delay(attempt, None))
                    continue
                if (adopted := self._settle_and_look(token, recorded_at, error)) is not None:
                    return adopted
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    def _settle_and_look(self, token: str, recorded_at: int, error: OpenAIError) -> Batch | None:
        """Wait out the create's own timeout, then look for its token, more than once: looking
        at once could miss a create OpenAI is still working on, and pay for a second batch."""
        logger.warning(
            "batch create outcome unknown; will look for it once it has had time to land",
            extra={"status": error.status, "code": error.code, "settle_seconds": self._settle},
        )
        for look, delay in enumerate(self._settle, start=1):
            self._retry.sleep(delay)
            adopted = self.find(token, recorded_at)
            if adopted is not None:
                logger.info(
                    "adopted the batch of a create that had failed",
                    extra={"batch_id": adopted["id"], "look": look},
                )
                return adopted
        logger.warning("no batch carries the token; creating it again", extra={"looks": look})
        return None

    def find(self, token: str, recorded_at: int) -> Batch | None:
        """The batch whose metadata carries `token`, made no earlier than shortly before
        `recorded_at` (when its attempt began), if there is one."""
        for batch in self._api.list_batches():
            if (batch.get("metadata") or {}).get("submission_token") == token:
                return batch
            if batch["created_at"] < recorded_at - ADOPTION_WINDOW_SECONDS:
                return None  # newest first: everything further back is older than our file
        return None

    def _range_reader(
        self,
        source: ObjectVersion,
        start: int,
        end: int,
        *,
        verbatim: bool,
        approved: ApprovedBytes | None,
    ) -> BodyFactory:
        """Re-opens the range on every call, so a retried upload re-reads exactly its bytes."""

        def open_range() -> Iterator[bytes]:
            body = self._objects.open(
                source.bucket, source.key, source.version_id, start=start, end=end
            )
            if not verbatim:
                return _coalesce(normalised_lines(body, range_start=start), WRITE_BUFFER_BYTES)
            chunks = iter(lambda: body.read(WRITE_BUFFER_BYTES), b"")
            return approved.follow(chunks, start) if approved else chunks

        return open_range

    def _cancel_quietly(self, upload_id: str) -> None:
        try:
            self._api.cancel_upload(upload_id)
        except OpenAIError:
            logger.warning("could not cancel an abandoned upload", extra={"upload_id": upload_id})


def settle_delays(read_timeout: float) -> list[float]:
    """The waits before each look for a create with an unknown outcome (SETTLE_FRACTIONS)."""
    return [read_timeout * fraction for fraction in SETTLE_FRACTIONS]


def batch_metadata(
    job_id: str, index: int, token: str, user_metadata: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A batch's metadata: the user's own pairs (from the dropped object), and batchdrop's
    two: the part it runs and the token that finds it again after an interruption. Two pairs
    at most, so a user keeps 14 of OpenAI's 16; the user's never name these two (they are
    refused at submit), and batchdrop's are written last all the same."""
    return {
        **(user_metadata or {}),
        "batchdrop_part": f"{job_id}/{index}",
        "submission_token": token,
    }


def part_reference(metadata: Mapping[str, str]) -> tuple[str, int] | None:
    """The job and part index a batch's metadata names, or None if it is not batchdrop's.
    Batches made before the bookkeeping shrank to two pairs carry `batchdrop_job` apart."""
    if "submission_token" not in metadata:
        return None
    part = metadata.get("batchdrop_part", "")
    job_id, slash, index = part.rpartition("/")
    if not slash:
        job_id, index = metadata.get("batchdrop_job", ""), part
    if not job_id or not index.isascii() or not index.isdigit():
        return None
    return job_id, int(index)


def moved_to(item: BatchRecord, batch: Batch) -> BatchRecord:
    """A part's record once it waits on another batch: whatever it waited for is over, and the
    batches it had before stay in its history."""
    return {
        "batch_id": batch["id"],
        "status": batch["status"],
        "openai": openai_fields(batch),
        "previous_batch_ids": [*item.get("previous_batch_ids", []), item["batch_id"]],
        "retry_at": None,
        "pending_token": None,
        "pending_since": None,
        "launch_taken_at": None,
    }


def resubmitted_to(item: BatchRecord, batch: Batch) -> BatchRecord:
    """A part's record once its resubmission (under its `pending_token`) made `batch`."""
    return {**moved_to(item, batch), "resubmits": int(item.get("resubmits", 0)) + 1}


def part_filename(filename: str, index: int, count: int) -> str:
    stem = filename.removesuffix(".jsonl")
    return f"{stem}.jsonl" if count == 1 else f"{stem}.part{index + 1}of{count}.jsonl"


def _coalesce(pieces: Iterable[bytes], size: int) -> Iterator[bytes]:
    buffer: list[bytes] = []
    buffered = 0
    for piece in pieces:
        buffer.append(piece)
        buffered += len(piece)
        if buffered >= size:
            yield b"".join(buffer)
            buffer, buffered = [], 0
    if buffer:
        yield b"".join(buffer)
