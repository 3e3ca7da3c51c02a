"""What the command shows of a job and its batches, read from their records; no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FINISHED = {"completed", "failed", "expired", "cancelled", "rejected"}


class UserError(Exception):
    """Something the user must fix, said in one line."""


# The moments OpenAI stamps on a batch, in lifecycle order.
BATCH_EVENTS = (
    "created_at", "in_progress_at", "finalizing_at", "cancelling_at",
    "completed_at", "failed_at", "expired_at", "cancelled_at",
)  # fmt: skip


@dataclass(frozen=True)
class BatchView:
    index: int
    batch_id: str
    status: str
    total: int
    completed: int
    failed: int
    events: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class JobView:
    job_id: str
    key: str
    status: str
    created_at: int
    record: dict[str, Any]
    batches: list[BatchView] = field(default_factory=list)

    @property
    def filename(self) -> str:
        return Path(self.key).name

    @property
    def total(self) -> int:
        return int(self.record.get("request_count") or self.record.get("total") or 0)

    @property
    def done(self) -> int:
        if self.status in FINISHED:
            return int(self.record.get("succeeded", 0)) + int(self.record.get("failed", 0))
        return sum(b.completed + b.failed for b in self.batches)

    @property
    def metadata(self) -> dict[str, str]:
        """The file's own metadata, forwarded to every batch."""
        return {str(k): str(v) for k, v in (self.record.get("metadata") or {}).items()}

    @property
    def usage(self) -> dict[str, int]:
        """Tokens summed over the job's batches, once it finished."""
        return {str(k): int(v) for k, v in (self.record.get("usage") or {}).items()}

    @property
    def openai_files(self) -> str | None:
        """What became of the job's files on OpenAI once it was reported; None before, or
        when the deployment keeps them."""
        cleanup = self.record.get("file_cleanup")
        if not cleanup:
            return None
        deleted, left = int(cleanup.get("deleted", 0)), len(cleanup.get("left") or [])
        match cleanup.get("state"):
            case "done":
                return f"{deleted} files deleted"
            case "gave_up":
                return f"{deleted} files deleted, {left} left to OpenAI's expiry"
            case _:
                return f"{deleted} files deleted, {left} still to delete (retried every tick)"

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "key": self.key,
            "status": self.status,
            "created_at": self.created_at,
            "total": self.total,
            "done": self.done,
            "succeeded": self.record.get("succeeded"),
            "failed": self.record.get("failed"),
            "unfinished": self.record.get("unfinished"),
            "metadata": self.metadata,
            "usage": self.usage,
            "models": list(self.record.get("models") or []),
            "openai_files": self.openai_files,
            "batches": [b.__dict__ for b in self.batches],
        }


def batch_view(item: Mapping[str, Any]) -> BatchView:
    openai = item.get("openai", {})
    counts = openai.get("request_counts") or {}
    events = tuple(
        (int(openai[name]), name.removesuffix("_at")) for name in BATCH_EVENTS if openai.get(name)
    )
    return BatchView(
        index=int(item["index"]),
        batch_id=str(item.get("batch_id", "")),
        status=str(item.get("status", "")),
        total=int(counts.get("total", 0)),
        completed=int(counts.get("completed", 0)),
        failed=int(counts.get("failed", 0)),
        events=events,
    )
