"""Every endpoint OpenAI's Batch API accepts, from a dropped file to its results and one email;
images and videos come home as files a person can open."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from batchdrop.domain.media import media_name
from tests.pipeline import Pipeline
from tests.support import jsonl

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EDIT_IMAGES = [{"file_id": "file-source"}, {"image_url": "https://example.com/photo.png"}]
BODIES: dict[str, dict[str, Any]] = {
    "/v1/responses": {"model": "gpt-4.1-mini", "input": "hello"},
    "/v1/chat/completions": {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hello"}],
    },
    "/v1/embeddings": {"model": "text-embedding-3-small", "input": "hello"},
    "/v1/completions": {"model": "gpt-3.5-turbo-instruct", "prompt": "hello"},
    "/v1/moderations": {"model": "omni-moderation-latest", "input": "hello"},
    "/v1/images/generations": {"model": "gpt-image-1", "prompt": "a lighthouse", "n": 2},
    "/v1/images/edits": {"model": "gpt-image-1", "prompt": "add a hat", "images": EDIT_IMAGES},
    "/v1/videos": {"model": "sora-2", "prompt": "waves on a beach", "seconds": "4"},
}
OBJECTS = {
    "/v1/responses": "response",
    "/v1/chat/completions": "chat.completion",
    "/v1/embeddings": "list",
    "/v1/completions": "text_completion",
    "/v1/videos": "video",
}
CUSTOM_IDS = ["first", "fail-second", "third/with slash", "fourth"]


def request_file(endpoint: str) -> bytes:
    return jsonl(
        [
            {"custom_id": custom_id, "method": "POST", "url": endpoint, "body": BODIES[endpoint]}
            for custom_id in CUSTOM_IDS
        ]
    )


@pytest.mark.parametrize("endpoint", list(BODIES))
def test_every_endpoint_brings_results_home_in_input_order_and_emails_once(
    pipeline: Pipeline, endpoint: str
) -> None:
    name = endpoint.removeprefix("/v1/").replace("/", "-")
    outcome = pipeline.submit(f"requests/{name}.jsonl", request_file(endpoint))
    assert outcome["status"] == "submitted", outcome

    job = pipeline.run(outcome["job_id"])

    assert job["status"] == "completed"
    assert job["endpoint"] == endpoint
    results = pipeline.read_jsonl(pipeline.result(outcome["job_id"]))
    assert [r["custom_id"] for r in results] == CUSTOM_IDS
    assert [r["status"] for r in results] == ["succeeded", "failed", "succeeded", "succeeded"]
    succeeded = [r for r in results if r["status"] == "succeeded"]
    if endpoint in OBJECTS:
        assert {r["response"]["object"] for r in succeeded} == {OBJECTS[endpoint]}
    summary = json.loads(pipeline.read(pipeline.result(outcome["job_id"], "summary.json")))
    if endpoint.startswith("/v1/images/"):
        _check_images(pipeline, outcome["job_id"], succeeded, summary)
    elif endpoint == "/v1/videos":
        _check_videos(pipeline, outcome["job_id"], succeeded, summary)
    else:
        assert "media" not in summary
    (email,) = pipeline.inbox.messages()
    assert email["attributes"] == {"status": "completed", "endpoint": endpoint}
    pipeline.tick()
    assert pipeline.inbox.messages() == []


def _check_images(
    pipeline: Pipeline, job_id: str, succeeded: list[dict[str, Any]], summary: dict[str, Any]
) -> None:
    expected: list[str] = []
    for result in succeeded:
        assert result["response"]["output_format"] == "png"
        data = result["response"]["data"]  # results.jsonl keeps the base64 as OpenAI sent it
        several = len(data) > 1
        for index, image in enumerate(data, start=1):
            name = media_name(result["custom_id"], "png", index if several else None)
            saved = pipeline.read(pipeline.result(job_id, name))
            assert saved.startswith(PNG_SIGNATURE)
            assert saved == base64.b64decode(image["b64_json"])
            expected.append(name)
    assert summary["media"] == {"count": len(expected), "files": expected, "missing": []}


def _check_videos(
    pipeline: Pipeline, job_id: str, succeeded: list[dict[str, Any]], summary: dict[str, Any]
) -> None:
    names = []
    for result in succeeded:
        video = result["response"]
        assert video["status"] == "completed"
        name = media_name(result["custom_id"], "mp4")
        assert pipeline.read(pipeline.result(job_id, name)) == pipeline.sim.video_content(
            video["id"]
        )
        names.append(name)
    assert summary["media"] == {"count": 3, "files": names, "missing": []}


def test_a_large_image_line_is_saved_whole(pipeline: Pipeline) -> None:
    pipeline.sim.picture_bytes = 5 * 1024 * 1024  # base64 makes the line ~7 MB: it is streamed
    body = {"model": "gpt-image-1", "prompt": "noise"}
    line = {"custom_id": "big", "method": "POST", "url": "/v1/images/generations", "body": body}
    outcome = pipeline.submit("requests/big-image.jsonl", jsonl([line]))

    job = pipeline.run(outcome["job_id"])

    assert job["status"] == "completed"
    (result,) = pipeline.read_jsonl(pipeline.result(outcome["job_id"]))
    saved = pipeline.read(pipeline.result(outcome["job_id"], "big.png"))
    assert saved.startswith(PNG_SIGNATURE)
    assert len(saved) > 5_000_000  # "about" picture_bytes
    assert saved == base64.b64decode(result["response"]["data"][0]["b64_json"])
    (email,) = pipeline.inbox.messages()
    assert "completed" in email["subject"]


def test_a_video_past_its_download_window_is_reported_missing_not_retried_forever(
    pipeline: Pipeline,
) -> None:
    body = BODIES["/v1/videos"]
    line = {"custom_id": "late", "method": "POST", "url": "/v1/videos", "body": body}
    outcome = pipeline.submit("requests/late-video.jsonl", jsonl([line]))
    pipeline.clock.advance(26 * 3600)  # the batch ended long ago; its video is gone

    job = pipeline.run(outcome["job_id"])

    assert job["status"] == "completed"
    (result,) = pipeline.read_jsonl(pipeline.result(outcome["job_id"]))
    summary = json.loads(pipeline.read(pipeline.result(outcome["job_id"], "summary.json")))
    missing = [{"file": "late.mp4", "video_id": result["response"]["id"]}]
    assert summary["media"] == {"count": 0, "files": [], "missing": missing}
    assert not pipeline.exists(pipeline.result(outcome["job_id"], "late.mp4"))
    (email,) = pipeline.inbox.messages()
    assert "completed" in email["subject"]
