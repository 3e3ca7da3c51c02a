"""What one request's `body` must hold for its endpoint, as far as OpenAI's batch guide and API
reference document it, so that a line OpenAI would refuse is refused before anything is uploaded.

Only documented batch rules and required parameters are checked (see the README's endpoint
table); every other parameter is left for OpenAI to judge. The text endpoints (responses, chat,
completions, embeddings) have no rule here beyond the model every line needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

MODERATIONS_ENDPOINT = "/v1/moderations"
IMAGE_GENERATIONS_ENDPOINT = "/v1/images/generations"
IMAGE_EDITS_ENDPOINT = "/v1/images/edits"
VIDEOS_ENDPOINT = "/v1/videos"
# Endpoints whose body may leave out `model`: OpenAI then uses this one.
DEFAULT_MODELS = {MODERATIONS_ENDPOINT: "omni-moderation-latest", VIDEOS_ENDPOINT: "sora-2"}
MAX_EDIT_IMAGES = 16  # "up to 16 images" for the GPT image models, the only JSON edit models
MAX_IMAGE_URL_CHARS = 20_971_520  # `image_url`'s maxLength in the JSON edit body


@dataclass(frozen=True)
class BodyProblem:
    code: str
    detail: str


def body_problems(endpoint: str, body: dict[str, object]) -> list[BodyProblem]:
    """Everything wrong with one line's body for `endpoint`, in the order a reader fixes it."""
    rule = _RULES.get(endpoint)
    return rule(body) if rule is not None else []


def _moderation(body: dict[str, object]) -> list[BodyProblem]:
    problems = _no_stream(body)
    value = body.get("input")
    if value is None:
        problems.append(
            BodyProblem("missing_input", "body.input is missing; a moderation needs its input")
        )
    elif not isinstance(value, str) and not (isinstance(value, list) and value):
        problems.append(
            BodyProblem(
                "invalid_input",
                "body.input must be a string or a non-empty array (of strings, or of text "
                "and image parts)",
            )
        )
    return problems


def _generation(body: dict[str, object]) -> list[BodyProblem]:
    return _prompt(body)


def _edit(body: dict[str, object]) -> list[BodyProblem]:
    problems = _prompt(body)
    if "image" in body:
        problems.append(
            BodyProblem(
                "multipart_image",
                "body.image is the multipart form, which a batch line cannot carry; pass "
                'body.images as [{"file_id": ...} or {"image_url": ...}] instead',
            )
        )
    refs = body.get("images")
    if refs is None:
        if "image" not in body:
            problems.append(BodyProblem("missing_images", "body.images is missing"))
    elif not isinstance(refs, list) or not 1 <= len(refs) <= MAX_EDIT_IMAGES:
        problems.append(
            BodyProblem(
                "invalid_images",
                f"body.images must be an array of 1 to {MAX_EDIT_IMAGES} image references",
            )
        )
    else:
        problems += [p for i, ref in enumerate(refs) for p in _reference(ref, f"images[{i}]")]
    if "mask" in body:
        problems += _reference(body["mask"], "mask")
    return problems


def _video(body: dict[str, object]) -> list[BodyProblem]:
    problems = _prompt(body)
    if "input_reference" in body:
        problems += _reference(body["input_reference"], "input_reference")
    return problems


def _no_stream(body: dict[str, object]) -> list[BodyProblem]:
    if body.get("stream") is True:
        return [BodyProblem("stream_not_supported", "body.stream is true; a batch cannot stream")]
    return []


def _prompt(body: dict[str, object]) -> list[BodyProblem]:
    prompt = body.get("prompt")
    if isinstance(prompt, str) and prompt:
        return []
    problem = "is missing" if "prompt" not in body else "must be a non-empty string"
    return [BodyProblem("missing_prompt", f"body.prompt {problem}")]


def _reference(value: object, name: str) -> list[BodyProblem]:
    """An image reference of a JSON body: an object with exactly one of file_id and image_url."""
    given = (
        [key for key in ("file_id", "image_url") if key in value] if isinstance(value, dict) else []
    )
    if not isinstance(value, dict) or len(given) != 1:
        return [
            BodyProblem(
                "invalid_image_reference",
                f'body.{name} must be {{"file_id": ...}} or {{"image_url": ...}} (exactly one '
                "of the two); upload a file first and reference it",
            )
        ]
    reference = value[given[0]]
    if not isinstance(reference, str) or not reference:
        return [BodyProblem("invalid_image_reference", f"body.{name}.{given[0]} must be a string")]
    if len(reference) > MAX_IMAGE_URL_CHARS:
        return [
            BodyProblem(
                "invalid_image_reference",
                f"body.{name}.image_url is {len(reference):,} characters, more than the "
                f"{MAX_IMAGE_URL_CHARS:,} OpenAI takes",
            )
        ]
    return []


_RULES: dict[str, Callable[[dict[str, object]], list[BodyProblem]]] = {
    MODERATIONS_ENDPOINT: _moderation,
    IMAGE_GENERATIONS_ENDPOINT: _generation,
    IMAGE_EDITS_ENDPOINT: _edit,
    VIDEOS_ENDPOINT: _video,
}
