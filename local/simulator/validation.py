"""The checks OpenAI runs on a batch input file while the batch is `validating`.

The file is read once, line by line, in the background from the moment the batch is created;
the result only becomes visible when the simulated validation phase ends (as `errors` on a
failed batch).
Error codes follow the ones OpenAI reports in `batch.errors.data[].code`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .body_rules import body_problems
from .lines import LineUsage
from .outputs import DEFAULT_MODELS, estimate_usage

MAX_REQUESTS = 50_000
MAX_EMBEDDING_INPUTS = 50_000
MAX_INPUT_BYTES = 200 * 1024 * 1024
MAX_REPORTED_ERRORS = 1_000  # keep a pathological file from producing a huge batch object


@dataclass(slots=True)
class RequestLine:
    custom_id: str
    offset: int  # byte offset of the line in the input file, to re-read its body later
    length: int
    usage: LineUsage


@dataclass
class InputScan:
    lines: list[RequestLine] = field(default_factory=list)
    model: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passes(self) -> bool:
        return not self.errors

    def reject(
        self, code: str, message: str, line: int | None = None, param: str | None = None
    ) -> None:
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append({"code": code, "message": message, "param": param, "line": line})


def scan_input(path: Path, endpoint: str) -> InputScan:
    scan = InputScan()
    size = path.stat().st_size
    if size > MAX_INPUT_BYTES:
        scan.reject(
            "file_too_large",
            f"The batch input file is larger than the {MAX_INPUT_BYTES} maximum. "
            "Please try again with a smaller batch.",
        )
        return scan

    seen: set[str] = set()
    embedding_inputs = 0
    offset = 0
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            start, offset = offset, offset + len(raw)
            if not raw.strip():
                continue
            if len(scan.lines) >= MAX_REQUESTS:
                scan.reject(
                    "too_many_tasks",
                    f"The batch input file contains more than the maximum of {MAX_REQUESTS:,} "
                    "requests. Please split it into smaller batches.",
                )
                return scan
            request = _check_line(scan, raw, number, endpoint, seen)
            if request is None:
                continue
            custom_id, body = request
            usage = estimate_usage(endpoint, body, len(raw))
            embedding_inputs += usage.inputs if endpoint == "/v1/embeddings" else 0
            scan.lines.append(RequestLine(custom_id, start, len(raw), usage))

    if not scan.lines and not scan.errors:
        scan.reject("empty_file", "The batch input file is empty.")
    if embedding_inputs > MAX_EMBEDDING_INPUTS:
        scan.reject(
            "too_many_tasks",
            f"The batch contains {embedding_inputs:,} embedding inputs, more than the maximum "
            f"of {MAX_EMBEDDING_INPUTS:,} embedding inputs across all requests in a batch.",
        )
    return scan


def _check_line(
    scan: InputScan, raw: bytes, number: int, endpoint: str, seen: set[str]
) -> tuple[str, dict[str, Any]] | None:
    """Validate one request line; record its errors and return (custom_id, body) if usable."""
    request = _parse_request(scan, raw, number)
    if request is None:
        return None
    custom_id, body = request["custom_id"], request["body"]
    routed = _check_routing(scan, request, number, endpoint)
    unique = custom_id not in seen
    seen.add(custom_id)
    if not unique:
        scan.reject(
            "duplicate_custom_id",
            f"The custom_id {custom_id!r} is a duplicate of another request. The custom_id "
            "parameter must be unique for each request in a batch.",
            number,
            "custom_id",
        )
    single_model = _check_model(scan, body, number, endpoint)
    sound_body = _check_body(scan, body, number, endpoint)
    return (custom_id, body) if routed and unique and single_model and sound_body else None


def _parse_request(scan: InputScan, raw: bytes, number: int) -> dict[str, Any] | None:
    try:
        request = json.loads(raw)
    except ValueError:
        request = None
    if not isinstance(request, dict):
        scan.reject("invalid_json_line", "This line is not parseable as valid JSON.", number)
        return None
    for name, kind in (("custom_id", str), ("body", dict)):
        if not isinstance(request.get(name), kind):
            scan.reject(
                "missing_required_parameter",
                f"Missing required parameter: '{name}'.",
                number,
                name,
            )
            return None
    return request


def _check_routing(scan: InputScan, request: dict[str, Any], number: int, endpoint: str) -> bool:
    method, url = request.get("method"), request.get("url")
    if method != "POST":
        scan.reject(
            "invalid_method",
            f"The method {method!r} is not supported. Batch requests must use POST.",
            number,
            "method",
        )
    if url != endpoint:
        scan.reject(
            "url_mismatch",
            f"The url {url!r} does not match the batch endpoint {endpoint!r}. Every request in "
            "a batch must use the batch's endpoint.",
            number,
            "url",
        )
    return method == "POST" and url == endpoint


def _check_model(scan: InputScan, body: dict[str, Any], number: int, endpoint: str) -> bool:
    model = body.get("model")
    if model is None:
        model = DEFAULT_MODELS.get(endpoint)
    if not isinstance(model, str) or not model:
        scan.reject(
            "missing_required_parameter",
            "Missing required parameter: 'model'.",
            number,
            "body.model",
        )
        return False
    if scan.model is None:
        scan.model = model
    if model != scan.model:
        scan.reject(
            "model_mismatch",
            f"The model {model!r} differs from the model {scan.model!r} used by earlier "
            "requests. A batch can only include requests for a single model.",
            number,
            "body.model",
        )
        return False
    return True


def _check_body(scan: InputScan, body: dict[str, Any], number: int, endpoint: str) -> bool:
    problems = body_problems(endpoint, body)
    for problem in problems:
        scan.reject(problem.code, problem.message, number, f"body.{problem.param}")
    return not problems
