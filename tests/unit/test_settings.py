from __future__ import annotations

import re

import pytest

from batchdrop.domain.limits import MAX_REQUESTS_PER_BATCH, Limits
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
    assert settings.finish_attempts_before_attention == 5  # the template's default


def test_the_finish_attempts_before_attention_come_from_the_environment() -> None:
    settings = Settings.from_env({**BASE, "FINISH_ATTEMPTS_BEFORE_ATTENTION": "2"})
    assert settings.finish_attempts_before_attention == 2


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
        ("FINISH_ATTEMPTS_BEFORE_ATTENTION", "0", "at least 1"),
        ("FINISH_ATTEMPTS_BEFORE_ATTENTION", "five", "whole number"),
    ],
)
def test_a_malformed_variable_fails_loudly(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env({**BASE, name: value})


@pytest.mark.parametrize(
    "url",
    [
        "https://api.openai.com/v1",
        "https://proxy.example.com:8443/openai/v1/",
        "http://127.0.0.1:8080/v1",
        "http://127.255.0.9/v1",
        "http://localhost:8080/v1",
        "http://[::1]:8080/v1",
    ],
)
def test_an_https_or_loopback_base_url_is_accepted(url: str) -> None:
    settings = Settings.from_env({**BASE, "OPENAI_BASE_URL": url})
    assert settings.openai_base_url == url.rstrip("/")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://api.example.com/v1", "must use https: http would send the API key in clear"),
        ("http://128.0.0.1/v1", "must use https"),
        ("http://127.0.0.1.example.com/v1", "must use https"),
        ("http://[::2]/v1", "must use https"),
        ("ftp://api.example.com/v1", "must be an https:// URL"),
        ("api.openai.com/v1", "must be an https:// URL"),
        ("https:///v1", "has no host"),
        ("https://:443/v1", "has no host"),
        ("https://api.example.com:99999/v1", "has an invalid port"),
    ],
)
def test_an_unsafe_base_url_is_refused_at_cold_start(url: str, reason: str) -> None:
    with pytest.raises(ConfigurationError, match=f"OPENAI_BASE_URL {re.escape(reason)}"):
        Settings.from_env({**BASE, "OPENAI_BASE_URL": url})


@pytest.mark.parametrize(
    "url",
    [
        "https://user:s3cret-pw@api.example.com/v1",
        "http://s3cret-pw@127.0.0.1:8080/v1",
        "https://s3cret-pw:@api.example.com/v1?key=s3cret-pw",
    ],
)
def test_a_base_url_with_credentials_is_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(
        ConfigurationError, match="OPENAI_BASE_URL must not carry credentials"
    ) as err:
        Settings.from_env({**BASE, "OPENAI_BASE_URL": url})
    assert "s3cret-pw" not in str(err.value)
    assert "***@" in str(err.value)


@pytest.mark.parametrize(
    "prefix", ["results/", "reports/", "results/x/", "reports/2024/", "results/requests/"]
)
def test_an_input_prefix_over_batchdrops_output_is_refused(prefix: str) -> None:
    with pytest.raises(ConfigurationError, match=r"INPUT_PREFIX .* overlaps .*paid for"):
        Settings.from_env({**BASE, "INPUT_PREFIX": prefix})


def test_an_input_prefix_without_a_trailing_slash_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="INPUT_PREFIX must end with '/'"):
        Settings.from_env({**BASE, "INPUT_PREFIX": "requests"})


@pytest.mark.parametrize("prefix", ["requests/", "inbox/batches/", "Results/", "results-in/"])
def test_an_input_prefix_apart_from_the_output_is_accepted(prefix: str) -> None:
    assert Settings.from_env({**BASE, "INPUT_PREFIX": prefix}).input_prefix == prefix


def test_the_per_file_caps_default_to_what_the_finish_path_can_merge() -> None:
    settings = Settings.from_env(BASE)
    assert settings.max_file_bytes == 1024**3
    assert settings.max_file_requests == 1_000_000
    parsed = Settings.from_env({**BASE, "MAX_FILE_BYTES": "5000", "MAX_FILE_REQUESTS": "60000"})
    assert (parsed.max_file_bytes, parsed.max_file_requests) == (5000, 60_000)


def test_the_limits_are_openais_with_the_deployments_caps_on_the_file() -> None:
    parsed = Settings.from_env({**BASE, "MAX_FILE_BYTES": "5000", "MAX_FILE_REQUESTS": "60000"})
    assert parsed.limits == Limits(max_file_bytes=5000, max_file_requests=60_000)
    assert parsed.limits.max_requests == MAX_REQUESTS_PER_BATCH


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
