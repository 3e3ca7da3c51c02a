"""Tests for the validation rules, the report and the split plan it makes."""

import io
import itertools
import json
import random
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from batchdrop.domain.limits import MAX_LISTED_PROBLEMS, Limits
from batchdrop.domain.lines import UTF8_BOM, iter_lines, normalised_lines
from batchdrop.domain.split_plan import Part
from batchdrop.domain.validation import ValidationReport, Validator, validate_stream

CHAT = "/v1/chat/completions"
KNOWN_CODES = {
    "invalid_utf8",
    "invalid_json",
    "not_an_object",
    "missing_custom_id",
    "custom_id_not_string",
    "empty_custom_id",
    "duplicate_custom_id",
    "invalid_method",
    "unsupported_url",
    "mixed_url",
    "body_not_object",
    "missing_model",
    "mixed_model",
    "line_too_long",
    "blank_line",
    "empty_file",
}


def req(custom_id: object = "r1", *, drop: tuple[str, ...] = (), **fields: Any) -> bytes:
    """One request line (no newline); `fields` override the defaults, `drop` removes keys."""
    request: dict[str, Any] = {
        "custom_id": custom_id,
        "method": "POST",
        "url": CHAT,
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    }
    request.update(fields)
    for key in drop:
        request.pop(key)
    return json.dumps(request).encode()


def jsonl(*lines: bytes) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def requests(count: int, *, pad: int = 0) -> list[bytes]:
    return [req(f"r{i}", body={"model": "m", "pad": "p" * pad}) for i in range(count)]


def seeded(seed: int) -> random.Random:
    return random.Random(seed)


def validate(data: bytes, **limits: int) -> ValidationReport:
    return validate_stream(io.BytesIO(data), Limits(**limits), read_size=7)


def found(report: ValidationReport) -> list[tuple[int, str]]:
    return [(problem.line, problem.code) for problem in report.problems]


GOOD = req("a")
CORPUS = [
    pytest.param(b"", {}, [(1, "empty_file")], id="empty_file"),
    pytest.param(UTF8_BOM, {}, [(1, "empty_file")], id="bom_only"),
    pytest.param(UTF8_BOM + b"\r\n\n", {}, [(1, "empty_file")], id="bom_and_newlines_only"),
    pytest.param(b" \n\t\n\n", {}, [(1, "empty_file")], id="whitespace_only"),
    pytest.param(UTF8_BOM + jsonl(GOOD, req("b")), {}, [], id="bom_then_valid"),
    pytest.param(GOOD + b"\r\n" + req("b") + b"\r\n", {}, [], id="crlf_endings"),
    pytest.param(GOOD + b"\n" + req("b"), {}, [], id="no_final_newline"),
    pytest.param(jsonl(GOOD, b"", b"  ", b"\r") + b" ", {}, [], id="trailing_whitespace_lines"),
    pytest.param(
        jsonl(GOOD, req("b", pad="x" * 200)),
        {"max_line_bytes": 150},
        [(2, "line_too_long")],
        id="line_too_long",
    ),
    pytest.param(
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        {},
        [(1, "invalid_utf8"), (2, "invalid_json"), (3, "invalid_json")],
        id="binary_garbage",
    ),
    pytest.param(
        jsonl(GOOD, b'{"custom_id": "\xc3\x28"}'), {}, [(2, "invalid_utf8")], id="invalid_utf8"
    ),
    pytest.param(jsonl(GOOD, b'{"custom_id": "b",'), {}, [(2, "invalid_json")], id="invalid_json"),
    pytest.param(
        jsonl(GOOD, b'{"custom_id": NaN}'), {}, [(2, "invalid_json")], id="nan_is_not_json"
    ),
    pytest.param(jsonl(b"[" * 100_000, GOOD), {}, [(1, "invalid_json")], id="nested_too_deeply"),
    pytest.param(
        jsonl(GOOD, UTF8_BOM + req("b")), {}, [(2, "invalid_json")], id="bom_not_at_file_start"
    ),
    pytest.param(jsonl(GOOD, b"[1, 2]"), {}, [(2, "not_an_object")], id="json_array_line"),
    pytest.param(jsonl(b'"text"', GOOD), {}, [(1, "not_an_object")], id="json_string_line"),
    pytest.param(
        jsonl(GOOD, req(drop=("custom_id",))),
        {},
        [(2, "missing_custom_id")],
        id="missing_custom_id",
    ),
    pytest.param(jsonl(GOOD, req(7)), {}, [(2, "custom_id_not_string")], id="numeric_custom_id"),
    pytest.param(jsonl(req(None), GOOD), {}, [(1, "custom_id_not_string")], id="null_custom_id"),
    pytest.param(jsonl(GOOD, req("")), {}, [(2, "empty_custom_id")], id="empty_custom_id"),
    pytest.param(
        jsonl(GOOD, req("b"), req("a")), {}, [(3, "duplicate_custom_id")], id="duplicate_custom_id"
    ),
    pytest.param(
        jsonl(b'{"custom_id": "\\ud800"}', b'{"custom_id": "\\ud800"}'),
        {},
        [
            (1, "invalid_method"),
            (1, "unsupported_url"),
            (1, "body_not_object"),
            (2, "duplicate_custom_id"),
            (2, "invalid_method"),
            (2, "unsupported_url"),
            (2, "body_not_object"),
        ],
        id="duplicate_lone_surrogate_id",
    ),
    pytest.param(jsonl(GOOD, req("b", method="GET")), {}, [(2, "invalid_method")], id="get_method"),
    pytest.param(
        jsonl(GOOD, req("b", drop=("method",))), {}, [(2, "invalid_method")], id="missing_method"
    ),
    pytest.param(
        jsonl(GOOD, req("b", url="/v1/chat/completion")),
        {},
        [(2, "unsupported_url")],
        id="unsupported_url",
    ),
    pytest.param(
        jsonl(GOOD, req("b", url="/v1/embeddings")), {}, [(2, "mixed_url")], id="mixed_url"
    ),
    pytest.param(
        jsonl(req("a", url="/v2/x"), req("b", url="/v1/embeddings"), req("c")),
        {},
        [(1, "unsupported_url"), (3, "mixed_url")],
        id="first_supported_url_sets_it",
    ),
    pytest.param(
        jsonl(GOOD, req("b", body="gpt-4o")), {}, [(2, "body_not_object")], id="body_not_object"
    ),
    pytest.param(
        jsonl(GOOD, req("b", drop=("body",))), {}, [(2, "body_not_object")], id="missing_body"
    ),
    pytest.param(
        jsonl(GOOD, req("b", body={"messages": []})), {}, [(2, "missing_model")], id="missing_model"
    ),
    pytest.param(
        jsonl(GOOD, req("b", body={"model": 4})), {}, [(2, "missing_model")], id="model_not_string"
    ),
    pytest.param(
        jsonl(GOOD, req("b", body={"model": "gpt-4o"})), {}, [(2, "mixed_model")], id="mixed_model"
    ),
    pytest.param(jsonl(GOOD, b"", req("b")), {}, [(2, "blank_line")], id="blank_line_in_middle"),
    pytest.param(
        jsonl(GOOD, b" \r", b"\t", req("b")),
        {},
        [(2, "blank_line"), (3, "blank_line")],
        id="whitespace_crlf_line_in_middle",
    ),
    pytest.param(jsonl(b"", GOOD), {}, [(1, "blank_line")], id="blank_line_at_start"),
    pytest.param(
        jsonl(b'{"method": "GET", "url": 3, "body": []}'),
        {},
        [
            (1, "missing_custom_id"),
            (1, "invalid_method"),
            (1, "unsupported_url"),
            (1, "body_not_object"),
        ],
        id="every_field_wrong_on_one_line",
    ),
]


@pytest.mark.parametrize(("data", "limits", "expected"), CORPUS)
def test_corpus(data: bytes, limits: dict[str, int], expected: list[tuple[int, str]]) -> None:
    report = validate(data, **limits)
    assert found(report) == expected
    assert report.problem_count == len(expected)
    assert report.ok is (not expected)
    assert bool(report.parts) is report.ok
    for problem in report.problems:
        assert problem.message.startswith(f"line {problem.line}: ")


def test_duplicate_custom_id_message_names_the_first_line() -> None:
    report = validate(jsonl(req("req-1"), req("req-2"), req("req-1")))
    assert report.problems[0].message == "line 3: custom_id 'req-1' was already used on line 1"


def test_messages_quote_long_values_briefly() -> None:
    long_id = "a" * 5000
    report = validate(jsonl(req(long_id), req(long_id, body={"model": "b" * 5000})))
    assert found(report) == [(2, "duplicate_custom_id"), (2, "mixed_model")]
    assert all(len(problem.message) < 300 for problem in report.problems)


def test_line_too_long_message_gives_size_and_limit() -> None:
    report = validate(jsonl(b"x" * 2000), max_line_bytes=1000)
    assert report.problems[0].message == (
        "line 1: 2,001 bytes long; a request line may be at most 1,000 bytes"
    )
    assert report.request_count == 1


def test_report_lists_the_first_problems_and_counts_them_all() -> None:
    bad = [b"not json"] * 120 + [req(7)] * 30
    report = validate(jsonl(GOOD, *bad))
    assert report.problem_count == 150
    assert report.counts_by_code == {"invalid_json": 120, "custom_id_not_string": 30}
    assert len(report.problems) == MAX_LISTED_PROBLEMS
    assert [problem.line for problem in report.problems] == list(range(2, 102))
    assert report.truncated
    as_dict = report.to_dict()
    assert as_dict["truncated"] is True
    assert as_dict["problem_count"] == 150
    assert len(as_dict["problems"]) == MAX_LISTED_PROBLEMS
    assert "150 problems" in as_dict["summary"]
    assert as_dict["batches"] == []
    json.dumps(as_dict)


def test_listed_problem_cap_is_configurable_and_not_truncated_when_all_fit() -> None:
    data = jsonl(b"[]", b"[]", b"[]")
    assert len(validate(data, max_listed_problems=2).problems) == 2
    full = validate(data)
    assert not full.truncated
    assert full.to_dict()["truncated"] is False


def test_valid_report_describes_the_file_and_its_batches() -> None:
    data = jsonl(*requests(5))
    report = validate(data, max_requests=2)
    assert report.ok
    assert (report.request_count, report.raw_bytes) == (5, len(data))
    assert (report.endpoint, report.model) == (CHAT, "m")
    as_dict = report.to_dict()
    assert as_dict["summary"] == (
        f"Valid: 5 requests for model 'm' on {CHAT} ({len(data):,} bytes), to be sent as 3 batches."
    )
    assert [batch["line_count"] for batch in as_dict["batches"]] == [2, 2, 1]
    assert as_dict["problems"] == []
    assert as_dict["counts_by_code"] == {}
    json.dumps(as_dict)


def assert_plan_covers(data: bytes, parts: tuple[Part, ...], request_lines: int) -> None:
    """Parts and chunks are contiguous whole-line ranges covering every request line once."""
    assert [part.index for part in parts] == list(range(len(parts)))
    assert parts[0].start == 0
    for before, after in itertools.pairwise(parts):
        assert after.start == before.end
        assert after.first_line == before.first_line + before.line_count
    assert sum(part.line_count for part in parts) == request_lines
    for part in parts:
        assert (part.chunks[0].start, part.chunks[-1].end) == (part.start, part.end)
        for before_chunk, after_chunk in itertools.pairwise(part.chunks):
            assert after_chunk.start == before_chunk.end
        assert sum(chunk.size for chunk in part.chunks) == part.size
        assert part.start == 0 or data[part.start - 1 : part.start] == b"\n"
        assert data[part.end - 1 : part.end] == b"\n" or part.end == len(data)


def test_more_lines_than_max_requests_split_into_parts_of_whole_lines() -> None:
    data = jsonl(*requests(6))
    report = validate(data, max_requests=5)
    assert [(part.first_line, part.line_count) for part in report.parts] == [(1, 5), (6, 1)]
    assert report.parts[-1].end == len(data)
    assert_plan_covers(data, report.parts, 6)


def test_exactly_max_requests_lines_make_one_part() -> None:
    report = validate(jsonl(*requests(5)), max_requests=5)
    assert [part.line_count for part in report.parts] == [5]


def test_parts_split_when_the_next_line_would_exceed_max_batch_bytes() -> None:
    lines = requests(5, pad=50)
    line_size = len(lines[0]) + 1
    assert all(len(line) + 1 == line_size for line in lines)
    data = jsonl(*lines)
    fits_three = validate(data, max_batch_bytes=3 * line_size, max_line_bytes=line_size)
    assert [part.line_count for part in fits_three.parts] == [3, 2]
    just_under = validate(data, max_batch_bytes=3 * line_size - 1, max_line_bytes=line_size)
    assert [part.line_count for part in just_under.parts] == [2, 2, 1]
    for report in (fits_three, just_under):
        assert_plan_covers(data, report.parts, 5)
        assert all(part.size <= 3 * line_size for part in report.parts)


def test_chunks_stay_within_max_upload_part_bytes() -> None:
    lines = requests(7, pad=50)
    line_size = len(lines[0]) + 1
    data = jsonl(*lines)
    report = validate(data, max_upload_part_bytes=2 * line_size, max_line_bytes=line_size)
    [part] = report.parts
    assert [chunk.size for chunk in part.chunks] == [2 * line_size] * 3 + [line_size]
    assert_plan_covers(data, report.parts, 7)


def test_random_plans_are_greedy_and_within_every_limit() -> None:
    rng = seeded(5)
    lines = [req(f"r{i}", body={"model": "m", "p": "x" * rng.randint(0, 300)}) for i in range(300)]
    data = jsonl(*lines)
    limits = {
        "max_requests": 40,
        "max_batch_bytes": 4000,
        "max_upload_part_bytes": 1000,
        "max_line_bytes": 600,
    }
    report = validate(data, **limits)
    assert report.ok
    assert_plan_covers(data, report.parts, len(lines))
    sizes = [len(line) + 1 for line in lines]
    for part in report.parts:
        assert part.line_count <= 40
        assert part.size <= 4000
        assert all(chunk.size <= 1000 for chunk in part.chunks)
        # Greedy: the next line did not fit, so the part could not have been longer.
        next_index = part.first_line - 1 + part.line_count
        if next_index < len(lines):
            assert part.line_count == 40 or part.size + sizes[next_index] > 4000


def test_declared_sizes_equal_the_normalised_bytes_of_each_range() -> None:
    a, b, c = req("a"), req("b"), req("c")
    data = UTF8_BOM + a + b"\r\n" + b + b"\n" + c + b"\r\n\r\n  \n"
    line_size = len(a) + 1
    # One line per chunk; the first raw line also holds the BOM and a b"\r".
    report = validate(data, max_upload_part_bytes=2 * line_size - 1, max_line_bytes=line_size + 3)
    assert report.ok
    assert [len(part.chunks) for part in report.parts] == [3]
    uploaded = b""
    for part in report.parts:
        for chunk in part.chunks:
            raw_range = io.BytesIO(data[chunk.start : chunk.end])
            content = b"".join(normalised_lines(raw_range, range_start=chunk.start, read_size=3))
            assert len(content) == chunk.size
            uploaded += content
    assert uploaded == a + b"\n" + b + b"\n" + c + b"\n"
    assert report.parts[0].size == len(uploaded)
    assert report.raw_bytes == len(data)


def test_missing_final_newline_is_counted_in_the_normalised_size() -> None:
    data = req("a") + b"\n" + req("b")
    [part] = validate(data).parts
    assert (part.end, part.size) == (len(data), len(data) + 1)


def test_feeding_lines_by_hand_matches_validate_stream() -> None:
    data = jsonl(GOOD, b"[]", req("a"), *requests(4))
    validator = Validator(Limits(max_requests=3))
    for line in iter_lines(io.BytesIO(data), max_line_bytes=validator.max_line_bytes):
        validator.feed(line)
    assert validator.finish() == validate(data, max_requests=3)


def test_lines_must_be_fed_in_order() -> None:
    validator = Validator()
    lines = list(iter_lines(io.BytesIO(jsonl(GOOD, GOOD)), max_line_bytes=100))
    with pytest.raises(ValueError, match="expected line 1"):
        validator.feed(lines[1])


def test_limits_that_cannot_hold_the_longest_line_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_line_bytes"):
        Validator(Limits(max_line_bytes=100, max_upload_part_bytes=100))
    with pytest.raises(ValueError, match="max_line_bytes"):
        Validator(Limits(max_line_bytes=100, max_batch_bytes=100, max_upload_part_bytes=50))
    with pytest.raises(ValueError, match="max_requests"):
        Validator(Limits(max_requests=0))


@pytest.mark.parametrize("seed", range(30))
def test_random_bytes_give_problems_never_exceptions(seed: int) -> None:
    rng = seeded(seed)
    alphabet = bytes(range(256)) + b'{}[]":,\n\n\n' * 8
    data = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 3000)))
    report = validate(data, max_line_bytes=500)
    assert not report.ok
    assert set(report.counts_by_code) <= KNOWN_CODES
    assert sum(report.counts_by_code.values()) == report.problem_count
    json.dumps(report.to_dict())


@pytest.mark.parametrize(
    ("name", "data", "verbatim"),
    [
        ("plain", jsonl(*requests(3)), True),
        ("trailing blank lines", jsonl(*requests(3)) + b"\n\n", True),
        ("BOM", b"\xef\xbb\xbf" + jsonl(*requests(3)), False),
        ("one CRLF line", jsonl(*requests(2)) + requests(3)[2] + b"\r\n", False),
        ("no final newline", jsonl(*requests(3)).rstrip(b"\n"), False),
    ],
)
def test_verbatim_says_whether_the_raw_parts_are_what_is_uploaded(
    name: str, data: bytes, verbatim: bool
) -> None:
    report = validate_stream(io.BytesIO(data))
    assert report.ok
    assert report.verbatim is verbatim
    raw = b"".join(data[part.start : part.end] for part in report.parts)
    normalised = b"".join(
        b"".join(normalised_lines(io.BytesIO(data[p.start : p.end]), range_start=p.start))
        for p in report.parts
    )
    assert (raw == normalised) is verbatim


# --- memory that does not grow with the request count, and the per-file caps --------------------


def validate_spilling(
    data: bytes, spill_dir: Path, *, run_bytes: int = 1, read_size: int = 7, **limits: int
) -> ValidationReport:
    """validate_stream's loop, the duplicate check spilling every `run_bytes` to `spill_dir`."""
    with Validator(
        Limits(**limits), spill_dir=spill_dir, duplicate_run_bytes=run_bytes
    ) as validator:
        stream = io.BytesIO(data)
        for line in iter_lines(
            stream, max_line_bytes=validator.max_line_bytes, read_size=read_size
        ):
            validator.feed(line)
        return validator.finish()


@pytest.mark.parametrize(("data", "limits", "expected"), CORPUS)
def test_corpus_reports_the_same_when_custom_ids_spill_to_disk(
    data: bytes, limits: dict[str, int], expected: list[tuple[int, str]], tmp_path: Path
) -> None:
    report = validate_spilling(data, tmp_path, **limits)
    assert found(report) == expected
    assert report.problem_count == len(expected)
    assert list(tmp_path.iterdir()) == []


def test_duplicates_found_at_the_end_are_listed_in_line_order_among_the_rest(
    tmp_path: Path,
) -> None:
    lines = [b"not json" if n % 3 == 0 else req(f"id-{n % 50}") for n in range(300)]
    expected: list[tuple[int, str]] = []
    first: dict[bytes, int] = {}
    for number, line in enumerate(lines, start=1):
        if line == b"not json":
            expected.append((number, "invalid_json"))
        elif first.setdefault(line, number) != number:
            expected.append((number, "duplicate_custom_id"))
    data = jsonl(*lines)

    report = validate_spilling(data, tmp_path, run_bytes=300, read_size=4096)

    assert found(report) == expected[:MAX_LISTED_PROBLEMS]
    assert report.problem_count == len(expected)
    assert report.counts_by_code == {
        "invalid_json": 100,
        "duplicate_custom_id": len(expected) - 100,
    }
    duplicate = next(p for p in report.problems if p.code == "duplicate_custom_id")
    # Line 53 is n = 52, whose id-2 was first used by n = 2, on line 3.
    assert duplicate.message == "line 53: custom_id 'id-2' was already used on line 3"
    assert report == validate_stream(io.BytesIO(data))  # spilled or not, the same report


@pytest.mark.slow  # 50,000 requests validated under tracemalloc
def test_validation_memory_does_not_grow_with_the_request_count(tmp_path: Path) -> None:
    def peak_bytes(count: int) -> int:
        data = jsonl(*(req(f"request-{n}", body={"model": "m"}) for n in range(count)))
        tracemalloc.start()
        try:
            report = validate_spilling(data, tmp_path, run_bytes=256 * 1024, read_size=64 * 1024)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert report.ok
        return peak

    small, large = peak_bytes(10_000), peak_bytes(40_000)
    # A dict of every custom_id's digest would add ~130 bytes a request: ~4 MB here.
    assert large - small < 1024 * 1024


def test_a_file_over_the_request_cap_is_refused_at_the_first_request_past_it() -> None:
    report = validate(jsonl(*requests(5)), max_file_requests=3)
    assert found(report) == [(4, "too_many_requests")]
    assert report.problems[0].message == (
        "line 4: the file holds more than 3 requests, the most one file may hold; "
        "split it into several files"
    )
    assert (report.problem_count, report.request_count, report.parts) == (1, 5, ())


def test_a_file_at_the_request_cap_is_accepted() -> None:
    assert validate(jsonl(*requests(3)), max_file_requests=3).ok


def test_a_file_over_the_byte_cap_is_refused_as_a_whole() -> None:
    data = jsonl(*requests(3))
    assert validate(data, max_file_bytes=len(data)).ok
    report = validate(data, max_file_bytes=len(data) - 1)
    assert found(report) == [(1, "file_too_large")]
    assert report.problems[0].message == (
        f"line 1: the file is {len(data):,} bytes, more than the {len(data) - 1:,} bytes one "
        "file may hold; split it into several files"
    )


EMBEDDINGS = "/v1/embeddings"


def embed(custom_id: str, inputs: object) -> bytes:
    return req(custom_id, url=EMBEDDINGS, body={"model": "e", "input": inputs})


@pytest.mark.parametrize(
    ("inputs", "count"),
    [
        pytest.param("text", 1, id="a string"),
        pytest.param(["a", "b", "c"], 3, id="an array of strings"),
        pytest.param([101, 102, 103], 1, id="one token array"),
        pytest.param([[101, 102], [103]], 2, id="an array of token arrays"),
    ],
)
def test_embedding_inputs_count_as_openai_counts_them(inputs: object, count: int) -> None:
    data = jsonl(embed("a", inputs), embed("b", inputs))
    at_cap = validate(data, max_embedding_inputs=count)
    assert [part.line_count for part in at_cap.parts] == [1, 1]
    both_fit = validate(data, max_embedding_inputs=2 * count)
    assert [part.line_count for part in both_fit.parts] == [2]


def test_fifty_thousand_and_one_embedding_inputs_make_two_batches() -> None:
    lines = [embed(f"r{n}", ["x"] * 1_000) for n in range(50)] + [embed("last", "x")]
    report = validate_stream(io.BytesIO(jsonl(*lines)))
    assert report.ok
    assert [(part.first_line, part.line_count) for part in report.parts] == [(1, 50), (51, 1)]


def test_one_request_over_the_input_cap_is_a_problem() -> None:
    report = validate(jsonl(embed("a", "x"), embed("b", ["x"] * 4)), max_embedding_inputs=3)
    assert found(report) == [(2, "too_many_inputs")]
    assert report.problems[0].message == (
        "line 2: input holds 4 embedding inputs, more than the 3 one batch may hold; "
        "split it across several requests"
    )


def test_only_embeddings_count_inputs() -> None:
    lines = [
        req(f"r{n}", url="/v1/responses", body={"model": "m", "input": ["a", "b"]})
        for n in range(3)
    ]
    report = validate(jsonl(*lines), max_embedding_inputs=1)
    assert report.ok
    assert [part.line_count for part in report.parts] == [3]


# The endpoints beyond text: each one's documented batch body rules.

ENDPOINT_BODIES = {
    "/v1/responses": {"model": "gpt-5-mini", "input": "hi"},
    "/v1/chat/completions": {"model": "gpt-5-mini", "messages": [{"role": "user", "content": "x"}]},
    "/v1/embeddings": {"model": "text-embedding-3-small", "input": "hi"},
    "/v1/completions": {"model": "gpt-3.5-turbo-instruct", "prompt": "hi"},
    "/v1/moderations": {"model": "omni-moderation-latest", "input": "hi"},
    "/v1/images/generations": {"model": "gpt-image-1", "prompt": "a cat"},
    "/v1/images/edits": {
        "model": "gpt-image-1",
        "prompt": "add a hat",
        "images": [{"file_id": "file-abc"}, {"image_url": "https://example.com/a.png"}],
        "mask": {"image_url": "data:image/png;base64,iVBORw0KGgo="},
    },
    "/v1/videos": {"model": "sora-2", "prompt": "a wave", "input_reference": {"file_id": "f"}},
}


@pytest.mark.parametrize("endpoint", sorted(ENDPOINT_BODIES))
def test_each_of_the_eight_endpoints_is_accepted(endpoint: str) -> None:
    report = validate(jsonl(req("a", url=endpoint, body=ENDPOINT_BODIES[endpoint])))
    assert report.ok, report.problems
    assert report.endpoint == endpoint


@pytest.mark.parametrize(
    ("endpoint", "model"), [("/v1/moderations", "omni-moderation-latest"), ("/v1/videos", "sora-2")]
)
def test_an_endpoint_with_a_default_model_may_leave_it_out(endpoint: str, model: str) -> None:
    body = {key: value for key, value in ENDPOINT_BODIES[endpoint].items() if key != "model"}
    report = validate(jsonl(req("a", url=endpoint, body=body)))
    assert report.ok
    assert report.model == model


def lines_for(endpoint: str, *bodies: dict[str, Any]) -> bytes:
    return jsonl(*(req(f"r{n}", url=endpoint, body=body) for n, body in enumerate(bodies)))


EDIT = ENDPOINT_BODIES["/v1/images/edits"]
BODY_RULES = [
    pytest.param(
        "/v1/moderations",
        [{"model": "omni-moderation-latest"}],
        [(1, "missing_input")],
        id="moderation without input",
    ),
    pytest.param(
        "/v1/moderations",
        [{"input": "x", "stream": True}, {"input": []}],
        [(1, "stream_not_supported"), (2, "invalid_input")],
        id="moderation streamed or with an empty input",
    ),
    pytest.param(
        "/v1/images/generations",
        [{"model": "gpt-image-1"}, {"model": "gpt-image-1", "prompt": ""}],
        [(1, "missing_prompt"), (2, "missing_prompt")],
        id="generation without a prompt",
    ),
    pytest.param(
        "/v1/images/edits",
        [
            {**EDIT, "images": []},
            {**EDIT, "images": [{"file_id": "f"}] * 17},
            {**EDIT, "images": [{"file_id": "f", "image_url": "u"}]},
            {**EDIT, "images": ["file-abc"]},
            {**EDIT, "mask": {}},
            {**EDIT, "images": [{"file_id": 7}]},
        ],
        [
            (1, "invalid_images"),
            (2, "invalid_images"),
            (3, "invalid_image_reference"),
            (4, "invalid_image_reference"),
            (5, "invalid_image_reference"),
            (6, "invalid_image_reference"),
        ],
        id="edit images: 1 to 16 references of exactly one kind",
    ),
    pytest.param(
        "/v1/images/edits",
        [
            {key: value for key, value in EDIT.items() if key != "images"} | {"image": "@a.png"},
            {key: value for key, value in EDIT.items() if key != "images"},
        ],
        [(1, "multipart_image"), (2, "missing_images")],
        id="edit in multipart form, or with no image",
    ),
    pytest.param(
        "/v1/videos",
        [{"model": "sora-2"}, {"prompt": "p", "input_reference": {"image_url": ""}}],
        [(1, "missing_prompt"), (2, "invalid_image_reference")],
        id="video without a prompt or with an empty reference",
    ),
]


@pytest.mark.parametrize(("endpoint", "bodies", "expected"), BODY_RULES)
def test_body_rules_refuse_lines_openai_would_refuse(
    endpoint: str, bodies: list[dict[str, Any]], expected: list[tuple[int, str]]
) -> None:
    report = validate(lines_for(endpoint, *bodies))
    assert found(report) == expected
    assert not report.parts
    for problem in report.problems:
        assert problem.message.startswith(f"line {problem.line}: body.")


def test_the_multipart_edit_problem_says_what_to_send_instead() -> None:
    body = {"model": "gpt-image-1", "prompt": "p", "image": "@a.png"}
    (problem,) = validate(lines_for("/v1/images/edits", body)).problems
    assert problem.message == (
        "line 1: body.image is the multipart form, which a batch line cannot carry; pass "
        'body.images as [{"file_id": ...} or {"image_url": ...}] instead'
    )


def test_text_endpoints_have_no_body_rules_beyond_the_model() -> None:
    report = validate(lines_for("/v1/chat/completions", {"model": "m", "stream": True}))
    assert report.ok
