"""Configuration that can never be safe is refused twice: by the template's AllowedPatterns at
deploy time, and by Settings at cold start for whatever reaches a function another way (the local
stack, an environment edited by hand).

CloudFormation reads AllowedPattern as a Java regex that must match the whole value; these tests
read the same pattern from template.yaml with Python's re.fullmatch. The two dialects agree on
the constructs the patterns keep to, which the first test holds them to.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from batchdrop.domain.file_options import MAX_EXPIRY_SECONDS, MIN_EXPIRY_SECONDS
from batchdrop.settings import ConfigurationError, Settings
from local.lambda_runtime import Function
from local.template_stack import load_template

# Constructs that Java and Python read differently (\d \w \s \b are ASCII in Java, Unicode in
# Python), or that only one of them has (possessive quantifiers, \z \Z \A, named groups).
DIALECT_TRAPS = re.compile(r"\\[dDwWsSbBzZAG]|(?<!\\)[*+?}]\+|\(\?P?<[A-Za-z]")

# Values both the template and Settings refuse, and values both accept.
UNSAFE_URLS = [
    "http://api.example.com/v1",
    "http://128.0.0.1/v1",
    "http://127.256.0.1/v1",
    "http://127.0.0.1.example.com/v1",
    "http://localhost.example.com/v1",
    "http://localhost@api.example.com/v1",
    "http://user@127.0.0.1:8080/v1",
    "https://user:password@api.example.com/v1",
    "https://api.openai.com@api.example.com/v1",
    "ftp://api.example.com/v1",
    "api.openai.com/v1",
    "https:///v1",
    "https://:443/v1",
]
SAFE_URLS = [
    "https://api.openai.com/v1",
    "https://proxy.example.com:8443/openai/v1",
    "http://127.0.0.1:8080/v1",
    "http://127.10.20.30/v1",
    "http://localhost:8080/v1",
    "http://[::1]:8080/v1",
]
OVERLAPPING_PREFIXES = ["results/", "reports/", "results/x/", "reports/2024/"]
SAFE_PREFIXES = ["requests/", "Results/", "results-in/", "reports2/"]


def allowed_pattern(parameter: str) -> str:
    pattern: str = load_template()["Parameters"][parameter]["AllowedPattern"]
    return pattern


def template_accepts(parameter: str, value: str) -> bool:
    return re.fullmatch(allowed_pattern(parameter), value) is not None


def settings_accept(variable: str, value: str) -> bool:
    env = {
        "BUCKET_NAME": "b",
        "INPUT_PREFIX": "requests/",
        "TABLE_NAME": "t",
        "TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:t",
        "OPENAI_BASE_URL": "https://api.openai.com/v1",
        "OPENAI_API_KEY_SECRET": "arn:secret",
    }
    try:
        Settings.from_env({**env, variable: value})
    except ConfigurationError:
        return False
    return True


@pytest.mark.parametrize("parameter", ["InputPrefix", "OpenAIBaseUrl"])
def test_the_patterns_keep_to_what_java_and_python_read_alike(parameter: str) -> None:
    pattern = allowed_pattern(parameter)
    assert not DIALECT_TRAPS.search(pattern), pattern
    assert load_template()["Parameters"][parameter]["ConstraintDescription"]


@pytest.mark.parametrize("prefix", OVERLAPPING_PREFIXES)
def test_an_input_prefix_over_batchdrops_output_is_refused_at_deploy(prefix: str) -> None:
    assert not template_accepts("InputPrefix", prefix)
    assert not settings_accept("INPUT_PREFIX", prefix)


@pytest.mark.parametrize("prefix", ["requests", "", "/", "a b/"])
def test_an_input_prefix_that_is_not_one_folder_is_refused_at_deploy(prefix: str) -> None:
    assert not template_accepts("InputPrefix", prefix)


@pytest.mark.parametrize("prefix", SAFE_PREFIXES)
def test_an_input_prefix_apart_from_the_output_is_deployable(prefix: str) -> None:
    assert template_accepts("InputPrefix", prefix)
    assert settings_accept("INPUT_PREFIX", prefix)


@pytest.mark.parametrize("url", UNSAFE_URLS)
def test_a_base_url_that_could_leak_the_key_is_refused_at_deploy(url: str) -> None:
    assert not template_accepts("OpenAIBaseUrl", url)
    assert not settings_accept("OPENAI_BASE_URL", url)


@pytest.mark.parametrize("url", SAFE_URLS)
def test_an_https_or_loopback_base_url_is_deployable(url: str) -> None:
    assert template_accepts("OpenAIBaseUrl", url)
    assert settings_accept("OPENAI_BASE_URL", url)


@pytest.mark.parametrize("parameter", ["InputPrefix", "OpenAIBaseUrl"])
def test_the_defaults_pass_their_own_patterns(parameter: str) -> None:
    default = str(load_template()["Parameters"][parameter]["Default"])
    assert template_accepts(parameter, default)


@pytest.mark.parametrize("function", ["SubmitFunction", "PollFunction"])
@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("OPENAI_BASE_URL", "http://api.example.com/v1", "must use https"),
        ("INPUT_PREFIX", "results/", "overlaps 'results/'"),
    ],
)
def test_a_cold_start_with_an_unsafe_setting_fails(
    load_function: Callable[..., Function], function: str, variable: str, value: str, reason: str
) -> None:
    with pytest.raises(ConfigurationError, match=f"{variable}.*{re.escape(reason)}"):
        load_function(function, **{variable: value})


EXPIRY_PARAMETERS = {
    "InputFileExpirySeconds": "INPUT_FILE_EXPIRY_SECONDS",
    "OutputFileExpirySeconds": "OUTPUT_FILE_EXPIRY_SECONDS",
}


@pytest.mark.parametrize(("parameter", "variable"), EXPIRY_PARAMETERS.items())
def test_expiry_parameters_keep_to_openais_bounds_at_deploy_and_at_cold_start(
    parameter: str, variable: str
) -> None:
    declared = load_template()["Parameters"][parameter]
    assert (declared["MinValue"], declared["MaxValue"]) == (
        MIN_EXPIRY_SECONDS,
        MAX_EXPIRY_SECONDS,
    )
    assert MIN_EXPIRY_SECONDS <= declared["Default"] <= MAX_EXPIRY_SECONDS
    for refused in ("3599", "2592001", "0", "a week"):
        assert not settings_accept(variable, refused)
    for accepted in ("3600", "2592000", str(declared["Default"])):
        assert settings_accept(variable, accepted)


def test_the_output_expiry_outlives_a_needs_attention_retry_by_default() -> None:
    """Results must still be on OpenAI when `batchdrop retry` finishes a set-aside job."""
    parameters = load_template()["Parameters"]
    assert parameters["OutputFileExpirySeconds"]["Default"] == MAX_EXPIRY_SECONDS
    assert parameters["InputFileExpirySeconds"]["Default"] >= 24 * 3600  # a batch's window
