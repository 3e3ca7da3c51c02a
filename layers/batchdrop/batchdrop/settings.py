"""The functions' configuration, parsed once at cold start from the template's environment."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit, urlunsplit

from batchdrop.domain.file_options import MAX_EXPIRY_SECONDS, MIN_EXPIRY_SECONDS
from batchdrop.domain.limits import (
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_FILE_REQUESTS,
    MAX_REQUESTS_PER_BATCH,
    Limits,
)
from batchdrop.domain.model import OUTPUT_PREFIXES
from batchdrop.errors import ConfigurationError as ConfigurationError  # callers import it here

# A batch runs for up to 24 h on its input file; a week leaves room for a slow queue.
DEFAULT_INPUT_FILE_EXPIRY_SECONDS = 7 * 86_400
# The output must outlive a finish that goes to needs_attention and waits for `batchdrop retry`:
# OpenAI's longest, 30 days.
DEFAULT_OUTPUT_FILE_EXPIRY_SECONDS = MAX_EXPIRY_SECONDS


@dataclass(frozen=True, slots=True)
class Settings:
    bucket: str
    input_prefix: str
    table_name: str
    topic_arn: str
    openai_base_url: str
    api_key_secret: str
    record_retention_days: int = 90
    idempotency_table_name: str | None = None
    poll_concurrency: int = 16
    stuck_after_minutes: int = 120
    finish_attempts_before_attention: int = 5
    resubmit_unfinished: bool = False
    submit_resume_limit: int = 8
    submit_give_up_hours: int = 24
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_file_requests: int = DEFAULT_MAX_FILE_REQUESTS
    # How long OpenAI keeps uploaded input files, and each batch's output and error files.
    input_file_expiry_seconds: int = DEFAULT_INPUT_FILE_EXPIRY_SECONDS
    output_file_expiry_seconds: int = DEFAULT_OUTPUT_FILE_EXPIRY_SECONDS
    # Delete a job's files on OpenAI once its results are in S3 and its email is sent.
    delete_openai_files: bool = True

    @property
    def limits(self) -> Limits:
        """What a file is validated against: OpenAI's limits, and this deployment's caps."""
        return Limits(max_file_bytes=self.max_file_bytes, max_file_requests=self.max_file_requests)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            bucket=_required(env, "BUCKET_NAME"),
            input_prefix=_input_prefix(env),
            table_name=_required(env, "TABLE_NAME"),
            topic_arn=_required(env, "TOPIC_ARN"),
            openai_base_url=_openai_base_url(env),
            api_key_secret=_required(env, "OPENAI_API_KEY_SECRET"),
            record_retention_days=_positive_int(env, "RECORD_RETENTION_DAYS", 90),
            idempotency_table_name=env.get("IDEMPOTENCY_TABLE_NAME") or None,
            poll_concurrency=_positive_int(env, "POLL_CONCURRENCY", 16),
            stuck_after_minutes=_positive_int(env, "STUCK_AFTER_MINUTES", 120),
            finish_attempts_before_attention=_positive_int(
                env, "FINISH_ATTEMPTS_BEFORE_ATTENTION", 5
            ),
            resubmit_unfinished=_boolean(env, "RESUBMIT_UNFINISHED", default=False),
            submit_resume_limit=_positive_int(env, "SUBMIT_RESUME_LIMIT", 8),
            submit_give_up_hours=_positive_int(env, "SUBMIT_GIVE_UP_HOURS", 24),
            max_file_bytes=_positive_int(env, "MAX_FILE_BYTES", DEFAULT_MAX_FILE_BYTES),
            # At or above one batch's requests, a file over the cap is never uploaded early: its
            # early upload is abandoned when a second batch begins, at the latest at the cap.
            max_file_requests=_positive_int(
                env, "MAX_FILE_REQUESTS", DEFAULT_MAX_FILE_REQUESTS, minimum=MAX_REQUESTS_PER_BATCH
            ),
            input_file_expiry_seconds=_expiry(
                env, "INPUT_FILE_EXPIRY_SECONDS", DEFAULT_INPUT_FILE_EXPIRY_SECONDS
            ),
            output_file_expiry_seconds=_expiry(
                env, "OUTPUT_FILE_EXPIRY_SECONDS", DEFAULT_OUTPUT_FILE_EXPIRY_SECONDS
            ),
            delete_openai_files=_boolean(env, "DELETE_OPENAI_FILES", default=True),
        )


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"environment variable {name} is not set")
    return value


def _input_prefix(env: Mapping[str, str]) -> str:
    """The template refuses these values at deploy time; this catches the local stack and hand
    edits. The prefix must end in "/" because S3 filters match plain prefixes ("requests" would
    also take "requests-old/"), and it must not overlap where batchdrop writes its output."""
    prefix = _required(env, "INPUT_PREFIX")
    if not prefix.endswith("/"):
        raise ConfigurationError(f"INPUT_PREFIX must end with '/', got {prefix!r}")
    # Overlapping where batchdrop writes, it would submit its own output: every
    # unfinished.jsonl, paid for again.
    for output in OUTPUT_PREFIXES:
        if prefix.startswith(output) or output.startswith(prefix):
            raise ConfigurationError(
                f"INPUT_PREFIX {prefix!r} overlaps {output!r}, where batchdrop writes results and "
                "unfinished.jsonl: each would be submitted, and paid for, again"
            )
    return prefix


def _openai_base_url(env: Mapping[str, str]) -> str:
    """The API key travels in every request's Authorization header, so the URL must be https;
    plain http is allowed only to a loopback host, where the key never leaves the machine (the
    local stack's simulator). The message shows the URL redacted: it may hold credentials."""
    raw = _required(env, "OPENAI_BASE_URL")
    parts = urlsplit(raw)
    problem = _url_problem(parts)
    if problem:
        raise ConfigurationError(f"OPENAI_BASE_URL {problem}, got {_redacted(parts)!r}")
    return raw.rstrip("/")


def _url_problem(parts: SplitResult) -> str | None:
    """Why this URL is refused, or None. Parsed, not pattern-matched: urlsplit finds the host
    the HTTP client will connect to, and ipaddress knows every spelling of loopback."""
    if "@" in parts.netloc:
        return "must not carry credentials (user:password@); the API key belongs in the secret"
    if parts.scheme not in {"https", "http"}:
        return "must be an https:// URL"
    host = parts.hostname
    if not host:
        return "has no host"
    try:
        _ = parts.port  # raises for a port that is not a number from 0 to 65535
    except ValueError:
        return "has an invalid port"
    if parts.scheme == "http" and not _is_loopback(host):
        return (
            "must use https: http would send the API key in clear "
            "(http is allowed only for a loopback host: 127.0.0.0/8, localhost, [::1])"
        )
    return None


def _is_loopback(host: str) -> bool:
    """Loopback by address, not by spelling: ipaddress knows 127.0.0.0/8 and ::1 in every form."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _redacted(parts: SplitResult) -> str:
    """The URL as an error message may show it: userinfo and query can hold secrets, so neither
    is echoed; the host and path are what the reader needs to find the mistake."""
    host = parts.netloc.rpartition("@")[2]
    netloc = f"***@{host}" if "@" in parts.netloc else host
    query = "***" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _positive_int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum:,}, got {value}")
    return value


def _expiry(env: Mapping[str, str], name: str, default: int) -> int:
    """An expiry in seconds within OpenAI's bounds, which it would refuse on every upload."""
    value = _positive_int(env, name, default, minimum=MIN_EXPIRY_SECONDS)
    if value > MAX_EXPIRY_SECONDS:
        raise ConfigurationError(f"{name} must be at most {MAX_EXPIRY_SECONDS:,}, got {value}")
    return value


def _boolean(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in {"true", "false"}:
        raise ConfigurationError(f"{name} must be 'true' or 'false', got {raw!r}")
    return raw == "true"
