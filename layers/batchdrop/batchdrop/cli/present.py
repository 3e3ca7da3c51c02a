"""How jobs look in a terminal: progress bars and a compact table."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from batchdrop.cli.views import JobView
from batchdrop.domain.usage import usage_line

BAR_WIDTH = 30


def progress_bar(view: JobView) -> str:
    total = max(view.total, 1)
    filled = round(BAR_WIDTH * min(view.done, total) / total)
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    return f"{view.filename:<28.28} [{bar}] {view.done:>6,}/{view.total:<6,} {view.status}"


def jobs_table(views: list[JobView], now: float | None = None) -> str:
    now = time.time() if now is None else now
    header = f"{'JOB':<16}  {'FILE':<28}  {'STATUS':<10}  {'PROGRESS':>15}  {'AGE':>6}  COUNTS"
    rows = [header]
    for view in views:
        counts = ""
        if view.finished and view.status != "rejected":
            counts = (
                f"{view.record.get('succeeded', 0):,} ok, {view.record.get('failed', 0):,} failed"
            )
        elif view.status == "rejected":
            counts = f"{view.record.get('problem_count', 0):,} problems"
        rows.append(
            f"{view.job_id:<16}  {view.filename:<28.28}  {view.status:<10}  "
            f"{f'{view.done:,}/{view.total:,}':>15}  {_age(now - view.created_at):>6}  {counts}"
        )
    return "\n".join(rows)


def job_details(view: JobView) -> str:
    """One job for a person: where it stands, what happened when, and where the results are."""
    record = view.record
    lines = [progress_bar(view), "", f"job:      {view.job_id}", f"file:     {view.key}"]
    if record.get("endpoint"):
        lines.append(f"endpoint: {record['endpoint']} ({record.get('model', '?')})")
    lines += _cost_and_tags(view)
    if view.status == "rejected":
        lines.append(f"report:   {record.get('report_key')}")
    if record.get("results_key"):
        lines.append(f"results:  {record['results_key']}")
    if view.status == "submitting" and record.get("last_error"):
        # The poll function resumes it by itself; the error says what to fix meanwhile.
        resumed = f"resumed {record.get('resumes', 0)} times"
        lines.append(f"last error: {record['last_error']} ({resumed})")
    if view.status == "needs_attention" or record.get("finish_failures"):
        failures = f"failed to finish {record.get('finish_failures', 0)} times in a row"
        lines.append(f"last error: {record.get('last_finish_error', '?')} ({failures})")
    if view.status == "needs_attention":
        lines.append(f"set aside: fix the cause, then `batchdrop retry {view.job_id}`")
    if record.get("not_submitted_parts"):
        lines.append(f"not submitted: lines {record['not_submitted_from_line']:,} onward")
    history = [(int(record["created_at"]), "job", "received")]
    for batch in view.batches:
        history += [(at, batch.batch_id, event) for at, event in batch.events]
    if record.get("finished_at"):
        history.append((int(record["finished_at"]), "job", view.status))
    lines += ["", "history:"]
    lines += [
        f"  {datetime.fromtimestamp(at, UTC):%Y-%m-%d %H:%M:%S}  {who:<40}  {what}"
        for at, who, what in sorted(history)
    ]
    return "\n".join(lines)


def _cost_and_tags(view: JobView) -> list[str]:
    """The models and tokens of a finished job, and the metadata its batches carry."""
    lines = []
    if view.record.get("models"):
        lines.append(f"models:   {', '.join(view.record['models'])}")
    if view.usage:
        lines.append(f"tokens:   {usage_line(view.usage)}")
    lines += [f"metadata: {key} = {value}" for key, value in sorted(view.metadata.items())]
    if view.openai_files:
        lines.append(f"openai:   {view.openai_files}")
    return lines


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
