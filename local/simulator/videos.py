"""Video batches (/v1/videos): `Video` objects in the output, and their content for a while.

OpenAI shut the Sora 2 models and the whole Videos API down on 2026-09-24, with no direct
replacement; the SDK still lists `/v1/videos` among the batch endpoints (its `videos.*` methods
are deprecated since SDK 3.1.0). The simulator keeps serving it as the SDK describes it, so a
client can be tested against the shape; a real account gets nothing from it any more.

A batch's output line holds the `Video` job, not its bytes: the client fetches them with
`GET /v1/videos/{id}/content`. Batch-generated videos can be downloaded for 24 hours after
the batch completes; after that the content call answers 404.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass
from typing import Any

from . import errors
from .lines import LineContext, digest

DEFAULT_MODEL = "sora-2"
MODELS = (
    "sora-2",
    "sora-2-pro",
    "sora-2-2025-10-06",
    "sora-2-pro-2025-10-06",
    "sora-2-2025-12-08",
)
SECONDS = ("4", "8", "12")
SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")
DEFAULT_SECONDS = "4"
DEFAULT_SIZE = "720x1280"
DOWNLOAD_WINDOW = 24 * 3600  # after the batch completes
# The downloadable assets, and what each is served as.
VARIANTS = {"video": "video/mp4", "thumbnail": "image/webp", "spritesheet": "image/jpeg"}
BYTES_PER_SECOND = 1024  # of simulated video: enough to tell one clip's length from another's


def video_id(line: LineContext) -> str:
    return "video_" + digest("video", line.key, size=16)


def video_object(line: LineContext, available_until: int) -> dict[str, Any]:
    body = line.body
    return {
        "id": video_id(line),
        "object": "video",
        "status": "completed",
        "progress": 100,
        "created_at": line.created,
        "completed_at": line.created,
        "expires_at": available_until,
        "model": body.get("model", DEFAULT_MODEL),
        "prompt": body.get("prompt"),
        "remixed_from_video_id": None,
        "seconds": body.get("seconds", DEFAULT_SECONDS),
        "size": body.get("size", DEFAULT_SIZE),
        "error": None,
    }


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def content_bytes(video: str, variant: str, seconds: str) -> bytes:
    """Deterministic bytes of one asset: an MP4-shaped `ftyp` + `mdat` for the video, and a
    short tagged blob for the thumbnail and the spritesheet."""
    seed = bytes.fromhex(digest(video, variant, size=32))
    if variant == "video":
        brand = _box(b"ftyp", b"isom" + struct.pack(">I", 512) + b"isomiso2mp41")
        payload = seed * (int(seconds) * BYTES_PER_SECOND // len(seed))
        return brand + _box(b"mdat", payload)
    return variant.encode() + b":" + seed


@dataclass(frozen=True)
class StoredVideo:
    id: str
    seconds: str
    available_until: int


class VideoVault:
    """The videos batches have produced, each downloadable until its time is up."""

    def __init__(self) -> None:
        self._videos: dict[str, StoredVideo] = {}
        self._lock = threading.Lock()

    def keep(self, video: StoredVideo) -> None:
        with self._lock:
            self._videos[video.id] = video

    def get(self, video: str) -> StoredVideo | None:
        with self._lock:
            return self._videos.get(video)

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._videos)

    def download(self, video: str, variant: str, now: float) -> tuple[bytes, str]:
        """(bytes, content type) of one asset, or OpenAI's 404 once it is gone."""
        if variant not in VARIANTS:
            choices = ", ".join(repr(name) for name in VARIANTS)
            raise errors.invalid_request(
                f"Invalid value for 'variant': {variant!r}. Supported values are: {choices}.",
                "variant",
            )
        stored = self.get(video)
        if stored is None:
            raise errors.not_found(f"No such Video object: {video}", "video_id")
        if now >= stored.available_until:
            raise errors.not_found(
                f"The content of video {video} has expired and can no longer be downloaded.",
                "video_id",
            )
        return content_bytes(video, variant, stored.seconds), VARIANTS[variant]
