from __future__ import annotations

import pytest

from batchdrop.settings import ConfigurationError, Settings

BASE = {
    "BUCKET_NAME": "b",
    "INPUT_PREFIX": "requests/",
    "TABLE_NAME": "t",
    "TOPIC_ARN": "arn:aws:sns:us-east-1:1:t",
    "OPENAI_BASE_URL": "http://127.0.0.1:1/v1/",
    "OPENAI_API_KEY_SECRET": "arn:secret",
}


def test_settings_parse_the_template_environment() -> None:
    settings = Settings.from_env({**BASE, "POLL_CONCURRENCY": "8", "RESUBMIT_UNFINISHED": "true"})
    assert settings.openai_base_url == "http://127.0.0.1:1/v1"
    assert settings.poll_concurrency == 8
    assert settings.resubmit_unfinished is True
    assert settings.record_retention_days == 90


@pytest.mark.parametrize("name", sorted(BASE))
def test_a_missing_variable_is_named(name: str) -> None:
    env = {k: v for k, v in BASE.items() if k != name}
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("POLL_CONCURRENCY", "many", "whole number"),
        ("POLL_CONCURRENCY", "0", "at least 1"),
        ("RESUBMIT_UNFINISHED", "yes", "'true' or 'false'"),
    ],
)
def test_a_malformed_variable_fails_loudly(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env({**BASE, name: value})


def test_the_per_file_caps_default_to_what_the_finish_path_can_merge() -> None:
    settings = Settings.from_env(BASE)
    assert settings.max_file_bytes == 1024**3
    assert settings.max_file_requests == 1_000_000
    parsed = Settings.from_env({**BASE, "MAX_FILE_BYTES": "5000", "MAX_FILE_REQUESTS": "60000"})
    assert (parsed.max_file_bytes, parsed.max_file_requests) == (5000, 60_000)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MAX_FILE_BYTES", "0", "at least 1"),
        ("MAX_FILE_BYTES", "1GB", "whole number"),
        # Below one batch's 50,000 requests a file over the cap could be uploaded early.
        ("MAX_FILE_REQUESTS", "49999", "at least 50,000"),
    ],
)
def test_a_cap_out_of_range_fails_at_cold_start(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env({**BASE, name: value})
