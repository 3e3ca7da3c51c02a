"""What a job cost: `model` and `usage` of each batch, summed per job into the record,
summary.json and the email, with cached and reasoning tokens; the file's metadata beside them."""

from __future__ import annotations

from typing import Any

from batchdrop.domain.limits import Limits
from tests.support import jsonl, request_lines
from tests.unit.fakes.batch_api import result_line
from tests.unit.fakes.world import BUCKET, Options, World


def usage(inputs: int, cached: int, outputs: int, reasoning: int) -> dict[str, Any]:
    return {
        "input_tokens": inputs,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": outputs,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": inputs + outputs,
    }


def run(world: World, batch_id: str, spent: dict[str, Any]) -> None:
    output = [result_line(r["custom_id"], 200) for r in world.api.input_lines(batch_id)]
    world.api.end(batch_id, "completed", output=output, usage=spent, model="o3-2025-04-16")


def test_usage_with_cached_and_reasoning_tokens_is_summed_over_a_two_part_job() -> None:
    world = World(Options(limits=Limits(max_requests=2)))
    source = world.drop("requests/costly.jsonl", jsonl(request_lines(4)), {"team": "evals"})
    outcome = world.submitter().submit(source)
    first, second = outcome.batch_ids
    run(world, first, usage(2000, 1024, 300, 128))
    run(world, second, usage(3000, 2048, 500, 256))

    world.tick()

    expected = {
        "input_tokens": 5000,
        "cached_tokens": 3072,
        "output_tokens": 800,
        "reasoning_tokens": 384,
        "total_tokens": 5800,
    }
    job = world.store.job(source.job_id)
    assert job["usage"] == expected
    assert job["models"] == ["o3-2025-04-16"]
    found = world.objects.read_json(BUCKET, f"{job['results_prefix']}summary.json")
    assert found is not None
    assert found[0]["usage"] == expected
    assert found[0]["models"] == ["o3-2025-04-16"]
    assert found[0]["metadata"] == {"team": "evals"}
    (email,) = world.publisher.sent
    assert "5,000 in, 800 out, 5,800 total (3,072 cached, 384 reasoning)" in email.body
    assert "o3-2025-04-16" in email.body
    assert "team = evals" in email.body
