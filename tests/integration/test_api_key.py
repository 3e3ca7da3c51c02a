"""Where the OpenAI key comes from, and that it never travels into logs or errors."""

from __future__ import annotations

from collections.abc import Callable

import boto3
import pytest

from local.lambda_runtime import Function
from local.simulator import BatchSimulator
from local.template_stack import DeployedStack
from tests.conftest import SIM_API_KEY
from tests.support import drop, jsonl, request_lines


def test_an_unset_secret_fails_with_how_to_set_it(
    load_function: Callable[[str], Function],
    stack: DeployedStack,
    bucket: str,
    openai_sim: BatchSimulator,
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret = stack.resource("OpenAIApiKeySecret")
    boto3.client("secretsmanager").put_secret_value(
        SecretId=secret, SecretString="REPLACE_WITH_OPENAI_API_KEY"
    )
    event = drop(bucket, "requests/a.jsonl", jsonl(request_lines(2)))

    with pytest.raises(Exception, match="1 of 1 failed"):
        load_function("SubmitFunction").invoke(event)

    logs = capsys.readouterr().out
    assert "the OpenAI API key is not set" in logs
    assert "put-secret-value" in logs
    assert openai_sim.count("POST /v1/batches") == 0


def test_openai_api_key_in_the_environment_wins_over_the_secret(
    stack: DeployedStack,
    bucket: str,
    openai_sim: BatchSimulator,
    sleeps: object,
) -> None:
    secret = stack.resource("OpenAIApiKeySecret")
    boto3.client("secretsmanager").put_secret_value(SecretId=secret, SecretString="sk-wrong")
    function = Function.load(
        stack,
        "SubmitFunction",
        {"OPENAI_BASE_URL": openai_sim.base_url, "OPENAI_API_KEY": SIM_API_KEY},
    )
    event = drop(bucket, "requests/a.jsonl", jsonl(request_lines(2)))

    result = function.invoke(event)

    assert result["outcomes"][0]["status"] == "submitted"


def test_a_wrong_key_fails_without_the_key_in_any_log(
    load_function: Callable[[str], Function],
    stack: DeployedStack,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sentinel = "sk-sentinel-never-log-me-0042"
    secret = stack.resource("OpenAIApiKeySecret")
    boto3.client("secretsmanager").put_secret_value(SecretId=secret, SecretString=sentinel)
    event = drop(bucket, "requests/a.jsonl", jsonl(request_lines(2)))

    with pytest.raises(Exception, match="1 of 1 failed") as caught:
        load_function("SubmitFunction").invoke(event)

    logs = capsys.readouterr()
    assert "invalid_api_key" in logs.out
    assert sentinel not in logs.out + logs.err
    assert sentinel not in str(caught.value)


def test_a_key_with_a_line_break_is_refused_without_echoing_it(
    load_function: Callable[[str], Function],
    stack: DeployedStack,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """requests would quote the whole Authorization header, key included, in its error."""
    broken = "sk-sentinel-first-half\nsecond-half-9876"
    secret = stack.resource("OpenAIApiKeySecret")
    boto3.client("secretsmanager").put_secret_value(SecretId=secret, SecretString=broken)
    event = drop(bucket, "requests/a.jsonl", jsonl(request_lines(2)))

    with pytest.raises(Exception, match="1 of 1 failed"):
        load_function("SubmitFunction").invoke(event)

    logs = capsys.readouterr()
    assert "has spaces or line breaks" in logs.out
    for fragment in ("sk-sentinel-first-half", "second-half-9876"):
        assert fragment not in logs.out + logs.err
