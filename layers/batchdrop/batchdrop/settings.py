"""The functions' configuration, parsed once at cold start from the template's environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from batchdrop.validation import MAX_REQUESTS_PER_BATCH

# The per-file caps' defaults: template.yaml (MaxFileBytes, MaxFileRequests) says why.
DEFAULT_MAX_FILE_BYTES = 1024**3
DEFAULT_MAX_FILE_REQUESTS = 1_000_000


class ConfigurationError(RuntimeError):
    """The deployment is missing or mangling a setting; raised at cold start, not mid-request."""


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
    resubmit_unfinished: bool = False
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_file_requests: int = DEFAULT_MAX_FILE_REQUESTS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            bucket=_required(env, "BUCKET_NAME"),
            input_prefix=_required(env, "INPUT_PREFIX"),
            table_name=_required(env, "TABLE_NAME"),
            topic_arn=_required(env, "TOPIC_ARN"),
            openai_base_url=_required(env, "OPENAI_BASE_URL").rstrip("/"),
            api_key_secret=_required(env, "OPENAI_API_KEY_SECRET"),
            record_retention_days=_positive_int(env, "RECORD_RETENTION_DAYS", 90),
            idempotency_table_name=env.get("IDEMPOTENCY_TABLE_NAME") or None,
            poll_concurrency=_positive_int(env, "POLL_CONCURRENCY", 16),
            stuck_after_minutes=_positive_int(env, "STUCK_AFTER_MINUTES", 120),
            resubmit_unfinished=_boolean(env, "RESUBMIT_UNFINISHED", default=False),
            max_file_bytes=_positive_int(env, "MAX_FILE_BYTES", DEFAULT_MAX_FILE_BYTES),
            # At or above one batch's requests, a file over the cap is never uploaded early: its
            # early upload is abandoned when a second batch begins, at the latest at the cap.
            max_file_requests=_positive_int(
                env, "MAX_FILE_REQUESTS", DEFAULT_MAX_FILE_REQUESTS, minimum=MAX_REQUESTS_PER_BATCH
            ),
        )


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"environment variable {name} is not set")
    return value


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


def _boolean(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in {"true", "false"}:
        raise ConfigurationError(f"{name} must be 'true' or 'false', got {raw!r}")
    return raw == "true"
