"""Building batch input files and driving batches through the SDK."""

from __future__ import annotations

import io
import json
from typing import Any, Final, Literal

from openai import OpenAI
from openai.types import Batch, FileObject

from local.simulator import BatchSimulator

Endpoint = Literal[
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
]
CHAT: Final = "/v1/chat/completions"
MODEL = "gpt-4o-mini"


def chat_line(custom_id: str, text: str = "Hello", model: str = MODEL) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": CHAT,
        "body": {"model": model, "messages": [{"role": "user", "content": text}]},
    }


def line_for(endpoint: str, custom_id: str, model: str) -> dict[str, Any]:
    bodies: dict[str, dict[str, Any]] = {
        "/v1/chat/completions": {"messages": [{"role": "user", "content": "Say hi"}]},
        "/v1/responses": {"input": "Say hi"},
        "/v1/embeddings": {"input": ["first text", "second text"]},
        "/v1/completions": {"prompt": "Say hi"},
        "/v1/moderations": {"input": "a harmless sentence"},
        "/v1/images/generations": {"prompt": "A lighthouse at dusk", "size": "1536x1024"},
        "/v1/images/edits": {
            "prompt": "Add a red scarf",
            "images": [{"file_id": "file-portrait"}, {"image_url": "https://example.com/a.png"}],
        },
        "/v1/videos": {"prompt": "A paper boat on a pond", "seconds": "8"},
    }
    body = {"model": model, **bodies[endpoint]}
    return {"custom_id": custom_id, "method": "POST", "url": endpoint, "body": body}


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def upload(client: OpenAI, content: bytes, name: str = "input.jsonl") -> FileObject:
    return client.files.create(file=(name, io.BytesIO(content)), purpose="batch")


def submit(client: OpenAI, lines: list[dict[str, Any]] | bytes, endpoint: Endpoint = CHAT) -> Batch:
    content = lines if isinstance(lines, bytes) else jsonl(lines)
    input_file = upload(client, content)
    return client.batches.create(
        input_file_id=input_file.id, endpoint=endpoint, completion_window="24h"
    )


def result_lines(client: OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    text = client.files.content(file_id).text
    return [json.loads(line) for line in text.splitlines()]


def finish(sim: BatchSimulator, client: OpenAI, batch: Batch) -> Batch:
    """Advance past validating + in_progress + finalizing."""
    t = sim.timings
    sim.clock.advance(t.validating + t.in_progress + t.finalizing + 1)
    return client.batches.retrieve(batch.id)
