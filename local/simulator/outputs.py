"""Deterministic response bodies and token usage for each supported batch endpoint.

Nothing here is random: every id, text and number is derived from the request itself (its
size, its parameters) and a per-line digest, so the same input always yields the same output.
"""

from __future__ import annotations

import base64
import functools
import random
import struct
from collections.abc import Callable
from typing import Any

from . import images, videos
from .lines import NO_USAGE, LineContext, LineUsage, digest

# The eight values of the SDK's `batches.create(endpoint=...)` Literal.
SUPPORTED_ENDPOINTS = (
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
)
GENERATIVE_ENDPOINTS = frozenset({"/v1/responses", "/v1/chat/completions", "/v1/completions"})
IMAGE_ENDPOINTS = frozenset({"/v1/images/generations", "/v1/images/edits"})
DEFAULT_MODERATION_MODEL = "omni-moderation-latest"
# The model a line may leave out, where the endpoint has a default.
DEFAULT_MODELS = {"/v1/moderations": DEFAULT_MODERATION_MODEL, "/v1/videos": videos.DEFAULT_MODEL}
DEFAULT_OUTPUT_CAP = 4096
CHARS_PER_TOKEN = 4
REASONING_MODEL_PREFIXES = ("o1", "o3", "o4", "gpt-5")
MODERATION_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
TEXT_AND_IMAGE_CATEGORIES = frozenset(
    {
        "self-harm",
        "self-harm/instructions",
        "self-harm/intent",
        "sexual",
        "violence",
        "violence/graphic",
    }
)
VOCABULARY = (
    *("batch", "simulated", "answer", "the", "model", "reads", "each", "request", "and"),
    *("writes", "a", "short", "reply", "deterministic", "output", "keeps", "tests"),
    *("stable", "while", "sizes", "stay", "realistic"),
)


def is_reasoning_model(model: str) -> bool:
    return model.startswith(REASONING_MODEL_PREFIXES)


def count_embedding_inputs(value: Any) -> int:
    if isinstance(value, list) and value and not isinstance(value[0], int):
        return len(value)
    return 1


def output_cap(body: dict[str, Any]) -> int:
    for name in ("max_output_tokens", "max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and value > 0:
            return value
    return DEFAULT_OUTPUT_CAP


def estimate_usage(endpoint: str, body: dict[str, Any], size: int) -> LineUsage:
    """The tokens a line's answer reports as `usage` (about four bytes of request per input
    token), which the batch's `usage` sums. Moderations and videos report none."""
    input_tokens = max(1, size // CHARS_PER_TOKEN)
    if endpoint in IMAGE_ENDPOINTS:
        return images.image_usage(body).line_usage()
    if endpoint == "/v1/embeddings":
        return LineUsage(input_tokens, 0, 0, 0, count_embedding_inputs(body.get("input")))
    if endpoint not in GENERATIVE_ENDPOINTS:
        return NO_USAGE
    # Prompt caching only applies from 1024 tokens, in 128-token increments.
    cached = (input_tokens // 2 // 128) * 128 if input_tokens >= 1024 else 0
    n = body.get("n")
    choices = n if isinstance(n, int) and n > 0 else 1
    per_choice = min(output_cap(body), max(16, input_tokens))
    reasoning = per_choice // 2 if is_reasoning_model(str(body.get("model", ""))) else 0
    return LineUsage(input_tokens, cached, per_choice * choices, reasoning * choices)


@functools.lru_cache(maxsize=1)
def _filler() -> str:
    rng = random.Random(7)  # noqa: S311 - reproducible filler text, not a secret
    words = " ".join(rng.choice(VOCABULARY) for _ in range(12_000))
    return words + " " + words


def reply_text(custom_id: str, tokens: int, key: str) -> str:
    """About `tokens` tokens of readable text, different for every line."""
    lead = f"Simulated reply to {custom_id}."
    wanted = max(0, tokens * CHARS_PER_TOKEN - len(lead))
    filler = _filler()
    start = filler.find(" ", int(key[:8], 16) % (len(filler) // 2)) + 1  # whole words only
    while wanted > len(filler) - start:
        filler += filler
    return (lead + " " + filler[start : start + wanted]).rstrip()


def _chat_completion(line: LineContext) -> dict[str, Any]:
    usage = line.usage
    visible = (usage.output_tokens - usage.reasoning_tokens) // line.choices
    return {
        "id": f"chatcmpl-{line.key[:24]}",
        "object": "chat.completion",
        "created": line.created,
        "model": line.body["model"],
        "choices": [
            {
                "index": index,
                "message": {
                    "role": "assistant",
                    "content": reply_text(line.custom_id, visible, digest(line.key, index)),
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
            for index in range(line.choices)
        ],
        "usage": {
            "prompt_tokens": usage.input_tokens,
            "completion_tokens": usage.output_tokens,
            "total_tokens": usage.input_tokens + usage.output_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": usage.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": f"fp_{line.key[-10:]}",
    }


def _response(line: LineContext) -> dict[str, Any]:
    usage, body, key = line.usage, line.body, line.key
    output: list[dict[str, Any]] = []
    if usage.reasoning_tokens:
        output.append({"id": f"rs_{key[:32]}", "type": "reasoning", "summary": []})
    text = reply_text(line.custom_id, usage.output_tokens - usage.reasoning_tokens, key)
    output.append(
        {
            "id": f"msg_{key[-32:]}",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
        }
    )
    return {
        "id": f"resp_{key}",
        "object": "response",
        "created_at": line.created,
        "completed_at": line.created,
        "status": "completed",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body["model"],
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": "medium" if usage.reasoning_tokens else None, "summary": None},
        "service_tier": "default",
        "store": True,
        "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": {
            "input_tokens": usage.input_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
            "output_tokens": usage.output_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "total_tokens": usage.input_tokens + usage.output_tokens,
        },
        "user": None,
        "metadata": body.get("metadata") or {},
    }


def _completion(line: LineContext) -> dict[str, Any]:
    usage = line.usage
    per_choice = usage.output_tokens // line.choices
    return {
        "id": f"cmpl-{line.key[:24]}",
        "object": "text_completion",
        "created": line.created,
        "model": line.body["model"],
        "choices": [
            {
                "text": reply_text(line.custom_id, per_choice, digest(line.key, index)),
                "index": index,
                "logprobs": None,
                "finish_reason": "stop",
            }
            for index in range(line.choices)
        ],
        "usage": {
            "prompt_tokens": usage.input_tokens,
            "completion_tokens": usage.output_tokens,
            "total_tokens": usage.input_tokens + usage.output_tokens,
        },
    }


def embedding_dimensions(body: dict[str, Any]) -> int:
    dimensions = body.get("dimensions")
    if isinstance(dimensions, int) and dimensions > 0:
        return dimensions
    return 3072 if "large" in str(body.get("model", "")) else 1536


@functools.lru_cache(maxsize=8)
def _unit_vector(dimensions: int) -> tuple[float, ...]:
    rng = random.Random(dimensions)  # noqa: S311 - reproducible vectors, not a secret
    raw = [rng.uniform(-1.0, 1.0) for _ in range(dimensions)]
    norm = sum(value * value for value in raw) ** 0.5
    return tuple(round(value / norm, 6) for value in raw)


def embedding_vector(dimensions: int, key: str) -> list[float]:
    # A rotation of one fixed unit vector: cheap, still unit length, different per input.
    base = _unit_vector(dimensions)
    shift = int(key[:8], 16) % dimensions
    return list(base[shift:] + base[:shift])


def _embeddings(line: LineContext) -> dict[str, Any]:
    dimensions = embedding_dimensions(line.body)
    as_base64 = line.body.get("encoding_format") == "base64"
    data = []
    for index in range(line.usage.inputs):
        vector = embedding_vector(dimensions, digest(line.key, index))
        encoded: Any = (
            base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            if as_base64
            else vector
        )
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = line.usage.input_tokens
    return {
        "object": "list",
        "data": data,
        "model": line.body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _moderation(line: LineContext) -> dict[str, Any]:
    inputs = line.body.get("input")
    count = len(inputs) if isinstance(inputs, list) and inputs else 1
    results = []
    for index in range(count):
        seed = int(digest(line.key, index)[:8], 16)
        scores = {
            name: round(((seed >> (i % 24)) % 1000) / 1_000_000, 6)
            for i, name in enumerate(MODERATION_CATEGORIES)
        }
        results.append(
            {
                "flagged": False,
                "categories": dict.fromkeys(MODERATION_CATEGORIES, False),
                "category_scores": scores,
                "category_applied_input_types": {
                    name: ["text", "image"] if name in TEXT_AND_IMAGE_CATEGORIES else ["text"]
                    for name in MODERATION_CATEGORIES
                },
            }
        )
    return {
        "id": f"modr-{line.key[:24]}",
        "model": line.body.get("model", DEFAULT_MODERATION_MODEL),
        "results": results,
    }


_BUILDERS: dict[str, Callable[[LineContext], dict[str, Any]]] = {
    "/v1/chat/completions": _chat_completion,
    "/v1/responses": _response,
    "/v1/completions": _completion,
    "/v1/embeddings": _embeddings,
    "/v1/moderations": _moderation,
}


def success_body(
    endpoint: str, line: LineContext, *, picture_bytes: int | None = None, video_until: int = 0
) -> dict[str, Any]:
    """The answer to one request; `picture_bytes` sizes images, `video_until` is when a video's
    content stops being downloadable."""
    if endpoint in IMAGE_ENDPOINTS:
        return images.images_response(line, picture_bytes)
    if endpoint == "/v1/videos":
        return videos.video_object(line, video_until)
    return _BUILDERS[endpoint](line)


def client_error_body(custom_id: str) -> dict[str, Any]:
    """What OpenAI puts in `response.body` when it rejects one request of a batch."""
    return {
        "error": {
            "message": f"Invalid request {custom_id!r}: the simulator rejects custom_ids "
            "starting with 'fail-'.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


def server_error_body() -> dict[str, Any]:
    return {
        "error": {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
