"""`Batch.usage` as the SDK's BatchUsage: the sum of the successful lines' own usage, cached and
reasoning tokens included."""

from __future__ import annotations

from typing import Any

import pytest
from openai import OpenAI
from openai.types import BatchUsage
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from local.simulator import BatchSimulator

from .batch_inputs import Endpoint, finish, result_lines, submit

LONG_PROMPT = "word " * 1200  # past the 1,024 tokens from which prompts are cached


def _line(endpoint: str, custom_id: str, text: str) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "gpt-5-mini"}
    if endpoint == "/v1/responses":
        body["input"] = text
    else:
        body["messages"] = [{"role": "user", "content": text}]
    return {"custom_id": custom_id, "method": "POST", "url": endpoint, "body": body}


def _line_usage(endpoint: str, body: dict[str, Any]) -> tuple[int, int, int, int]:
    """(input, cached, output, reasoning) tokens as the line's own answer reports them."""
    if endpoint == "/v1/responses":
        usage = Response.model_validate(body).usage
        assert usage is not None
        return (
            usage.input_tokens,
            usage.input_tokens_details.cached_tokens,
            usage.output_tokens,
            usage.output_tokens_details.reasoning_tokens,
        )
    chat = ChatCompletion.model_validate(body).usage
    assert chat is not None
    assert chat.prompt_tokens_details is not None
    assert chat.completion_tokens_details is not None
    return (
        chat.prompt_tokens,
        chat.prompt_tokens_details.cached_tokens or 0,
        chat.completion_tokens,
        chat.completion_tokens_details.reasoning_tokens or 0,
    )


@pytest.mark.parametrize("endpoint", ["/v1/responses", "/v1/chat/completions"])
def test_batch_usage_sums_cached_and_reasoning_tokens(
    sim: BatchSimulator, client: OpenAI, endpoint: Endpoint
) -> None:
    lines = [_line(endpoint, "long", LONG_PROMPT), _line(endpoint, "short", "Say hi")]
    lines.append(_line(endpoint, "fail-1", LONG_PROMPT))  # a failed line costs nothing
    done = finish(sim, client, submit(client, lines, endpoint))

    per_line = [
        _line_usage(endpoint, line["response"]["body"])
        for line in result_lines(client, done.output_file_id)
    ]
    totals = [sum(column) for column in zip(*per_line, strict=True)]

    assert isinstance(done.usage, BatchUsage)
    assert done.model == "gpt-5-mini"
    assert [
        done.usage.input_tokens,
        done.usage.input_tokens_details.cached_tokens,
        done.usage.output_tokens,
        done.usage.output_tokens_details.reasoning_tokens,
    ] == totals
    assert done.usage.total_tokens == totals[0] + totals[2]
    assert totals[1] > 0  # the long prompt was (partly) cached
    assert totals[3] > 0  # gpt-5 models reason
