"""The emails batchdrop sends, written for the person who dropped the file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from batchdrop.domain.usage import usage_line
from batchdrop.ports import Notice

PREVIEW_PROBLEMS = 10  # the email lists a few; the report in S3 lists up to 100
NO_ERROR_RECORDED = "none recorded (the attempts were stopped, for example out of memory)"


def rejection_notice(
    *,
    source_uri: str,
    filename: str,
    input_prefix: str,
    problem_count: int,
    counts_by_code: Mapping[str, int],
    problems: Sequence[Mapping[str, Any]],
    report_uri: str,
    report_link: str,
) -> Notice:
    noun = "problem" if problem_count == 1 else "problems"
    counts = ", ".join(f"{code}: {n}" for code, n in sorted(counts_by_code.items()))
    listed = "\n".join(f"  - {p['message']}" for p in problems[:PREVIEW_PROBLEMS])
    more = problem_count - min(len(problems), PREVIEW_PROBLEMS)
    if more > 0:
        listed += f"\n  … and {more:,} more in the full report."
    body = f"""\
Your batch file was rejected: nothing was sent to OpenAI and nothing was charged.

File:      {source_uri}
Outcome:   rejected, {problem_count:,} {noun} found ({counts})

Problems:
{listed}

Full report (every problem with its line number):
  {report_uri}
  {report_link}

What to do next: fix the lines listed above and upload the corrected file under
{input_prefix} again. Your original file was kept as it was.
"""
    return Notice(
        subject=f"batchdrop: {filename} rejected, {problem_count:,} {noun} to fix",
        body=body,
        attributes={"status": "rejected"},
    )


@dataclass(frozen=True)
class JobOutcome:
    """Everything the outcome email tells: what ran, how it went and where the results are."""

    filename: str
    source_uri: str
    input_prefix: str
    outcome: str  # completed, failed, expired or cancelled
    endpoint: str
    total: int
    succeeded: int
    failed: int
    unfinished: int
    failed_by_code: Mapping[str, int]
    started_at: int
    finished_at: int
    usage: Mapping[str, int]
    results_uri: str
    results_link: str
    unfinished_uri: str | None
    batch_errors: Sequence[Mapping[str, Any]] = ()
    batch_count: int = 1
    not_submitted_from_line: int | None = None  # a submission that gave up part way
    # Requests whose result could not be placed: they may have run, so they are never resent.
    unplaced: int = 0
    unplaced_by_reason: Mapping[str, int] = field(default_factory=dict)
    # Every request that did not succeed (failed, unfinished, unplaced), ready to upload alone.
    not_succeeded_uri: str | None = None
    models: Sequence[str] = ()  # as OpenAI names them on the batches
    metadata: Mapping[str, str] = field(default_factory=dict)  # the file's own, forwarded


_HEADLINES = {
    "completed": "Your batch job is done.",
    "failed": "Your batch job failed.",
    "expired": "Your batch job expired before every request ran; the finished part is saved.",
    "cancelled": "Your batch job was cancelled; the requests that finished are saved.",
}


def outcome_notice(job: JobOutcome) -> Notice:
    lines = _outcome_lines(job) + _files_to_act_on(job) + _what_went_wrong(job)
    failed_note = f", {job.failed:,} failed" if job.failed else ""
    return Notice(
        subject=f"batchdrop: {job.filename} {job.outcome}, {job.succeeded:,}/{job.total:,} ok"
        + failed_note,
        body="\n".join(lines) + "\n",
        attributes={"status": job.outcome, "endpoint": job.endpoint},
    )


def _outcome_lines(job: JobOutcome) -> list[str]:
    """The headline, the figures, and where the merged results are."""
    return [
        _HEADLINES.get(job.outcome, f"Your batch job ended: {job.outcome}."),
        "",
        f"File:        {job.source_uri}",
        f"Outcome:     {job.outcome}"
        + (f" ({job.batch_count} batches)" if job.batch_count > 1 else ""),
        f"Requests:    {job.total:,} total, {job.succeeded:,} succeeded, {job.failed:,} failed"
        + (f", {job.unfinished:,} unfinished" if job.unfinished else "")
        + (f", {job.unplaced:,} unplaced" if job.unplaced else ""),
        f"Duration:    {_duration(job.finished_at - job.started_at)}",
        f"Tokens:      {usage_line(job.usage)}",
        *([f"Model:       {', '.join(job.models)}"] if job.models else []),
        *_metadata_lines(job.metadata),
        "",
        "Results (one line per request, in the order of your file):",
        f"  {job.results_uri}",
        f"  {job.results_link}",
    ]


def _metadata_lines(metadata: Mapping[str, str]) -> list[str]:
    """The file's own metadata, as every batch carried it."""
    if not metadata:
        return []
    return ["Metadata:", *(f"  {key} = {value}" for key, value in sorted(metadata.items()))]


def _files_to_act_on(job: JobOutcome) -> list[str]:
    """The requests left over, each kind with the file that holds them, if any."""
    lines: list[str] = []
    if job.unfinished_uri:
        lines += [
            "",
            "Requests that did not run, ready to submit again:",
            f"  {job.unfinished_uri}",
        ]
    lines += _unplaced_lines(job)
    if job.not_succeeded_uri:
        lines += [
            "",
            "Every request that did not succeed, and only those, ready to upload on its own:",
            f"  {job.not_succeeded_uri}",
        ]
    if job.not_submitted_from_line:
        lines += [
            "",
            f"Never submitted: the requests from line {job.not_submitted_from_line:,} on "
            "(batchdrop gave up submitting them; an earlier email said why).",
        ]
    return lines


def _what_went_wrong(job: JobOutcome) -> list[str]:
    """OpenAI's errors, the failures by reason, and what the reader can do about them."""
    lines: list[str] = []
    if job.batch_errors:
        lines += ["", "OpenAI reported:"]
        lines += [f"  - {_batch_error(error)}" for error in job.batch_errors[:PREVIEW_PROBLEMS]]
    if job.failed_by_code:
        failures = ", ".join(f"{code}: {n:,}" for code, n in sorted(job.failed_by_code.items()))
        lines += ["", f"Failed requests by reason: {failures}"]
    next_step = _next_step(job)
    if next_step:
        lines += ["", f"What to do next: {next_step}"]
    return lines


def stuck_notice(
    *, filename: str, source_uri: str, batch_id: str, status: str, minutes: int, endpoint: str
) -> Notice:
    body = f"""\
A batch of your job has been {status} for {minutes:,} minutes, longer than expected.

File:      {source_uri}
Batch:     {batch_id}
Status:    {status}

Nothing is lost: batchdrop keeps polling and will email the outcome when the batch ends.
OpenAI's status page can tell whether the Batch API is having a slow day.
"""
    return Notice(
        subject=f"batchdrop: {filename} has been {status} for {minutes:,} minutes",
        body=body,
        attributes={"status": "stuck", "endpoint": endpoint},
    )


def needs_attention_notice(
    *, filename: str, source_uri: str, attempts: int, last_error: str, endpoint: str
) -> Notice:
    """The one email when a job that ran is set aside: it is not lost, and it is not the user's
    to fix, so the email says both and warns against paying twice."""
    body = f"""\
Your batch job ran, but batchdrop could not bring its results home: it tried {attempts:,} times
in a row and has set the job aside. The operator has been alerted.

File:        {source_uri}
Status:      needs attention
Last error:  {last_error or NO_ERROR_RECORDED}

Nothing is lost: OpenAI's output, your batches and your file are all kept. Once the cause is
fixed the operator retries the job (`batchdrop retry`), and you get the usual email with the
results. Do not upload the file again: that would pay twice for requests that already ran.
"""
    return Notice(
        subject=f"batchdrop: {filename} needs attention, results delayed",
        body=body,
        attributes={"status": "needs_attention", "endpoint": endpoint},
    )


@dataclass(frozen=True)
class SubmittedPart:
    """One planned batch of a file: where its requests start and how many it holds."""

    index: int
    first_line: int
    requests: int


def abandoned_submission_notice(
    *,
    filename: str,
    source_uri: str,
    input_prefix: str,
    planned: Sequence[SubmittedPart],
    created: Mapping[int, str],
    attempts: int,
    hours: int,
    last_error: str,
) -> Notice:
    """The one email when batchdrop stops trying to submit a file: what went, what did not."""
    headline, submitted, after = _what_was_submitted(planned, created, input_prefix)
    not_submitted, rest = _what_was_not(planned, created, input_prefix)
    body = f"""\
{headline}

File:           {source_uri}
Submitted:      {submitted}
Not submitted:  {not_submitted}
Attempts:       {attempts:,} over {hours:,} hours
Last error:     {last_error or NO_ERROR_RECORDED}

What happens next: {after}{rest}
"""
    return Notice(
        subject=f"batchdrop: {filename} could not be "
        + ("fully submitted" if created else "submitted"),
        body=body,
        attributes={"status": "failed"},
    )


def _what_was_submitted(
    planned: Sequence[SubmittedPart], created: Mapping[int, str], input_prefix: str
) -> tuple[str, str, str]:
    """The abandoned submission's headline, the batches it created, and what happens next."""
    if not created:
        return (
            "Your file could not be submitted to OpenAI, so batchdrop stopped trying.",
            "nothing: no batch was created, so no request ran or was charged",
            f"Once the cause is fixed, upload the file again under {input_prefix}.",
        )
    sent = sum(part.requests for part in planned if part.index in created)
    submitted = f"{len(created)} of {len(planned)} batches ({sent:,} requests): " + ", ".join(
        created[index] for index in sorted(created)
    )
    return (
        "Part of your file could not be submitted to OpenAI; batchdrop stopped trying.",
        submitted,
        "The batches that were created keep running: their results, and one more email, "
        "arrive when they end. Do not upload the whole file again, which would pay twice "
        "for the requests already submitted.",
    )


def _what_was_not(
    planned: Sequence[SubmittedPart], created: Mapping[int, str], input_prefix: str
) -> tuple[str, str]:
    """The requests never submitted, and (when some batches went) how to run just those."""
    missing = [part for part in planned if part.index not in created]
    if not missing:
        return "the whole file (it was never fully checked)", ""
    first = min(part.first_line for part in missing)
    left = sum(part.requests for part in missing)
    not_submitted = f"{left:,} requests, from line {first:,} to the end of the file"
    if not created:
        return not_submitted, ""
    return not_submitted, (
        f" To run the rest, upload a file holding only lines {first:,} onward under "
        f"{input_prefix} once the cause is fixed."
    )


def _unplaced_lines(job: JobOutcome) -> list[str]:
    if not job.unplaced:
        return []
    reasons = ", ".join(f"{code}: {n:,}" for code, n in sorted(job.unplaced_by_reason.items()))
    return [
        "",
        f"Unplaced: {job.unplaced:,} requests whose result could not be matched ({reasons}).",
        "They may have run and been charged, so batchdrop never sends them again itself;",
        "summary.json lists the result lines it could not place.",
    ]


def _next_step(job: JobOutcome) -> str:
    if job.outcome == "failed":
        # Only what did not succeed: uploading the whole file would pay again for what did.
        again = (
            f"upload {job.not_succeeded_uri} (only the requests that did not succeed) under "
            f"{job.input_prefix}"
            if job.not_succeeded_uri
            else f"upload the file again under {job.input_prefix}"
        )
        codes = {str(error.get("code")) for error in job.batch_errors}
        if "token_limit_exceeded" in codes:
            return (
                "your organisation's enqueued-token limit stayed full through every retry; "
                f"{again} once other batches finish."
            )
        return f"fix what OpenAI reported above, then {again}."
    if job.unfinished and job.unfinished_uri:
        return f"copy the unfinished requests file into {job.input_prefix} to run just those."
    if job.failed:
        return "see each failed line's error in the results file; fix and resubmit those requests."
    return ""


def _batch_error(error: Mapping[str, Any]) -> str:
    where = f"line {error['line']}: " if error.get("line") else ""
    return f"{where}{error.get('message', '')} ({error.get('code', 'error')})"


def _duration(seconds: int) -> str:
    minutes, _ = divmod(max(0, seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"
