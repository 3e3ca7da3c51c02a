"""The batch endpoints added to the SDK last (moderations, images, videos), read through the SDK.

The official SDK's types parse every output body; images decode to real PNGs; a batch's
videos download for a day after the batch ends, and are gone after.
"""

from __future__ import annotations

import base64
import struct
import zlib
from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.types import ImagesResponse, ModerationCreateResponse, Video

from local.simulator import BatchSimulator

from .batch_inputs import Endpoint, finish, line_for, result_lines, submit

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DAY = 24 * 3600


def _line(endpoint: str, custom_id: str, model: str | None, **body: Any) -> dict[str, Any]:
    line = line_for(endpoint, custom_id, model or "")
    if model is None:
        del line["body"]["model"]
    line["body"].update(body)
    return line


def _outputs(
    sim: BatchSimulator, client: OpenAI, lines: list[dict[str, Any]], endpoint: Endpoint
) -> list[dict[str, Any]]:
    done = finish(sim, client, submit(client, lines, endpoint))
    assert done.status == "completed", done.errors
    return [line["response"]["body"] for line in result_lines(client, done.output_file_id)]


def png_size(content: bytes) -> tuple[int, int]:
    """Decode a PNG as a viewer would: signature, CRCs, and the pixel rows in IDAT."""
    assert content.startswith(PNG_SIGNATURE)
    chunks: dict[bytes, bytes] = {}
    at = len(PNG_SIGNATURE)
    while at < len(content):
        (length,) = struct.unpack(">I", content[at : at + 4])
        kind, data = content[at + 4 : at + 8], content[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", content[at + 8 + length : at + 12 + length])
        assert crc == zlib.crc32(kind + data)
        chunks[kind] = chunks.get(kind, b"") + data
        at += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 2)
    assert len(zlib.decompress(chunks[b"IDAT"])) == height * (1 + 3 * width)
    assert b"IEND" in chunks
    return width, height


@pytest.mark.parametrize(
    ("endpoint", "model", "shape"),
    [
        ("/v1/moderations", "omni-moderation-latest", ModerationCreateResponse),
        ("/v1/images/generations", "gpt-image-2", ImagesResponse),
        ("/v1/images/edits", "gpt-image-2", ImagesResponse),
        ("/v1/videos", "sora-2-pro", Video),
    ],
)
def test_the_sdk_accepts_the_batch_and_parses_each_output_body(
    sim: BatchSimulator, client: OpenAI, endpoint: Endpoint, model: str, shape: Any
) -> None:
    batch = submit(client, [line_for(endpoint, f"c{i}", model) for i in range(3)], endpoint)
    done = finish(sim, client, batch)

    outputs = result_lines(client, done.output_file_id)

    assert (batch.endpoint, done.status, done.model, len(outputs)) == (
        endpoint,
        "completed",
        model,
        3,
    )
    parsed = [shape.model_validate(line["response"]["body"]) for line in outputs]
    assert {type(body) for body in parsed} == {shape}


def test_generated_images_are_png_files_in_the_requested_aspect_ratio(
    sim: BatchSimulator, client: OpenAI
) -> None:
    lines = [_line("/v1/images/generations", "wide", "gpt-image-2", n=2, quality="high")]

    [body] = _outputs(sim, client, lines, "/v1/images/generations")

    response = ImagesResponse.model_validate(body)
    assert (response.output_format, response.size, response.quality) == ("png", "1536x1024", "high")
    assert response.data is not None
    pictures = [base64.b64decode(image.b64_json or "") for image in response.data]
    assert [png_size(picture) for picture in pictures] == [(16, 11), (16, 11)]
    assert pictures[0] != pictures[1]
    assert response.usage is not None
    assert response.usage.output_tokens == 2 * 6240  # 1536x1024 at high, twice


def test_pictures_can_be_made_large(sim: BatchSimulator, client: OpenAI) -> None:
    sim.picture_bytes = 300_000

    [body] = _outputs(
        sim,
        client,
        [_line("/v1/images/generations", "big", "gpt-image-2")],
        "/v1/images/generations",
    )

    picture = base64.b64decode(body["data"][0]["b64_json"])
    assert 290_000 < len(picture) < 320_000
    assert png_size(picture) == (316, 316)


@pytest.mark.parametrize(
    ("output_format", "signature"),
    [("svg", b"<svg "), ("jpeg", b"\xff\xd8\xff"), ("webp", b"RIFF"), ("gif", b"GIF89a")],
)
def test_other_formats_carry_their_signature(
    sim: BatchSimulator, client: OpenAI, output_format: str, signature: bytes
) -> None:
    line = _line("/v1/images/generations", "f", "gpt-image-2", output_format=output_format)

    [body] = _outputs(sim, client, [line], "/v1/images/generations")

    assert body["output_format"] == output_format
    assert base64.b64decode(body["data"][0]["b64_json"]).startswith(signature)


def test_image_batch_usage_is_the_sum_of_the_lines_usage(
    sim: BatchSimulator, client: OpenAI
) -> None:
    lines = [line_for("/v1/images/edits", f"e{i}", "gpt-image-2") for i in range(3)]
    done = finish(sim, client, submit(client, lines, "/v1/images/edits"))

    usages = [
        ImagesResponse.model_validate(line["response"]["body"]).usage
        for line in result_lines(client, done.output_file_id)
    ]

    assert done.usage is not None
    assert done.usage.input_tokens == sum(u.input_tokens for u in usages if u)
    assert done.usage.output_tokens == sum(u.output_tokens for u in usages if u)
    assert done.usage.input_tokens_details.cached_tokens == 0
    assert all(u and u.input_tokens_details.image_tokens == 2 * 272 for u in usages)


SORA_SHUT_DOWN = "ignore:The Sora API:DeprecationWarning"


@pytest.mark.filterwarnings(SORA_SHUT_DOWN)
def test_a_video_downloads_for_a_day_after_the_batch_completes(
    sim: BatchSimulator, client: OpenAI
) -> None:
    batch = submit(client, [line_for("/v1/videos", "clip", "sora-2")], "/v1/videos")
    done = finish(sim, client, batch)
    [line] = result_lines(client, done.output_file_id)
    video = Video.model_validate(line["response"]["body"])
    assert done.completed_at is not None
    assert (video.status, video.seconds, video.expires_at) == (
        "completed",
        "8",
        done.completed_at + DAY,
    )

    with pytest.deprecated_call():  # the SDK marks the Sora API as shut down
        content = client.videos.download_content(video.id).content
    thumbnail = client.videos.download_content(video.id, variant="thumbnail")

    assert content[4:12] == b"ftypisom"
    assert content == sim.video_content(video.id)
    assert thumbnail.response.headers["content-type"] == "image/webp"
    sim.clock.advance(done.completed_at + DAY - sim.clock.now())
    with pytest.raises(openai.NotFoundError) as gone:
        client.videos.download_content(video.id)
    assert gone.value.body == {
        "message": f"The content of video {video.id} has expired and can no longer be downloaded.",
        "type": "invalid_request_error",
        "param": "video_id",
        "code": None,
    }


@pytest.mark.filterwarnings(SORA_SHUT_DOWN)
def test_an_unknown_video_is_404(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.videos.download_content("video_nope")


def _failed(sim: BatchSimulator, client: OpenAI, endpoint: Endpoint, line: dict[str, Any]) -> Any:
    batch = submit(client, [line], endpoint)
    sim.clock.advance(60)
    failed = client.batches.retrieve(batch.id)
    assert failed.status == "failed"
    assert failed.errors is not None
    assert failed.errors.data is not None
    return [(e.code, e.param, e.line) for e in failed.errors.data]


TOO_MANY_IMAGES = [{"file_id": f"file-{i}"} for i in range(17)]


@pytest.mark.parametrize(
    ("endpoint", "model", "changes", "code", "param"),
    [
        ("/v1/moderations", None, {"input": None}, "missing_required_parameter", "body.input"),
        ("/v1/moderations", None, {"stream": True}, "invalid_value", "body.stream"),
        (
            "/v1/moderations",
            "text-moderation-latest",
            {"input": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
            "invalid_value",
            "body.input[0]",
        ),
        (
            "/v1/images/generations",
            "gpt-image-2",
            {"prompt": None},
            "missing_required_parameter",
            "body.prompt",
        ),
        ("/v1/images/generations", "gpt-image-2", {"n": 11}, "invalid_value", "body.n"),
        (
            "/v1/images/edits",
            "gpt-image-2",
            {"images": TOO_MANY_IMAGES},
            "array_above_max_length",
            "body.images",
        ),
        ("/v1/images/edits", "gpt-image-2", {"image": "@photo.png"}, "invalid_value", "body.image"),
        (
            "/v1/images/edits",
            "gpt-image-2",
            {"mask": {"file_id": "file-a", "image_url": "https://x/m.png"}},
            "invalid_value",
            "body.mask",
        ),
        ("/v1/images/edits", "dall-e-2", {}, "invalid_value", "body.model"),
        ("/v1/videos", None, {"prompt": None}, "missing_required_parameter", "body.prompt"),
        ("/v1/videos", None, {"seconds": 8}, "invalid_value", "body.seconds"),
        (
            "/v1/videos",
            None,
            {"input_reference": "@cat.png"},
            "invalid_type",
            "body.input_reference",
        ),
    ],
)
def test_a_body_that_breaks_the_batch_rules_fails_the_batch(
    sim: BatchSimulator,
    client: OpenAI,
    endpoint: Endpoint,
    model: str | None,
    changes: dict[str, Any],
    code: str,
    param: str,
) -> None:
    line = _line(endpoint, "bad", model)
    for name, value in changes.items():
        if value is None:
            line["body"].pop(name, None)
        else:
            line["body"][name] = value

    assert _failed(sim, client, endpoint, line) == [(code, param, 1)]


def test_models_default_where_the_endpoint_has_one(sim: BatchSimulator, client: OpenAI) -> None:
    for endpoint, model in (
        ("/v1/moderations", "omni-moderation-latest"),
        ("/v1/videos", "sora-2"),
    ):
        done = finish(sim, client, submit(client, [_line(endpoint, "m", None)], endpoint))
        assert (done.status, done.model) == ("completed", model)


def test_an_embeddings_batch_holds_at_most_50000_inputs(
    sim: BatchSimulator, client: OpenAI
) -> None:
    lines = [
        _line("/v1/embeddings", f"e{i}", "text-embedding-3-small", input=["x"] * 25_001)
        for i in range(2)
    ]

    batch = submit(client, lines, "/v1/embeddings")
    sim.clock.advance(60)
    failed = client.batches.retrieve(batch.id)

    assert failed.status == "failed"
    assert failed.errors is not None
    assert [(e.code, e.line) for e in failed.errors.data or []] == [("too_many_tasks", None)]
