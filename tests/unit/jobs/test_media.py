"""Tests for saving a job's images and videos beside its results, on small fakes of S3 and
OpenAI's video content."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from batchdrop.errors import AlreadyWrittenError, OpenAIError
from batchdrop.jobs.media import MAX_LISTED_MEDIA, MediaSaver

PREFIX = "results/job/"


class Store:
    """S3 as MediaSaver uses it: create-only writes refused where an object is."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.writes = 0

    def open(self, bucket: str, key: str) -> io.BytesIO:
        return io.BytesIO(self.objects[f"{bucket}/{key}"])

    def size(self, bucket: str, key: str) -> int | None:
        found = self.objects.get(f"{bucket}/{key}")
        return None if found is None else len(found)

    def upload_file(self, path: Path, bucket: str, key: str, *, create_only: bool) -> None:
        self._write(f"{bucket}/{key}", path.read_bytes(), create_only)

    def upload_stream(
        self, source: io.BytesIO, bucket: str, key: str, *, create_only: bool
    ) -> None:
        self._write(f"{bucket}/{key}", source.read(), create_only)

    def _write(self, where: str, body: bytes, create_only: bool) -> None:
        assert create_only  # no result is ever overwritten
        if where in self.objects:
            raise AlreadyWrittenError(where)
        self.writes += 1
        self.objects[where] = body


class Videos:
    def __init__(self, **content: bytes | OpenAIError) -> None:
        self.content = content
        self.fetched: list[str] = []

    @contextmanager
    def video_content(self, video_id: str) -> Iterator[io.BytesIO]:
        self.fetched.append(video_id)
        found = self.content[video_id]
        if isinstance(found, OpenAIError):
            raise found
        yield io.BytesIO(found)


def line(custom_id: str, response: Any, status: str = "succeeded") -> bytes:
    document = {"line": 1, "custom_id": custom_id, "status": status, "status_code": 200,
                "response": response, "error": None}  # fmt: skip
    return json.dumps(document, separators=(",", ":")).encode() + b"\n"


def video(video_id: str) -> dict[str, Any]:
    return {"id": video_id, "object": "video", "status": "completed"}


def saver(store: Store, api: Videos | None = None) -> MediaSaver:
    return MediaSaver(objects=store, api=api or Videos())  # type: ignore[arg-type]


def test_images_are_saved_once_and_listed_again_by_a_later_attempt(tmp_path: Path) -> None:
    store = Store()
    body = {"data": [{"b64_json": base64.b64encode(b"\x89PNG one").decode()}]}
    store.objects[f"b/{PREFIX}results.jsonl"] = line("a", body)

    first = saver(store).save("/v1/images/generations", "b", PREFIX, tmp_path)
    again = saver(store).save("/v1/images/generations", "b", PREFIX, tmp_path)

    assert store.objects[f"b/{PREFIX}a.png"] == b"\x89PNG one"
    assert store.writes == 1
    assert first is not None
    assert again is not None
    assert first.to_dict() == again.to_dict() == {"count": 1, "files": ["a.png"], "missing": []}


def test_videos_are_fetched_unless_saved_and_a_gone_one_is_missing(tmp_path: Path) -> None:
    store = Store()
    store.objects[f"b/{PREFIX}results.jsonl"] = b"".join(
        [line("new", video("v1")), line("kept", video("v2")), line("gone", video("v3"))]
    )
    store.objects[f"b/{PREFIX}kept.mp4"] = b"saved before"
    api = Videos(v1=b"mp4 bytes", v3=OpenAIError(404, "not_found", "expired"))

    media = saver(store, api).save("/v1/videos", "b", PREFIX, tmp_path)

    assert api.fetched == ["v1", "v3"]
    assert store.objects[f"b/{PREFIX}new.mp4"] == b"mp4 bytes"
    assert media is not None
    assert media.to_dict() == {
        "count": 2,
        "files": ["new.mp4", "kept.mp4"],
        "missing": [{"file": "gone.mp4", "video_id": "v3"}],
    }


def test_a_video_error_that_may_clear_fails_the_attempt(tmp_path: Path) -> None:
    store = Store()
    store.objects[f"b/{PREFIX}results.jsonl"] = line("a", video("v1"))
    api = Videos(v1=OpenAIError(503, "server_error", "try later"))
    with pytest.raises(OpenAIError):
        saver(store, api).save("/v1/videos", "b", PREFIX, tmp_path)


def test_text_endpoints_have_no_media(tmp_path: Path) -> None:
    assert saver(Store()).save("/v1/chat/completions", "b", PREFIX, tmp_path) is None


def test_the_listing_is_bounded_and_the_count_is_not(tmp_path: Path) -> None:
    store = Store()
    count = MAX_LISTED_MEDIA + 2
    store.objects[f"b/{PREFIX}results.jsonl"] = b"".join(
        line(f"v{n}", video(f"id{n}")) for n in range(count)
    )
    api = Videos(**{f"id{n}": b"x" for n in range(count)})
    media = saver(store, api).save("/v1/videos", "b", PREFIX, tmp_path)
    assert media is not None
    assert (media.count, len(media.files)) == (count, MAX_LISTED_MEDIA)
