"""The emails: short subjects, the facts a person needs, and what to do next."""

from __future__ import annotations

import pytest

from batchdrop.adapters.sns import SUBJECT_LIMIT, Notice, fit_subject
from batchdrop.domain.emails import (
    JobOutcome,
    SubmittedPart,
    abandoned_submission_notice,
    outcome_notice,
    rejection_notice,
    stuck_notice,
)


def outcome(**changes: object) -> JobOutcome:
    fields: dict[str, object] = {
        "filename": "chat.jsonl",
        "source_uri": "s3://b/requests/chat.jsonl",
        "input_prefix": "requests/",
        "outcome": "completed",
        "endpoint": "/v1/chat/completions",
        "total": 10,
        "succeeded": 10,
        "failed": 0,
        "unfinished": 0,
        "failed_by_code": {},
        "started_at": 1_000,
        "finished_at": 1_000 + 3 * 3600 + 25 * 60,
        "usage": {"input_tokens": 1200, "output_tokens": 300, "total_tokens": 1500},
        "results_uri": "s3://b/results/chat/results.jsonl",
        "results_link": "https://example/link",
        "unfinished_uri": None,
    }
    fields.update(changes)
    return JobOutcome(**fields)  # type: ignore[arg-type]


def test_a_long_subject_is_cut_to_the_sns_limit_on_one_line() -> None:
    subject = fit_subject("batchdrop: " + "a-very-long-file-name-" * 10 + ".jsonl\ncompleted")
    assert len(subject) == SUBJECT_LIMIT
    assert "\n" not in subject
    assert subject.endswith("...")  # SNS refuses a subject that is not ASCII


def test_a_completed_email_has_counts_duration_tokens_and_links() -> None:
    notice = outcome_notice(outcome())
    assert notice.subject == "batchdrop: chat.jsonl completed, 10/10 ok"
    assert "10 total, 10 succeeded, 0 failed" in notice.body
    assert "Duration:    3h 25m" in notice.body
    assert "1,200 in, 300 out, 1,500 total" in notice.body
    assert "https://example/link" in notice.body
    assert "What to do next" not in notice.body  # nothing to do
    assert notice.attributes == {"status": "completed", "endpoint": "/v1/chat/completions"}


def test_a_failed_email_lists_openais_errors_with_lines() -> None:
    errors = [{"code": "invalid_request", "line": 4, "message": "bad model"}]
    notice = outcome_notice(outcome(outcome="failed", succeeded=0, batch_errors=errors))
    assert "line 4: bad model (invalid_request)" in notice.body
    assert "fix what OpenAI reported" in notice.body
    assert notice.attributes["status"] == "failed"


@pytest.mark.parametrize(
    ("changes", "advice"),
    [
        ({"outcome": "expired", "unfinished": 4, "unfinished_uri": "s3://b/u.jsonl"}, "copy the"),
        ({"failed": 2, "failed_by_code": {"http_400": 2}}, "fix and resubmit"),
    ],
)
def test_next_steps_follow_the_outcome(changes: dict[str, object], advice: str) -> None:
    assert advice in outcome_notice(outcome(**changes)).body


def test_a_rejection_lists_the_first_problems_and_counts_the_rest() -> None:
    problems = [{"line": n, "message": f"line {n}: bad"} for n in range(1, 16)]
    notice = rejection_notice(
        source_uri="s3://b/requests/x.jsonl",
        filename="x.jsonl",
        input_prefix="requests/",
        problem_count=40,
        counts_by_code={"invalid_json": 40},
        problems=problems,
        report_uri="s3://b/reports/x.jsonl.report.json",
        report_link="https://example/report",
    )
    assert "line 10: bad" in notice.body
    assert "line 11: bad" not in notice.body
    assert "and 30 more" in notice.body
    assert notice.subject == "batchdrop: x.jsonl rejected, 40 problems to fix"


def test_a_stuck_warning_says_polling_goes_on() -> None:
    notice = stuck_notice(
        filename="x.jsonl",
        source_uri="s3://b/requests/x.jsonl",
        batch_id="batch_1",
        status="finalizing",
        minutes=180,
        endpoint="/v1/embeddings",
    )
    assert notice.subject == "batchdrop: x.jsonl has been finalizing for 180 minutes"
    assert "keeps polling" in notice.body
    assert notice.attributes["status"] == "stuck"


PLAN = [SubmittedPart(0, 1, 50_000), SubmittedPart(1, 50_001, 50_000), SubmittedPart(2, 100_001, 7)]


def abandoned(**changes: object) -> Notice:
    fields: dict[str, object] = {
        "filename": "big.jsonl",
        "source_uri": "s3://b/requests/big.jsonl",
        "input_prefix": "requests/",
        "planned": PLAN,
        "created": {0: "batch_a"},
        "attempts": 8,
        "hours": 9,
        "last_error": "OpenAIError: OpenAI API error 429 (insufficient_quota): no money",
    }
    fields.update(changes)
    return abandoned_submission_notice(**fields)  # type: ignore[arg-type]


def test_a_submission_given_up_part_way_says_what_went_and_never_to_upload_it_all_again() -> None:
    notice = abandoned()

    assert notice.subject == "batchdrop: big.jsonl could not be fully submitted"
    assert "1 of 3 batches (50,000 requests): batch_a" in notice.body
    assert "50,007 requests, from line 50,001 to the end of the file" in notice.body
    assert "Do not upload the whole file again" in notice.body
    assert "only lines 50,001 onward under requests/" in notice.body
    assert "insufficient_quota" in notice.body


def test_a_submission_given_up_before_any_batch_says_nothing_ran() -> None:
    notice = abandoned(created={}, last_error="")

    assert notice.subject == "batchdrop: big.jsonl could not be submitted"
    assert "no batch was created, so no request ran or was charged" in notice.body
    assert "upload the file again under requests/" in notice.body
    assert "none recorded (the attempts were stopped" in notice.body


def test_a_submission_given_up_before_it_was_checked_names_the_whole_file() -> None:
    notice = abandoned(planned=[], created={})

    assert "Not submitted:  the whole file" in notice.body
