"""What a job's batches cost, in tokens, summed over its parts, follow-ups and duplicates.

OpenAI reports `usage` on each batch (batches created after 2025-09-07): input tokens, of which
`cached_tokens` were served from the prompt cache, and output tokens, of which
`reasoning_tokens` were the model's reasoning. The job's usage flattens both details beside the
totals, so the record, summary.json, the email and `batchdrop status` read one flat shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

USAGE_FIELDS = (
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "reasoning_tokens",
    "total_tokens",
)


def summed_usage(usages: Iterable[Mapping[str, Any] | None]) -> dict[str, int]:
    """The batches' usage summed, flat; a batch without usage (still running, or created
    before OpenAI reported it) adds nothing."""
    totals = dict.fromkeys(USAGE_FIELDS, 0)
    for usage in usages:
        if not usage:
            continue
        totals["input_tokens"] += _count(usage.get("input_tokens"))
        totals["output_tokens"] += _count(usage.get("output_tokens"))
        totals["total_tokens"] += _count(usage.get("total_tokens"))
        totals["cached_tokens"] += _count(
            (usage.get("input_tokens_details") or {}).get("cached_tokens")
        )
        totals["reasoning_tokens"] += _count(
            (usage.get("output_tokens_details") or {}).get("reasoning_tokens")
        )
    return totals


def models_used(models: Iterable[str | None]) -> list[str]:
    """The distinct models OpenAI says ran the batches (e.g. `gpt-5-2025-08-07`), sorted."""
    return sorted({model for model in models if model})


def usage_line(usage: Mapping[str, Any]) -> str:
    """One line for people: `1,200 in, 300 out, 1,500 total (1,024 cached, 128 reasoning)`."""

    def count(name: str) -> int:
        return _count(usage.get(name))

    return (
        f"{count('input_tokens'):,} in, {count('output_tokens'):,} out, "
        f"{count('total_tokens'):,} total "
        f"({count('cached_tokens'):,} cached, {count('reasoning_tokens'):,} reasoning)"
    )


def _count(value: object) -> int:
    # DynamoDB hands numbers back as Decimal; OpenAI as int.
    return int(value) if isinstance(value, (int, float, Decimal)) else 0
