"""A dropped file's S3 metadata: forwarded to every batch, refused past OpenAI's limits, and the
`batchdrop-` options (expiry) that are read but never forwarded."""

from __future__ import annotations

import pytest

from batchdrop.domain.file_options import FileOptions, decode_value, encode_value, read_options
from batchdrop.domain.limits import Limits
from tests.support import jsonl, request_lines
from tests.unit.fakes.world import BUCKET, Options, World

KEY = "requests/tagged.jsonl"


def test_every_pair_goes_to_every_batch_under_its_own_key_unicode_included() -> None:
    world = World(Options(limits=Limits(max_requests=2)))
    metadata = {
        "customer_id": "user_123",
        "batch_description": encode_value("Nightly eval — café ☕ 夜"),
    }
    source = world.drop(KEY, jsonl(request_lines(3)), metadata)

    outcome = world.submitter().submit(source)

    assert len(outcome.batch_ids) == 2
    for batch_id in outcome.batch_ids:
        sent = world.api.batches[batch_id]["metadata"]
        assert sent["customer_id"] == "user_123"
        assert sent["batch_description"] == "Nightly eval — café ☕ 夜"
        assert len(sent) == 4  # the user's two, batchdrop's two
    job = world.store.job(source.job_id)
    assert job["metadata"] == {
        "batch_description": "Nightly eval — café ☕ 夜",
        "customer_id": "user_123",
    }


def test_fourteen_pairs_are_the_most_a_file_may_carry() -> None:
    world = World()
    metadata = {f"k{n:02}": "v" for n in range(14)}
    outcome = world.submitter().submit(world.drop(KEY, jsonl(request_lines(1)), metadata))

    (batch_id,) = outcome.batch_ids
    assert len(world.api.batches[batch_id]["metadata"]) == 16  # OpenAI's limit, reached


@pytest.mark.parametrize(
    ("metadata", "code", "words"),
    [
        ({f"k{n:02}": "v" for n in range(15)}, "metadata_too_many_pairs", "16 pairs"),
        ({"k" * 65: "v"}, "metadata_key_too_long", "64"),
        ({"note": "x" * 513}, "metadata_value_too_long", "512"),
        ({"submission_token": "mine"}, "metadata_key_reserved", "batchdrop's own"),
        ({"batchdrop-input-expiry-seconds": "60"}, "metadata_option_invalid", "3,600"),
        ({"batchdrop-colour": "blue"}, "metadata_option_unknown", "not a batchdrop option"),
    ],
)
def test_metadata_past_openais_limits_is_refused_with_a_report_before_any_upload(
    metadata: dict[str, str], code: str, words: str
) -> None:
    world = World()
    source = world.drop(KEY, jsonl(request_lines(3)), metadata)

    outcome = world.submitter().submit(source)

    assert outcome.status == "rejected"
    job = world.store.job(source.job_id)
    assert job["counts_by_code"] == {code: 1}
    report = world.objects.read_json(BUCKET, job["report_key"])
    assert report is not None
    assert words in report[0]["problems"][0]["message"]
    (email,) = world.publisher.sent
    assert words in email.body
    assert world.api.calls == []  # no file, no batch


def test_a_value_of_exactly_512_characters_and_a_key_of_64_pass() -> None:
    world = World()
    metadata = {"k" * 64: "x" * 512}
    outcome = world.submitter().submit(world.drop(KEY, jsonl(request_lines(1)), metadata))

    (batch_id,) = outcome.batch_ids
    assert world.api.batches[batch_id]["metadata"]["k" * 64] == "x" * 512


def test_expiry_options_apply_to_the_file_and_its_batches_and_are_not_forwarded() -> None:
    world = World()
    metadata = {
        "batchdrop-input-expiry-seconds": "7200",
        "batchdrop-output-expiry-seconds": "86400",
        "team": "evals",
    }
    outcome = world.submitter().submit(world.drop(KEY, jsonl(request_lines(2)), metadata))

    (batch_id,) = outcome.batch_ids
    batch = world.api.batches[batch_id]
    assert world.api.file_expiry[batch["input_file_id"]] == 7200
    assert world.api.output_expiry[batch_id] == 86400
    assert not any(key.startswith("batchdrop-") for key in batch["metadata"])
    assert batch["metadata"]["team"] == "evals"


def test_without_options_the_deployments_expiry_applies() -> None:
    world = World(Options(input_expiry_seconds=3600, output_expiry_seconds=2_592_000))
    outcome = world.submitter().submit(world.drop(KEY, jsonl(request_lines(2))))

    (batch_id,) = outcome.batch_ids
    batch = world.api.batches[batch_id]
    assert world.api.file_expiry[batch["input_file_id"]] == 3600
    assert world.api.output_expiry[batch_id] == 2_592_000


@pytest.mark.parametrize(
    ("on_the_wire", "forwarded"),
    [
        ("=?UTF-8?B?Q2Fmw6kg4piV?=", "Café ☕"),  # as S3 itself encodes a non-ASCII value
        ("=?utf-8?q?caf=C3=A9?=", "café"),
        ("a=?b", "a=?b"),  # no encoded word: as it came
        ("plain text, spaces kept  ", "plain text, spaces kept  "),
    ],
)
def test_rfc_2047_values_are_decoded_before_they_are_forwarded(
    on_the_wire: str, forwarded: str
) -> None:
    options = read_options({"Note": on_the_wire})
    assert isinstance(options, FileOptions)
    assert options.metadata == {"note": forwarded}
    assert decode_value(encode_value(forwarded)) == forwarded


def test_a_value_is_measured_as_the_user_wrote_it_not_as_s3_encodes_it() -> None:
    value = "é" * 512  # 512 characters, far longer once encoded for S3
    assert isinstance(read_options({"note": encode_value(value)}), FileOptions)
    assert isinstance(read_options({"note": encode_value(value + "é")}), list)
