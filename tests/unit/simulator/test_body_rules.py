"""Per-endpoint rules for a batch line's body, as OpenAI's batch guide documents them."""

from __future__ import annotations

from typing import Any

import pytest

from local.simulator.body_rules import MAX_IMAGE_URL_CHARS, body_problems


def _params(endpoint: str, body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p.code, p.param) for p in body_problems(endpoint, body)]


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("/v1/chat/completions", {}),  # the text endpoints have no extra rules here
        ("/v1/moderations", {"input": "text"}),
        ("/v1/moderations", {"input": ["one", "two"]}),
        (
            "/v1/moderations",
            {"input": [{"type": "text", "text": "t"}, {"type": "image_url", "image_url": {}}]},
        ),
        ("/v1/images/generations", {"prompt": "p", "n": 10, "output_format": "webp"}),
        ("/v1/images/edits", {"prompt": "p", "images": [{"file_id": "f"}] * 16}),
        (
            "/v1/images/edits",
            {"prompt": "p", "images": [{"image_url": "data:,x"}], "mask": {"file_id": "f"}},
        ),
        ("/v1/videos", {"prompt": "p", "seconds": "12", "size": "1792x1024"}),
        ("/v1/videos", {"prompt": "p", "input_reference": {"image_url": "https://x/y.png"}}),
    ],
)
def test_bodies_within_the_rules_pass(endpoint: str, body: dict[str, Any]) -> None:
    assert body_problems(endpoint, body) == []


def test_a_moderation_needs_input_and_no_stream() -> None:
    assert _params("/v1/moderations", {"stream": True}) == [
        ("invalid_value", "stream"),
        ("missing_required_parameter", "input"),
    ]


def test_image_parts_need_an_omni_moderation_model() -> None:
    body = {"model": "text-moderation-stable", "input": [{"type": "image_url"}]}

    assert _params("/v1/moderations", body) == [("invalid_value", "input[0]")]


@pytest.mark.parametrize(
    ("images", "expected"),
    [
        (None, [("missing_required_parameter", "images")]),
        ([], [("invalid_type", "images")]),
        ([{"file_id": "f"}] * 17, [("array_above_max_length", "images")]),
        (["file-1"], [("invalid_type", "images[0]")]),
        ([{}], [("invalid_value", "images[0]")]),
        ([{"file_id": 7}], [("invalid_type", "images[0]")]),
        (
            [{"image_url": "x" * (MAX_IMAGE_URL_CHARS + 1)}],
            [("string_above_max_length", "images[0]")],
        ),
    ],
)
def test_edit_images_are_json_references(images: Any, expected: list[tuple[str, str]]) -> None:
    body: dict[str, Any] = {"prompt": "p"}
    if images is not None:
        body["images"] = images

    assert _params("/v1/images/edits", body) == expected


def test_a_video_needs_a_prompt_and_documented_values() -> None:
    body = {"model": "sora-3", "seconds": "5", "size": "640x480"}

    assert _params("/v1/videos", body) == [
        ("missing_required_parameter", "prompt"),
        ("invalid_value", "model"),
        ("invalid_value", "seconds"),
        ("invalid_value", "size"),
    ]
