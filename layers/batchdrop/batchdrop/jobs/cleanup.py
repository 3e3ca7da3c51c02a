"""A reported job's files on OpenAI are deleted: its inputs, outputs and error files.

Otherwise prompts and outputs stay on the user's OpenAI account until each file's expiry, long
after the results are safe in S3 (and, on Azure, count against a cap of files per resource).

- Nothing is deleted before the results are home and the email is out: the finisher schedules
  a job's clean-up only after its outcome notice is sent (`schedule`), with the files it
  recorded with the outcome.
- A job stays in the index of clean-ups until every file is gone, so a failed delete is tried
  again by the next tick; it never delays an email, which went out before. A file OpenAI no
  longer knows (expired, or deleted by an overlapping tick) counts as deleted.
- After `attempts_allowed` ticks with files left, the clean-up gives up and says so: OpenAI's own
  expiry, which batchdrop sets on every file, removes the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from batchdrop import SERVICE
from batchdrop.errors import OpenAIError
from batchdrop.ports import BatchAPI, JobRepository
from batchdrop.records import BatchRecord, FileCleanup, JobRecord

logger = Logger(service=SERVICE, child=True)

CLEANUP_RESERVE_SECONDS = 15.0  # a job's deletes are a few quick calls
DELETE_ATTEMPTS = 288  # a day of ticks, every 5 minutes


def job_files(records: Iterable[BatchRecord]) -> list[str]:
    """Every file of a job on OpenAI: each part's input, and each batch's output and error."""
    files: set[str] = set()
    for record in records:
        openai = record.get("openai", {})
        named = (
            record.get("file_id"),
            openai.get("input_file_id"),
            openai.get("output_file_id"),
            openai.get("error_file_id"),
        )
        files.update(file_id for file_id in named if file_id)
    return sorted(files)


class OpenAIFileCleanup:
    def __init__(
        self,
        *,
        store: JobRepository,
        api: BatchAPI,
        metrics: Metrics,
        enabled: bool,
        attempts_allowed: int = DELETE_ATTEMPTS,
    ) -> None:
        self._store = store
        self._api = api
        self._metrics = metrics
        self._enabled = enabled
        self._attempts_allowed = attempts_allowed

    def schedule(self, job: JobRecord) -> None:
        """Once the job's outcome is reported: its files are to be deleted (when enabled)."""
        files = job.get("openai_files") or []
        if self._enabled and files:
            self._store.schedule_file_cleanup(job["job_id"], list(files))

    def run(self, time_left: Callable[[], float]) -> dict[str, str]:
        """One attempt at each pending clean-up while time allows, the longest waiting first
        (a pending attempt goes to the back); each job's state after it. With deletion turned
        off, clean-ups already pending wait: nothing more is deleted."""
        states: dict[str, str] = {}
        if not self._enabled:
            return states
        for job in self._store.file_cleanups():
            if time_left() < CLEANUP_RESERVE_SECONDS:
                break  # the next tick goes on
            states[job["job_id"]] = self._attempt(job, time_left)
        return states

    def _attempt(self, job: JobRecord, time_left: Callable[[], float]) -> str:
        job_id = job["job_id"]
        before = job.get("file_cleanup", {})
        left, error = self._delete(before.get("left", []), time_left)
        attempts = int(before.get("attempts", 0)) + 1
        deleted = len(before.get("left", [])) - len(left)
        state = "done" if not left else "pending"
        if left and attempts >= self._attempts_allowed:
            state = "gave_up"
        after: FileCleanup = {
            "state": state,
            "left": left,
            "deleted": int(before.get("deleted", 0)) + deleted,
            "attempts": attempts,
            "last_error": error,
        }
        if not self._store.record_file_cleanup(job_id, attempts - 1, after):
            return "pending"  # an overlapping tick recorded its attempt first; its state stands
        self._metrics.add_metric("OpenAIFilesDeleted", MetricUnit.Count, deleted)
        if left:
            self._metrics.add_metric("OpenAIFileDeletesFailed", MetricUnit.Count, len(left))
            log = logger.error if state == "gave_up" else logger.warning
            log(
                "files on OpenAI not deleted; OpenAI's expiry will remove them"
                if state == "gave_up"
                else "files on OpenAI not deleted yet; the next tick tries again",
                extra={"job_id": job_id, "files_left": left, "attempts": attempts, "error": error},
            )
        return state

    def _delete(
        self, file_ids: list[str], time_left: Callable[[], float]
    ) -> tuple[list[str], str | None]:
        """The files still there after one delete each (while time allows), and the last
        error met. No failure stops the others: each file is tried on its own."""
        left: list[str] = []
        error: str | None = None
        for file_id in file_ids:
            if time_left() < CLEANUP_RESERVE_SECONDS:
                left.append(file_id)  # for the next tick
                continue
            try:
                self._api.delete_file(file_id)
            except OpenAIError as refused:
                if refused.status == 404:
                    continue  # gone already: expired, or deleted by an overlapping tick
                left.append(file_id)
                error = str(refused)
            except Exception as unexpected:  # e.g. a 2xx whose body is not JSON
                left.append(file_id)
                error = f"{type(unexpected).__name__}: {unexpected}"
        return left, error
