"""Issue 13 items 2, 3 and 5 end to end on the simulator: the dropped object's S3 metadata on
every batch (refused past OpenAI's limits before any upload), the expiry of input and output
files, and the tokens each batch used, summed per job."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import openai
import pytest

from batchdrop.domain.file_options import encode_value
from batchdrop.domain.limits import Limits
from local.inbox import Inbox
from local.lambda_runtime import Function
from local.simulator import BatchSimulator
from local.template_stack import DeployedStack
from tests.conftest import SIM_API_KEY
from tests.pipeline import Pipeline
from tests.support import jsonl, request_lines

DESCRIPTION = "Nightly eval — café ☕ 夜"


def two_per_batch(pipeline: Pipeline) -> None:
    pipeline.submit_function.module.submitter._limits = Limits(max_requests=2)


def client(sim: BatchSimulator) -> openai.OpenAI:
    return openai.OpenAI(api_key=SIM_API_KEY, base_url=sim.base_url, max_retries=0)


def test_the_files_metadata_reaches_every_batch_unchanged_and_shows_in_summary_and_email(
    pipeline: Pipeline,
) -> None:
    two_per_batch(pipeline)
    metadata = {"customer_id": "user_123", "batch_description": encode_value(DESCRIPTION)}
    outcome = pipeline.submit("requests/tagged.jsonl", jsonl(request_lines(3)), metadata)

    assert len(outcome["batch_ids"]) == 2
    for batch_id in outcome["batch_ids"]:
        sent = client(pipeline.sim).batches.retrieve(batch_id).metadata
        assert sent is not None
        assert (sent["customer_id"], sent["batch_description"]) == ("user_123", DESCRIPTION)
        assert len(sent) == 4
    job = pipeline.run(outcome["job_id"])
    assert job["metadata"] == {"batch_description": DESCRIPTION, "customer_id": "user_123"}
    summary = json.loads(pipeline.read(pipeline.result(outcome["job_id"], "summary.json")))
    assert summary["metadata"] == job["metadata"]
    (email,) = pipeline.inbox.messages()
    assert f"batch_description = {DESCRIPTION}" in email["body"]


@pytest.mark.parametrize(
    ("metadata", "code", "words"),
    [
        ({f"k{n:02}": "v" for n in range(15)}, "metadata_too_many_pairs", "16 pairs"),
        ({"k" * 65: "v"}, "metadata_key_too_long", "OpenAI allows 64"),
        ({"note": "x" * 513}, "metadata_value_too_long", "OpenAI allows 512"),
        ({"batchdrop-output-expiry-seconds": "2592001"}, "metadata_option_invalid", "2,592,000"),
    ],
)
def test_metadata_past_a_limit_is_refused_with_a_report_and_nothing_reaches_openai(
    pipeline: Pipeline, metadata: dict[str, str], code: str, words: str
) -> None:
    outcome = pipeline.submit("requests/overtagged.jsonl", jsonl(request_lines(3)), metadata)

    assert outcome["status"] == "rejected"
    job = pipeline.job(outcome["job_id"])
    assert job["counts_by_code"] == {code: 1}
    report = json.loads(pipeline.read(job["report_key"]))
    assert words in report["problems"][0]["message"]
    (email,) = pipeline.inbox.messages()
    assert words in email["body"]
    assert pipeline.sim.file_ids(purpose=None) == []  # no file, so no batch either
    assert pipeline.sim.batches == {}


# Kept, not deleted once the job is reported, so that their expiry can be read afterwards.
@pytest.mark.parametrize("stack", [{"DeleteOpenAIFiles": "false"}], indirect=True)
def test_input_files_and_batch_outputs_expire_as_the_deployment_and_the_file_say(
    load_function: Callable[..., Function],
    stack: DeployedStack,
    openai_sim: BatchSimulator,
    inbox: Inbox,
) -> None:
    pipeline = Pipeline(load_function, stack, openai_sim, inbox)
    pipeline.submit_function = load_function(
        "SubmitFunction", INPUT_FILE_EXPIRY_SECONDS="7200", OUTPUT_FILE_EXPIRY_SECONDS="86400"
    )
    by_deployment = pipeline.submit("requests/plain.jsonl", jsonl(request_lines(2)))
    by_file = pipeline.submit(
        "requests/own.jsonl",
        jsonl(request_lines(2)),
        {"batchdrop-input-expiry-seconds": "3600", "batchdrop-output-expiry-seconds": "172800"},
    )

    for outcome, input_seconds, output_seconds in (
        (by_deployment, 7200, 86400),
        (by_file, 3600, 172800),
    ):
        (batch_id,) = outcome["batch_ids"]
        pipeline.run(outcome["job_id"])
        batch = client(openai_sim).batches.retrieve(batch_id)
        assert not any(key.startswith("batchdrop-") for key in batch.metadata or {})
        uploaded = client(openai_sim).files.retrieve(batch.input_file_id)
        assert uploaded.expires_at == uploaded.created_at + input_seconds
        assert batch.output_file_id is not None
        output = client(openai_sim).files.retrieve(batch.output_file_id)
        assert output.expires_at == output.created_at + output_seconds


def costly_lines(count: int) -> list[dict[str, Any]]:
    """Chat requests to a reasoning model with prompts over 1,024 tokens: the simulator reports
    cached tokens for such prompts and reasoning tokens for o-series models."""
    lines = request_lines(count, model="o3-mini")
    for line in lines:
        line["body"]["messages"] = [{"role": "user", "content": "word " * 1500}]
    return lines


def test_usage_with_cached_and_reasoning_tokens_is_summed_over_a_two_part_job(
    pipeline: Pipeline,
) -> None:
    two_per_batch(pipeline)
    outcome = pipeline.submit("requests/costly.jsonl", jsonl(costly_lines(4)))
    assert len(outcome["batch_ids"]) == 2

    job = pipeline.run(outcome["job_id"])

    usages = [pipeline.sim.batches[b]["usage"] for b in outcome["batch_ids"]]
    expected = {
        "input_tokens": sum(u["input_tokens"] for u in usages),
        "cached_tokens": sum(u["input_tokens_details"]["cached_tokens"] for u in usages),
        "output_tokens": sum(u["output_tokens"] for u in usages),
        "reasoning_tokens": sum(u["output_tokens_details"]["reasoning_tokens"] for u in usages),
        "total_tokens": sum(u["total_tokens"] for u in usages),
    }
    assert expected["cached_tokens"] > 0
    assert expected["reasoning_tokens"] > 0
    assert job["usage"] == expected
    assert job["models"] == sorted({pipeline.sim.batches[b]["model"] for b in outcome["batch_ids"]})
    summary = json.loads(pipeline.read(pipeline.result(outcome["job_id"], "summary.json")))
    assert summary["usage"] == expected
    (email,) = pipeline.inbox.messages()
    assert (
        f"{expected['cached_tokens']:,} cached, {expected['reasoning_tokens']:,} reasoning"
        in (email["body"])
    )
