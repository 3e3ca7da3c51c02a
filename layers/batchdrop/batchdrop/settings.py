"""The functions' configuration, parsed once at cold start from the template's environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


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
    submit_resume_limit: int = 8
    submit_give_up_hours: int = 24

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
            submit_resume_limit=_positive_int(env, "SUBMIT_RESUME_LIMIT", 8),
            submit_give_up_hours=_positive_int(env, "SUBMIT_GIVE_UP_HOURS", 24),
        )


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"environment variable {name} is not set")
    return value


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number, got {raw!r}") from None
    if value < 1:
        raise ConfigurationError(f"{name} must be at least 1, got {value}")
    return value


def _boolean(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in {"true", "false"}:
        raise ConfigurationError(f"{name} must be 'true' or 'false', got {raw!r}")
    return raw == "true"
