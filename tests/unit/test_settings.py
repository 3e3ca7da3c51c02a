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
