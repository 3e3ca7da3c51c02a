"""What a batch line's `body` may hold, per endpoint, as OpenAI's batch guide and API reference
document it (see /work/issue13-facts.md, sections 1b and 1c).

Only the documented batch rules and each endpoint's required parameters are checked; the
simulator does not second-guess every optional parameter. A line that breaks a rule fails the
batch at the end of `validating`, as a missing `model` does, with the line number and the
parameter (`body.<name>`) in `batch.errors`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import images, videos
from .outputs import DEFAULT_MODERATION_MODEL

MAX_IMAGE_URL_CHARS = 20_971_520  # `image_url` maxLength in the image edit JSON body
MAX_EDIT_IMAGES = 16  # "up to 16 images" for GPT image models
MAX_IMAGES_PER_REQUEST = 10  # `n`: "Must be between 1 and 10"
OMNI_MODERATION_PREFIX = "omni-moderation"


@dataclass(frozen=True)
class Problem:
    code: str
    message: str
    param: str  # without the "body." prefix


def _missing(name: str) -> Problem:
    return Problem("missing_required_parameter", f"Missing required parameter: '{name}'.", name)


def _required_text(body: dict[str, Any], name: str) -> list[Problem]:
    value = body.get(name)
    if value is None:
        return [_missing(name)]
    if not isinstance(value, str):
        return [Problem("invalid_type", f"Invalid type for '{name}': expected a string.", name)]
    return []


def _one_of(body: dict[str, Any], name: str, allowed: tuple[str, ...]) -> list[Problem]:
    value = body.get(name)
    if value is None or value in allowed:
        return []
    choices = ", ".join(repr(choice) for choice in allowed)
    return [
        Problem(
            "invalid_value",
            f"Invalid value for '{name}': {value!r}. Supported values are: {choices}.",
            name,
        )
    ]


def _no_stream(body: dict[str, Any]) -> list[Problem]:
    if body.get("stream") is True:
        return [Problem("invalid_value", "Streaming is not supported in the Batch API.", "stream")]
    return []


def _reference(value: object, name: str) -> list[Problem]:
    """An image reference of the JSON bodies: exactly one of `file_id` and `image_url`."""
    if not isinstance(value, dict):
        return [
            Problem(
                "invalid_type",
                f"Invalid type for '{name}': expected an object with 'file_id' or 'image_url'. "
                "Batch bodies are JSON: upload the file first and reference it.",
                name,
            )
        ]
    given = [key for key in ("file_id", "image_url") if key in value]
    if len(given) != 1:
        return [
            Problem(
                "invalid_value",
                f"Invalid '{name}': give exactly one of 'file_id' and 'image_url'.",
                name,
            )
        ]
    reference = value[given[0]]
    if not isinstance(reference, str) or not reference:
        return [
            Problem(
                "invalid_type", f"Invalid type for '{name}.{given[0]}': expected a string.", name
            )
        ]
    if len(reference) > MAX_IMAGE_URL_CHARS:
        return [
            Problem(
                "string_above_max_length",
                f"Invalid '{name}.image_url': string too long. Expected a string with maximum "
                f"length {MAX_IMAGE_URL_CHARS}, but got a string with length {len(reference)} "
                "instead.",
                name,
            )
        ]
    return []


# -- moderations --------------------------------------------------------------------------


def _moderation_part(part: object, index: int, omni: bool) -> list[Problem]:
    name = f"input[{index}]"
    if isinstance(part, str):
        return []
    if not isinstance(part, dict) or part.get("type") not in {"text", "image_url"}:
        return [
            Problem(
                "invalid_value",
                f"Invalid '{name}': expected a string, or an object of type 'text' or 'image_url'.",
                name,
            )
        ]
    if part["type"] == "image_url" and not omni:
        return [
            Problem(
                "invalid_value",
                f"Invalid '{name}': image inputs are only supported by omni-moderation models.",
                name,
            )
        ]
    return []


def moderation_problems(body: dict[str, Any]) -> list[Problem]:
    value = body.get("input")
    problems = _no_stream(body)
    if value is None:
        return [*problems, _missing("input")]
    if isinstance(value, str):
        return problems
    if not isinstance(value, list) or not value:
        return [
            *problems,
            Problem(
                "invalid_type",
                "Invalid type for 'input': expected a string, an array of strings, or an array "
                "of text and image parts.",
                "input",
            ),
        ]
    omni = str(body.get("model", DEFAULT_MODERATION_MODEL)).startswith(OMNI_MODERATION_PREFIX)
    for index, part in enumerate(value):
        problems += _moderation_part(part, index, omni)
    return problems


# -- images -------------------------------------------------------------------------------


def _image_count(body: dict[str, Any]) -> list[Problem]:
    n = body.get("n")
    if n is None or (isinstance(n, int) and 1 <= n <= MAX_IMAGES_PER_REQUEST):
        return []
    return [
        Problem(
            "invalid_value",
            f"Invalid 'n': expected an integer between 1 and {MAX_IMAGES_PER_REQUEST}, got {n!r}.",
            "n",
        )
    ]


def generation_problems(body: dict[str, Any]) -> list[Problem]:
    return [
        *_required_text(body, "prompt"),
        *_image_count(body),
        *_one_of(body, "output_format", images.OUTPUT_FORMATS),
    ]


def _edit_images(body: dict[str, Any]) -> list[Problem]:
    if "image" in body:
        return [
            Problem(
                "invalid_value",
                "Batch image edits take the JSON body: pass 'images' as [{file_id} or "
                "{image_url}] instead of multipart 'image' uploads.",
                "image",
            )
        ]
    refs = body.get("images")
    if refs is None:
        return [_missing("images")]
    if not isinstance(refs, list) or not refs:
        return [Problem("invalid_type", "Invalid type for 'images': expected an array.", "images")]
    if len(refs) > MAX_EDIT_IMAGES:
        return [
            Problem(
                "array_above_max_length",
                f"Invalid 'images': array too long. Expected an array with maximum length "
                f"{MAX_EDIT_IMAGES}, but got an array with length {len(refs)} instead.",
                "images",
            )
        ]
    return [problem for i, ref in enumerate(refs) for problem in _reference(ref, f"images[{i}]")]


def edit_problems(body: dict[str, Any]) -> list[Problem]:
    problems = [*generation_problems(body), *_edit_images(body)]
    if "mask" in body:
        problems += _reference(body["mask"], "mask")
    if str(body.get("model", "")).startswith("dall-e"):
        problems.append(
            Problem(
                "invalid_value",
                "JSON image edits support GPT image models only; DALL-E edits need a "
                "multipart upload, which a batch cannot carry.",
                "model",
            )
        )
    return problems


# -- videos -------------------------------------------------------------------------------


def video_problems(body: dict[str, Any]) -> list[Problem]:
    problems = [
        *_required_text(body, "prompt"),
        *_one_of(body, "model", videos.MODELS),
        *_one_of(body, "seconds", videos.SECONDS),
        *_one_of(body, "size", videos.SIZES),
    ]
    if "input_reference" in body:
        problems += _reference(body["input_reference"], "input_reference")
    return problems


RULES: dict[str, Callable[[dict[str, Any]], list[Problem]]] = {
    "/v1/moderations": moderation_problems,
    "/v1/images/generations": generation_problems,
    "/v1/images/edits": edit_problems,
    "/v1/videos": video_problems,
}


def body_problems(endpoint: str, body: dict[str, Any]) -> list[Problem]:
    """Everything wrong with one line's body for `endpoint` (nothing for the text endpoints)."""
    rule = RULES.get(endpoint)
    return rule(body) if rule is not None else []
