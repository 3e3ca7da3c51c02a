"""Validate a dropped file while it uploads, so that validation runs during the upload's wait
for the network instead of before it.

Most files become one batch whose bytes go to OpenAI as they are. For those, the upload starts
on a second thread and reads the object on its own, never passing validation (`ApprovedBytes`).
Validation abandons it the moment the file turns out otherwise: a problem, a line to rewrite,
more than one batch. The file then takes the ordinary path (validate fully, then upload the
planned parts). An abandoned upload never completes, so it leaves no file and pays nothing.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

from aws_lambda_powertools import Logger

from batchdrop import SERVICE
from batchdrop.domain.approval import ApprovedBytes, UploadAbandoned
from batchdrop.domain.limits import MAX_UPLOAD_PART_BYTES, Limits
from batchdrop.domain.lines import Line
from batchdrop.domain.split_plan import Part
from batchdrop.domain.validation import ValidationReport, Validator
from batchdrop.jobs.launch import WRITE_BUFFER_BYTES, BatchLauncher, ObjectVersion

logger = Logger(service=SERVICE, child=True)

# Approving every line would take a lock per line; the upload sends 1 MiB chunks anyway.
APPROVAL_STEP_BYTES = WRITE_BUFFER_BYTES // 4


class EarlyUpload:
    """The whole object on its way to OpenAI while validation reads it."""

    def __init__(
        self,
        launcher: BatchLauncher,
        source: ObjectVersion,
        size: int,
        filename: str,
        max_chunk_bytes: int = MAX_UPLOAD_PART_BYTES,
        *,
        expiry_seconds: int | None = None,
    ) -> None:
        self.size = size
        self._expiry_seconds = expiry_seconds
        self.approved = ApprovedBytes()
        self._taken = False
        whole = Part.whole_object(size, max_chunk_bytes)
        pool = ThreadPoolExecutor(1, thread_name_prefix="early-upload")
        self._file_id: Future[str] = pool.submit(self._upload, launcher, source, whole, filename)
        pool.shutdown(wait=False)  # the thread ends with its one task; `close` waits for it

    def _upload(
        self, launcher: BatchLauncher, source: ObjectVersion, whole: Part, filename: str
    ) -> str:
        # Not even a request starts before the first chunk is validated: a file that is wrong
        # from its first line (the common mistake) sends nothing at all.
        self.approved.wait_for(min(self.size, WRITE_BUFFER_BYTES))
        return launcher.upload(
            source,
            whole,
            filename,
            verbatim=True,
            approved=self.approved,
            expiry_seconds=self._expiry_seconds,
        )

    def file_id_for(self, report: ValidationReport) -> str | None:
        """The uploaded file's id if it is exactly the batch `report` plans, else None (the
        upload is abandoned). A failure of a wanted upload is raised, as the ordinary upload
        would raise it."""
        wanted = (
            report.ok
            and report.verbatim
            and len(report.parts) == 1
            and report.parts[0].is_whole_object(self.size)
        )
        if not wanted:
            self.approved.abandon()
            return None
        self._taken = True
        self.approved.approve(self.size)
        return self._file_id.result()

    def keep_pace(self, validator: Validator, line: Line) -> None:
        """After each line validation feeds: approve the lines before it, or abandon the upload
        once the file cannot be one batch sent as it is."""
        if self.approved.abandoned:
            return
        if not validator.one_raw_part_so_far:
            self.approved.abandon()  # signalled only: validation goes on without waiting
        elif line.offset - self.approved.until >= APPROVAL_STEP_BYTES:
            self.approved.approve(line.offset)  # everything before this line has passed

    def close(self) -> None:
        """Abandon the upload unless its file was taken, and wait for its thread to end, so
        that nothing runs on after the handler returns."""
        if self._taken:
            return
        self.approved.abandon()
        try:
            self._file_id.result()
        except UploadAbandoned:
            pass
        except Exception:  # an unwanted upload's failure matters to no one
            logger.info("an abandoned upload had failed already", exc_info=True)


def may_upload_early(size: int, limits: Limits) -> bool:
    """Whether the object could be one batch sent as it is (its lines are still unknown)."""
    return 0 < size <= limits.max_batch_bytes
