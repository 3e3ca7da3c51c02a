"""Save a job's images and videos as files beside its results.jsonl, for a person to open.

Images are decoded from the merged results (`domain/media.py`). Videos are fetched from OpenAI,
which serves a batch's videos for only 24 hours after the batch ends: finishing runs right after
that, so this is the moment to keep them. Every file is written create-only, like every other
result: a finish that runs again skips what an earlier attempt saved, and nothing is overwritten.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger

from batchdrop import SERVICE
from batchdrop.domain.body_rules import VIDEOS_ENDPOINT
from batchdrop.domain.lines import close_stream
from batchdrop.domain.media import IMAGE_ENDPOINTS, completed_videos, save_images
from batchdrop.errors import AlreadyWrittenError, OpenAIError
from batchdrop.ports import BatchAPI, ObjectStore

logger = Logger(service=SERVICE, child=True)

MAX_LISTED_MEDIA = 1_000  # file names listed in summary.json; all of them are counted


@dataclass
class SavedMedia:
    """The media files of one round's results: their names beside results.jsonl (the first
    MAX_LISTED_MEDIA), how many there are, and the videos OpenAI no longer served."""

    count: int = 0
    files: list[str] = field(default_factory=list)
    missing: list[dict[str, Any]] = field(default_factory=list)

    def add(self, name: str) -> None:
        self.count += 1
        if len(self.files) < MAX_LISTED_MEDIA:
            self.files.append(name)

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "files": self.files, "missing": self.missing}


class MediaSaver:
    def __init__(self, *, objects: ObjectStore, api: BatchAPI) -> None:
        self._objects = objects
        self._api = api

    def save(self, endpoint: str, bucket: str, prefix: str, workdir: Path) -> SavedMedia | None:
        """Save the media of `prefix`results.jsonl beside it; None for an endpoint without any."""
        if endpoint in IMAGE_ENDPOINTS:
            return self._save_images(bucket, prefix, workdir)
        if endpoint == VIDEOS_ENDPOINT:
            return self._save_videos(bucket, prefix)
        return None

    def _save_images(self, bucket: str, prefix: str, workdir: Path) -> SavedMedia:
        saved = SavedMedia()

        def save(name: str, path: Path) -> None:
            with suppress(AlreadyWrittenError):  # an earlier attempt of this round saved it
                self._objects.upload_file(path, bucket, f"{prefix}{name}", create_only=True)
            saved.add(name)

        results = self._objects.open(bucket, f"{prefix}results.jsonl")
        try:
            save_images(results, workdir, save)
        finally:
            close_stream(results)
        logger.info("images saved", extra={"prefix": prefix, "count": saved.count})
        return saved

    def _save_videos(self, bucket: str, prefix: str) -> SavedMedia:
        saved = SavedMedia()
        results = self._objects.open(bucket, f"{prefix}results.jsonl")
        try:
            for video in completed_videos(results):
                key = f"{prefix}{video.name}"
                if self._objects.size(bucket, key) is None and not self._fetch(
                    video.video_id, bucket, key
                ):
                    saved.missing.append({"file": video.name, "video_id": video.video_id})
                    continue
                saved.add(video.name)
        finally:
            close_stream(results)
        logger.info(
            "videos saved",
            extra={"prefix": prefix, "count": saved.count, "missing": len(saved.missing)},
        )
        return saved

    def _fetch(self, video_id: str, bucket: str, key: str) -> bool:
        """Copy one video into S3; False if OpenAI refuses it for good (e.g. it expired). An
        error that may clear is raised, so that a later tick tries again."""
        try:
            with (
                suppress(AlreadyWrittenError),  # an overlapping finish saved it meanwhile
                self._api.video_content(video_id) as content,
            ):
                self._objects.upload_stream(content, bucket, key, create_only=True)
        except OpenAIError as error:
            if error.retryable:
                raise
            logger.warning("video not fetched", extra={"video_id": video_id, "error": str(error)})
            return False
        return True
