"""The emails batchdrop sends, written for the person who dropped the file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from batchdrop.notifier import Notice

PREVIEW_PROBLEMS = 10  # the email lists a few; the report in S3 lists up to 100


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
