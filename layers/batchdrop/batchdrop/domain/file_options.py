"""What the dropped object's S3 user-defined metadata says: pairs for its batches, and options.

Every `x-amz-meta-<key>` pair becomes a pair of each of the job's batches' metadata, under the
same key. Keys under `batchdrop-` are batchdrop's own per-file options (the expiry overrides)
and are never forwarded. S3 carries metadata as ASCII; a non-ASCII value arrives as an RFC 2047
encoded word (`=?UTF-8?B?...?=`, as S3 itself writes one), decoded here before it is forwarded.
OpenAI's limits (16 pairs, keys up to 64 characters, values up to 512) count batchdrop's own
bookkeeping pairs too, so a file whose metadata breaks them is refused before any upload.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from typing import Any

# OpenAI's metadata limits (batches.create `metadata`).
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512
# The pairs batchdrop's bookkeeping puts on every batch (see jobs/launch.batch_metadata).
BOOKKEEPING_KEYS = frozenset({"submission_token", "batchdrop_part"})
MAX_USER_PAIRS = MAX_METADATA_PAIRS - len(BOOKKEEPING_KEYS)

# OpenAI's bounds on `expires_after` and `output_expires_after`, in seconds (1 hour to 30 days).
MIN_EXPIRY_SECONDS = 3600
MAX_EXPIRY_SECONDS = 2_592_000

OPTION_PREFIX = "batchdrop-"
INPUT_EXPIRY_KEY = "batchdrop-input-expiry-seconds"
OUTPUT_EXPIRY_KEY = "batchdrop-output-expiry-seconds"
OPTION_KEYS = frozenset({INPUT_EXPIRY_KEY, OUTPUT_EXPIRY_KEY})


@dataclass(frozen=True, slots=True)
class FileOptions:
    """The pairs to forward, and the per-file expiry overrides (None: the deployment's)."""

    metadata: dict[str, str] = field(default_factory=dict)
    input_expiry_seconds: int | None = None
    output_expiry_seconds: int | None = None


def encode_value(value: str) -> str:
    """A value as S3 metadata can carry it: ASCII as it is, anything else one RFC 2047 word."""
    if value.isascii():
        return value
    return str(make_header([(value.encode(), "utf-8")]).encode(maxlinelen=10_000))


def decode_value(value: str) -> str:
    """An S3 metadata value as the user wrote it: RFC 2047 encoded words decoded."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (HeaderParseError, LookupError, UnicodeDecodeError):
        return value  # not an encoded word after all: forwarded as it came


def read_options(raw: Mapping[str, str]) -> FileOptions | list[dict[str, Any]]:
    """The options S3 metadata `raw` sets, or the problems that refuse the file."""
    pairs = {key.lower(): decode_value(value) for key, value in raw.items()}
    forwarded = {k: v for k, v in pairs.items() if not k.startswith(OPTION_PREFIX)}
    problems = [*_option_problems(pairs), *_metadata_problems(forwarded)]
    if problems:
        return problems
    return FileOptions(
        metadata=dict(sorted(forwarded.items())),
        input_expiry_seconds=_int_or_none(pairs.get(INPUT_EXPIRY_KEY)),
        output_expiry_seconds=_int_or_none(pairs.get(OUTPUT_EXPIRY_KEY)),
    )


def refusal_report(problems: list[dict[str, Any]]) -> dict[str, Any]:
    """The rejection report of a file refused for its metadata, in validation's report form."""
    counts: dict[str, int] = {}
    for problem in problems:
        counts[problem["code"]] = counts.get(problem["code"], 0) + 1
    return {
        "ok": False,
        "summary": f"Rejected: {problems[0]['message']}. Nothing was submitted.",
        "problem_count": len(problems),
        "counts_by_code": counts,
        "truncated": False,
        "problems": problems,
    }


def _metadata_problems(forwarded: Mapping[str, str]) -> list[dict[str, Any]]:
    problems: list[dict[str, Any]] = []
    if len(forwarded) > MAX_USER_PAIRS:
        problems.append(
            _problem(
                "metadata_too_many_pairs",
                f"the file's S3 metadata has {len(forwarded)} pairs; OpenAI allows "
                f"{MAX_METADATA_PAIRS} pairs per batch and batchdrop uses {len(BOOKKEEPING_KEYS)}, "
                f"so at most {MAX_USER_PAIRS} may be forwarded",
            )
        )
    for key, value in forwarded.items():
        if key in BOOKKEEPING_KEYS:
            problems.append(
                _problem(
                    "metadata_key_reserved",
                    f"metadata key {key!r} is batchdrop's own; choose another name",
                )
            )
        if len(key) > MAX_METADATA_KEY_CHARS:
            problems.append(
                _problem(
                    "metadata_key_too_long",
                    f"metadata key {key[:20]!r}... is {len(key)} characters; OpenAI allows "
                    f"{MAX_METADATA_KEY_CHARS}",
                )
            )
        if len(value) > MAX_METADATA_VALUE_CHARS:
            problems.append(
                _problem(
                    "metadata_value_too_long",
                    f"the value of metadata key {key!r} is {len(value)} characters; OpenAI "
                    f"allows {MAX_METADATA_VALUE_CHARS}",
                )
            )
    return problems


def _option_problems(pairs: Mapping[str, str]) -> list[dict[str, Any]]:
    problems: list[dict[str, Any]] = []
    for key, value in pairs.items():
        if not key.startswith(OPTION_PREFIX):
            continue
        if key not in OPTION_KEYS:
            known = ", ".join(sorted(OPTION_KEYS))
            problems.append(
                _problem(
                    "metadata_option_unknown",
                    f"metadata key {key!r} is not a batchdrop option (known: {known})",
                )
            )
        elif not _valid_expiry(value):
            problems.append(
                _problem(
                    "metadata_option_invalid",
                    f"metadata {key}={value[:20]!r} must be a whole number of seconds from "
                    f"{MIN_EXPIRY_SECONDS:,} to {MAX_EXPIRY_SECONDS:,}",
                )
            )
    return problems


def _valid_expiry(value: str) -> bool:
    stripped = value.strip()
    return (
        stripped.isascii()
        and stripped.isdigit()
        and MIN_EXPIRY_SECONDS <= int(stripped) <= MAX_EXPIRY_SECONDS
    )


def _int_or_none(value: str | None) -> int | None:
    return None if value is None else int(value.strip())


def _problem(code: str, message: str) -> dict[str, Any]:
    # A file-wide problem: reports give it line 0, before the first line.
    return {"line": 0, "code": code, "message": message}
