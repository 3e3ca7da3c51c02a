"""Merging OpenAI's unordered output and error files back into the job's input order."""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from batchdrop.domain import results
from batchdrop.domain.fates import FollowUpRound
from batchdrop.domain.lines import Readable
from batchdrop.domain.results import MergeSummary, PartInput, ResultFile, merge_in_input_order


def request(custom_id: str) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": custom_id}]},
    }


def succeeded(custom_id: str) -> dict[str, Any]:
    return {
        "id": f"batch_req_{custom_id}",
        "custom_id": custom_id,
        "response": {"status_code": 200, "request_id": "r", "body": {"answer": custom_id}},
        "error": None,
    }


def http_failure(custom_id: str, status_code: int, code: str | None) -> dict[str, Any]:
    error = {"message": "no", "type": "invalid_request_error", "param": None, "code": code}
    return {
        "id": f"batch_req_{custom_id}",
        "custom_id": custom_id,
        "response": {"status_code": status_code, "request_id": "r", "body": {"error": error}},
        "error": None,
    }


def never_ran(custom_id: str, code: str) -> dict[str, Any]:
    return {
        "id": f"batch_req_{custom_id}",
        "custom_id": custom_id,
        "response": None,
        "error": {"code": code, "message": "This request could not be executed."},
    }


def jsonl(documents: Sequence[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(document).encode() + b"\n" for document in documents)


class Opener:
    """Opens the same bytes again and again, counting how often."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.opened = 0

    def __call__(self) -> Readable:
        self.opened += 1
        return io.BytesIO(self.data)


def ids(count: int, prefix: str = "req") -> list[str]:
    return [f"{prefix}-{i}" for i in range(count)]


def merge(
    parts: Sequence[Sequence[str]],
    result_files: Sequence[Sequence[dict[str, Any]] | bytes | ResultFile],
    workdir: Path,
    *,
    batch_status: str | Sequence[str] = "expired",
    **options: Any,
) -> tuple[MergeSummary, list[dict[str, Any]], bytes]:
    """Merge `parts` (each an expired batch unless `batch_status` says otherwise); the result
    files belong to no known part unless given as ResultFile."""
    statuses = [batch_status] * len(parts) if isinstance(batch_status, str) else batch_status
    inputs = [
        PartInput(Opener(jsonl([request(custom_id) for custom_id in part])), status)
        for part, status in zip(parts, statuses, strict=True)
    ]
    outputs = [
        f if isinstance(f, ResultFile) else Opener(f if isinstance(f, bytes) else jsonl(f))
        for f in result_files
    ]
    merged, unfinished = io.BytesIO(), io.BytesIO()
    summary = merge_in_input_order(inputs, outputs, merged, unfinished, workdir=workdir, **options)
    lines = [json.loads(line) for line in merged.getvalue().splitlines()]
    return summary, lines, unfinished.getvalue()


def test_shuffled_output_is_merged_in_input_order(tmp_path: Path) -> None:
    custom_ids = ids(60)
    shuffled = [succeeded(custom_id) for custom_id in custom_ids]
    random.Random(7).shuffle(shuffled)

    summary, lines, unfinished = merge([custom_ids], [shuffled[:25], shuffled[25:]], tmp_path)

    assert [line["custom_id"] for line in lines] == custom_ids
    assert [line["line"] for line in lines] == list(range(1, 61))
    assert lines[3] == {
        "line": 4,
        "custom_id": "req-3",
        "status": "succeeded",
        "status_code": 200,
        "response": {"answer": "req-3"},
        "error": None,
    }
    assert summary == MergeSummary(60, 60, 0, 0, {})
    assert unfinished == b""


def test_every_kind_of_result_gets_its_status_and_is_counted(tmp_path: Path) -> None:
    custom_ids = ["ok", "bad", "boom", "expired", "cancelled", "missing", "ok-2"]
    output = [succeeded("ok-2"), succeeded("ok")]
    errors = [
        never_ran("cancelled", "batch_cancelled"),
        http_failure("boom", 500, None),
        never_ran("expired", "batch_expired"),
        http_failure("bad", 400, "invalid_value"),
    ]

    summary, lines, unfinished = merge([custom_ids], [errors, output], tmp_path)

    by_id = {line["custom_id"]: line for line in lines}
    assert [line["status"] for line in lines] == [
        "succeeded",
        "failed",
        "failed",
        "unfinished",
        "unfinished",
        "unfinished",
        "succeeded",
    ]
    assert by_id["bad"]["status_code"] == 400
    assert by_id["bad"]["error"]["code"] == "invalid_value"
    assert by_id["boom"]["status_code"] == 500
    assert by_id["boom"]["error"]["type"] == "invalid_request_error"
    assert by_id["expired"]["error"]["code"] == "batch_expired"
    assert by_id["expired"]["status_code"] is None
    assert by_id["missing"] == {
        "line": 6,
        "custom_id": "missing",
        "status": "unfinished",
        "status_code": None,
        "response": None,
        "error": None,
    }
    assert summary == MergeSummary(
        total=7,
        succeeded=2,
        failed=2,
        unfinished=3,
        failed_by_code={"http_500": 1, "invalid_value": 1},
    )
    # The unfinished requests' own input lines, in input order, ready to be submitted again.
    assert unfinished == jsonl([request(c) for c in ("expired", "cancelled", "missing")])


def test_a_top_level_error_code_names_the_failure(tmp_path: Path) -> None:
    odd = {"custom_id": "a", "response": {"status_code": 200, "body": {}}, "error": {"code": "x"}}
    no_response = {"custom_id": "b", "response": None, "error": {"message": "?"}}

    summary, lines, _ = merge([["a", "b"]], [[odd, no_response]], tmp_path)

    assert [line["status"] for line in lines] == ["failed", "failed"]
    assert lines[0]["error"] == {"code": "x"}
    assert summary.failed_by_code == {"unknown_error": 1, "x": 1}


def test_a_completed_batch_with_only_an_error_file(tmp_path: Path) -> None:
    custom_ids = ids(5)
    errors = [http_failure(custom_id, 429, "rate_limit_exceeded") for custom_id in custom_ids]

    summary, lines, unfinished = merge([custom_ids], [errors[::-1]], tmp_path)

    assert [line["custom_id"] for line in lines] == custom_ids
    assert {line["status"] for line in lines} == {"failed"}
    assert summary == MergeSummary(5, 0, 5, 0, {"rate_limit_exceeded": 5})
    assert unfinished == b""


def test_line_numbers_continue_across_parts(tmp_path: Path) -> None:
    parts = [ids(4, "a"), ids(3, "b"), ids(5, "c")]
    everything = [custom_id for part in parts for custom_id in part]
    # Each batch's files hold only its own requests; one request of part b never ran.
    result_files = [
        [succeeded(custom_id) for custom_id in reversed(part) if custom_id != "b-1"]
        for part in parts
    ]

    summary, lines, unfinished = merge(parts, result_files[::-1], tmp_path)

    assert [(line["line"], line["custom_id"]) for line in lines] == list(
        enumerate(everything, start=1)
    )
    assert lines[5] == {
        "line": 6,
        "custom_id": "b-1",
        "status": "unfinished",
        "status_code": None,
        "response": None,
        "error": None,
    }
    assert unfinished == jsonl([request("b-1")])
    assert (summary.total, summary.succeeded, summary.unfinished) == (12, 11, 1)


def test_many_small_spill_files_give_the_same_merge_as_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    custom_ids = ids(300)
    mixed = [
        succeeded(c) if i % 3 else http_failure(c, 400, "invalid_value")
        for i, c in enumerate(custom_ids)
        if i % 7
    ]
    random.Random(11).shuffle(mixed)
    loaded: list[int] = []
    real_load = results._load

    def counting_load(spill: Any) -> dict[int, bytes]:
        records = real_load(spill)
        loaded.append(len(records))
        return records

    monkeypatch.setattr(results, "_load", counting_load)

    one = merge([custom_ids[:120], custom_ids[120:]], [mixed[:100], mixed[100:]], tmp_path)
    spill_files_for_one = len(loaded)
    loaded.clear()
    # One byte per spill file: more ranges than may be open at once, so they are split again.
    many = merge(
        [custom_ids[:120], custom_ids[120:]], [mixed[:100], mixed[100:]], tmp_path, bucket_bytes=1
    )

    assert spill_files_for_one == 1
    assert len(loaded) == 300
    assert many == one
    assert one[0].total == 300
    assert one[0].unfinished == len(range(0, 300, 7))


def test_a_success_is_preferred_over_an_error_for_one_request(tmp_path: Path) -> None:
    first_error = [http_failure("a", 500, None), never_ran("b", "batch_expired")]
    then_success = [succeeded("a"), succeeded("b"), succeeded("c")]
    late_error = [http_failure("c", 500, None), never_ran("c", "batch_expired")]

    summary, lines, unfinished = merge(
        [["a", "b", "c"]], [first_error, then_success, late_error], tmp_path, bucket_bytes=1
    )

    assert [line["status"] for line in lines] == ["succeeded"] * 3
    assert [line["response"] for line in lines] == [{"answer": c} for c in "abc"]
    assert summary == MergeSummary(3, 3, 0, 0, {})
    assert unfinished == b""


def test_a_failure_is_preferred_over_an_expiry(tmp_path: Path) -> None:
    files = [[never_ran("a", "batch_expired")], [http_failure("a", 400, "bad")]]

    summary, lines, unfinished = merge([["a"]], files, tmp_path)

    assert lines[0]["status"] == "failed"
    assert summary == MergeSummary(1, 0, 1, 0, {"bad": 1})
    assert unfinished == b""


def test_results_that_cannot_be_placed_are_counted_and_listed_with_reasons(tmp_path: Path) -> None:
    stray = jsonl([succeeded("not-in-the-input"), succeeded("a"), {"no": "custom_id"}])
    garbage = b"not json\n\n[1, 2]\n" + b"{" * 100 + b"\n"

    summary, lines, unfinished = merge([["a", "b"]], [stray + garbage], tmp_path)

    # An unreadable line of an expired batch may be b's: b may have run, so it is not resent.
    assert [line["status"] for line in lines] == ["succeeded", "unplaced"]
    assert lines[1]["error"]["code"] == "missing_beside_unreadable_results"
    assert unfinished == b""
    assert summary.unmatched_results == 1
    assert summary.unreadable_results == 4
    assert summary.total == 2
    assert (summary.unplaced, summary.unplaced_by_reason) == (
        1,
        {"missing_beside_unreadable_results": 1},
    )
    assert [(r["reason"], r["line"], r["custom_id"]) for r in summary.unplaced_results] == [
        ("unknown_custom_id", 1, "not-in-the-input"),
        ("unreadable_result_line", 3, None),
        ("unreadable_result_line", 4, None),
        ("unreadable_result_line", 6, None),
        ("unreadable_result_line", 7, None),
    ]


def test_a_completed_batch_missing_a_request_leaves_it_unplaced_never_unfinished(
    tmp_path: Path,
) -> None:
    summary, lines, unfinished = merge(
        [["a", "b", "c"]], [[succeeded("a"), succeeded("c")]], tmp_path, batch_status="completed"
    )

    assert lines[1] == {
        "line": 2,
        "custom_id": "b",
        "status": "unplaced",
        "status_code": None,
        "response": None,
        "error": {"code": "missing_from_results", "message": lines[1]["error"]["message"]},
    }
    assert unfinished == b""  # never sent again: it may have run, and been paid for
    assert (summary.unfinished, summary.unplaced) == (0, 1)
    assert summary.unplaced_by_reason == {"missing_from_results": 1}


def test_an_unreadable_line_taints_only_its_own_part(tmp_path: Path) -> None:
    files = [
        ResultFile(Opener(jsonl([succeeded("a-0")]) + b"not json\n"), part=0),
        ResultFile(Opener(jsonl([succeeded("b-0")])), part=1),
    ]

    _, lines, unfinished = merge([ids(2, "a"), ids(2, "b")], files, tmp_path)

    assert [line["status"] for line in lines] == [
        "succeeded", "unplaced", "succeeded", "unfinished",
    ]  # fmt: skip
    assert unfinished == jsonl([request("b-1")])


def test_the_requests_of_a_failed_batch_are_failed_unless_it_can_be_retried(
    tmp_path: Path,
) -> None:
    parts = [
        PartInput(Opener(jsonl([request("a")])), "failed", "invalid_model"),
        PartInput(Opener(jsonl([request("b")])), "failed", "token_limit_exceeded"),
        PartInput(Opener(jsonl([request("c")])), "completed"),
    ]
    merged, unfinished, not_succeeded = io.BytesIO(), io.BytesIO(), io.BytesIO()

    summary = merge_in_input_order(
        parts, [Opener(jsonl([succeeded("c")]))], merged, unfinished,
        workdir=tmp_path, not_succeeded=not_succeeded,
    )  # fmt: skip

    lines = [json.loads(line) for line in merged.getvalue().splitlines()]
    assert [line["status"] for line in lines] == ["failed", "unfinished", "succeeded"]
    assert lines[0]["error"]["code"] == "invalid_model"
    assert lines[1]["error"]["code"] == "token_limit_exceeded"
    assert summary.failed_by_code == {"invalid_model": 1}
    assert unfinished.getvalue() == jsonl([request("b")])  # it never ran: it may go again
    assert not_succeeded.getvalue() == jsonl([request("a"), request("b")])


def test_not_succeeded_holds_every_request_that_did_not_succeed_in_input_order(
    tmp_path: Path,
) -> None:
    custom_ids = ["ok", "bad", "expired", "gone"]
    results = [
        succeeded("ok"),
        http_failure("bad", 400, "x"),
        never_ran("expired", "batch_expired"),
    ]
    inputs = [PartInput(Opener(jsonl([request(c) for c in custom_ids])), "completed")]
    not_succeeded = io.BytesIO()

    summary = merge_in_input_order(
        inputs, [Opener(jsonl(results))], io.BytesIO(), io.BytesIO(),
        workdir=tmp_path, not_succeeded=not_succeeded,
    )  # fmt: skip

    assert not_succeeded.getvalue() == jsonl([request(c) for c in ("bad", "expired", "gone")])
    assert (summary.failed, summary.unfinished, summary.unplaced) == (1, 1, 1)


def test_a_request_missing_from_a_completed_follow_up_is_not_sent_a_third_time(
    tmp_path: Path,
) -> None:
    round_zero = ResultFile(Opener(jsonl([succeeded("a")])), part=0)
    # Round 1 held b and c; it completed, c's result came back and b's did not.
    round_one = ResultFile(Opener(jsonl([succeeded("c")])), round=1)
    rounds = [FollowUpRound(not_run=False)]

    _, lines, unfinished = merge(
        [["a", "b", "c"]], [round_zero, round_one], tmp_path, follow_up_rounds=rounds
    )

    assert [line["status"] for line in lines] == ["succeeded", "unplaced", "succeeded"]
    assert lines[1]["error"]["code"] == "missing_from_results"
    assert unfinished == b""


def test_a_request_a_follow_up_reports_as_not_run_stays_unfinished(tmp_path: Path) -> None:
    def files() -> list[ResultFile]:
        return [
            ResultFile(Opener(jsonl([never_ran("b", "batch_expired")])), part=0),
            ResultFile(Opener(jsonl([never_ran("b", "batch_expired")])), round=1),
        ]

    rounds = [FollowUpRound(not_run=True), FollowUpRound(not_run=False)]

    _, lines, unfinished = merge([["b", "c"]], files(), tmp_path, follow_up_rounds=rounds[:1])
    assert [line["status"] for line in lines] == ["unfinished", "unfinished"]
    assert unfinished == jsonl([request("b"), request("c")])

    # A second round that completed without a word about them: they may have run.
    _, lines, unfinished = merge([["b", "c"]], files(), tmp_path, follow_up_rounds=rounds)
    assert [line["status"] for line in lines] == ["unplaced", "unplaced"]
    assert unfinished == b""


def long_result(custom_id: str, size: int) -> dict[str, Any]:
    """An embeddings result of about `size` bytes."""
    vectors = [[round(0.001 * (i + j), 6) for j in range(100)] for i in range(size // 900 + 1)]
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    body = {"object": "list", "data": data, "model": "m", "usage": {"total_tokens": 3}}
    return succeeded(custom_id) | {
        "response": {"status_code": 200, "request_id": "r", "body": body}
    }


def test_a_result_line_over_the_limit_is_streamed_and_merged_as_if_read_whole(
    tmp_path: Path,
) -> None:
    huge = long_result("a", 50_000)
    failed = http_failure("c", 400, "bad")
    failed["response"]["body"]["padding"] = "z" * 5000
    results = [[huge, succeeded("b"), failed]]

    streamed = merge([["a", "b", "c"]], results, tmp_path, max_result_line_bytes=1000)
    whole = merge([["a", "b", "c"]], results, tmp_path)

    assert streamed == whole
    assert streamed[1][0]["response"] == huge["response"]["body"]
    assert streamed[1][2]["error"]["code"] == "bad"
    assert list(tmp_path.iterdir()) == []  # the bodies' own files went with the spill files


def test_a_long_line_is_placed_whatever_the_order_of_its_keys(tmp_path: Path) -> None:
    huge = long_result("a", 20_000)
    reordered = {"response": huge["response"], "error": None, "custom_id": "a", "id": "x"}

    _, lines, _ = merge([["a"]], [[reordered]], tmp_path, max_result_line_bytes=1000)

    assert lines[0]["status"] == "succeeded"
    assert lines[0]["response"] == huge["response"]["body"]


def test_long_lines_that_cannot_be_read_are_unplaced_with_reasons(tmp_path: Path) -> None:
    whole = json.dumps(long_result("a", 20_000)).encode()
    cut_short = whole[: len(whole) // 2] + b"\n"  # its custom_id was read, its end never came
    no_id = json.dumps(long_result("b", 20_000) | {"custom_id": 7}).encode() + b"\n"
    stranger = json.dumps(long_result("zzz", 20_000)).encode() + b"\n"
    file = ResultFile(Opener(cut_short + no_id + stranger), part=0)

    summary, lines, unfinished = merge(
        [["a", "b"]], [file], tmp_path, batch_status="completed", max_result_line_bytes=1000
    )

    assert [line["status"] for line in lines] == ["unplaced", "unplaced"]
    assert lines[0]["error"]["code"] == "unreadable_result_line"
    assert lines[1]["error"]["code"] == "missing_beside_unreadable_results"
    assert unfinished == b""
    assert [(r["reason"], r["line"]) for r in summary.unplaced_results] == [
        ("unreadable_result_line", 2),
        ("unknown_custom_id", 3),
    ]


def test_text_survives_the_round_trip_even_a_lone_surrogate(tmp_path: Path) -> None:
    accented = succeeded("a") | {"response": {"status_code": 200, "body": {"text": "naïve — 日本"}}}
    # JSON may escape half a surrogate pair, which no UTF-8 byte sequence can encode.
    lone = b'{"custom_id": "b", "response": {"status_code": 200, "body": {"t": "\\ud800"}}}\n'

    _, lines, _ = merge([["a", "b"]], [jsonl([accented]) + lone], tmp_path)

    assert lines[0]["response"] == {"text": "naïve — 日本"}
    assert lines[1]["response"] == {"t": "\ud800"}


def test_inputs_are_opened_twice_and_results_once(tmp_path: Path) -> None:
    inputs = [Opener(jsonl([request("a")])), Opener(jsonl([request("b")]))]
    outputs = [Opener(jsonl([succeeded("b")])), Opener(jsonl([succeeded("a")]))]

    merge_in_input_order(inputs, outputs, io.BytesIO(), io.BytesIO(), workdir=tmp_path)

    assert [opener.opened for opener in inputs] == [2, 2]
    assert [opener.opened for opener in outputs] == [1, 1]


def test_a_repeated_custom_id_in_the_inputs_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="line 3 repeats the custom_id of line 1"):
        merge([["a", "b"], ["a"]], [], tmp_path)


def test_a_job_with_no_requests_writes_nothing(tmp_path: Path) -> None:
    summary, lines, unfinished = merge([[]], [], tmp_path)

    assert summary == MergeSummary(0, 0, 0, 0, {})
    assert (lines, unfinished) == ([], b"")


def test_spill_files_are_removed_after_a_merge(tmp_path: Path) -> None:
    output = [succeeded(custom_id) for custom_id in ids(50)]

    merge([ids(50)], [output], tmp_path, bucket_bytes=100)

    assert list(tmp_path.iterdir()) == []


def test_spill_files_are_removed_when_a_result_stream_fails(tmp_path: Path) -> None:
    class Broken(io.BytesIO):
        def read(self, size: int | None = -1, /) -> bytes:
            if self.tell() > 0:
                raise OSError("connection reset")
            return super().read(min(size or 0, 20))

    data = jsonl([succeeded(custom_id) for custom_id in ids(10)])
    opener: Callable[[], Readable] = lambda: Broken(data)  # noqa: E731
    inputs = [Opener(jsonl([request(custom_id) for custom_id in ids(10)]))]

    with pytest.raises(OSError, match="connection reset"):
        merge_in_input_order(inputs, [opener], io.BytesIO(), io.BytesIO(), workdir=tmp_path)

    assert list(tmp_path.iterdir()) == []


def test_a_duplicates_not_run_lines_say_nothing_of_its_parts_own_batch(tmp_path: Path) -> None:
    """A cancelled duplicate of a completed part reports `batch_cancelled` for every request;
    a request missing from the part's own files may still have run there, so it stays
    unplaced, and what the duplicate did run counts."""
    own = ResultFile(Opener(jsonl([succeeded("a")])), part=0)
    duplicate = ResultFile(
        Opener(jsonl([never_ran("a", "batch_cancelled"), never_ran("b", "batch_cancelled"),
                      succeeded("c")])),
        part=0,
        duplicate=True,
    )  # fmt: skip

    summary, lines, unfinished = merge(
        [["a", "b", "c"]], [own, duplicate], tmp_path, batch_status="completed"
    )

    assert [line["status"] for line in lines] == ["succeeded", "unplaced", "succeeded"]
    assert (summary.unfinished, unfinished) == (0, b"")
