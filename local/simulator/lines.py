"""One request of a batch as the answer builders see it: its body, usage and digest."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class LineUsage:
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int
    inputs: int = 1  # embedding inputs in this request (OpenAI caps them per batch)


NO_USAGE = LineUsage(0, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class LineContext:
    """One request being answered: its body, its token usage and its per-line digest."""

    body: dict[str, Any]
    usage: LineUsage
    key: str
    created: int
    custom_id: str

    @property
    def choices(self) -> int:
        n = self.body.get("n")
        return n if isinstance(n, int) and n > 0 else 1


def digest(*parts: object, size: int = 12) -> str:
    joined = "\x1f".join(str(part) for part in parts).encode()
    return hashlib.blake2b(joined, digest_size=size).hexdigest()
