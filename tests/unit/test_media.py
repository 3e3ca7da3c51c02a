"""Tests for saving a job's images and naming its media files."""

import base64
import io
import json
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from batchdrop.domain.media import (
    completed_videos,
    media_name,
    media_stem,
    read_head,
    save_images,
)
from batchdrop.domain.results import merge_in_input_order

PNG = b"\x89PNG\r\n\x1a\n"


def picture(seed: int, size: int = 100) -> bytes:
    return PNG + bytes((seed + n) % 251 for n in range(size))


def images_body(*pictures: bytes, output_format: str | None = "png", **extra: Any) -> Any:
    body: dict[str, Any] = {
        "created": 1,
        "data": [{"b64_json": base64.b64encode(p).decode()} for p in pictures],
        **extra,
    }
    if output_format is not None:
        body["output_format"] = output_format
    return body


def merged_line(custom_id: str, body: Any, status: str = "succeeded", number: int = 1) -> bytes:
    """A line in the form results.merge_in_input_order writes."""
    document = {
        "line": number,
        "custom_id": custom_id,
        "status": status,
        "status_code": 200,
        "response": body,
        "error": None,
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


class Trickle(io.RawIOBase):
    """A stream that hands out at most `step` bytes a read, to split keys between pieces."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = io.BytesIO(data)
        self._step = step

    def read(self, size: int = -1, /) -> bytes:
        return self._data.read(min(self._step, size if size >= 0 else self._step))


def saved(stream: Any, tmp_path: Path, **options: int) -> dict[str, bytes]:
    files: dict[str, bytes] = {}

    def save(name: str, path: Path) -> None:
        assert name not in files
        files[name] = path.read_bytes()

    count = save_images(stream, tmp_path, save, **options)
    assert count == len(files)
    assert list(tmp_path.iterdir()) == []  # every decoded file is removed once saved
    return files


@pytest.mark.parametrize(
    ("custom_id", "stem"),
    [
        ("request-1", "request-1"),
        ("a_b.c", "a_b.c"),
        ("a/b", "a_b-"),
        ("ünïcode id", "_n_code_id-"),
        ("..", "..-"),
        ("x" * 150, "x" * 100 + "-"),
    ],
)
def test_a_stem_keeps_safe_ids_and_marks_changed_ones_with_a_hash(
    custom_id: str, stem: str
) -> None:
    made = media_stem(custom_id)
    if stem.endswith("-"):
        assert made.startswith(stem)
        assert len(made) == len(stem) + 8
    else:
        assert made == stem


def test_ids_that_clean_up_alike_still_get_different_names() -> None:
    assert media_stem("a/b") != media_stem("a?b")
    assert media_name("a", "png", 1) == "a(1).png"
    assert media_name("a(1)", "png") != media_name("a", "png", 1)


def test_images_are_decoded_in_input_order_named_by_custom_id(tmp_path: Path) -> None:
    one, two, three = picture(1), picture(2), picture(3)
    results = b"".join(
        [
            merged_line("cat", images_body(one), number=1),
            merged_line("dogs", images_body(two, three, output_format="webp"), number=2),
            merged_line("bad", {"error": {"code": "x"}}, status="failed", number=3),
            merged_line("plain", images_body(one, output_format=None), number=4),
        ]
    )
    files = saved(io.BytesIO(results), tmp_path)
    assert list(files) == ["cat.png", "dogs(1).webp", "dogs(2).webp", "plain.png"]
    assert files["dogs(2).webp"] == three
    assert all(data.startswith(PNG) for data in files.values())


@pytest.mark.parametrize("step", [1, 3, 7, 64, 1000])
def test_a_long_line_is_decoded_in_pieces_whatever_their_size(tmp_path: Path, step: int) -> None:
    pictures = [picture(n, 3_000) for n in range(3)]
    body = images_body(*pictures, output_format="jpeg", revised_prompt="a \"b64_json\": 'x'")
    body["data"][1]["b64_json"] = body["data"][1]["b64_json"].replace("/", "\\/")
    line = merged_line("big/one", body).replace(b"\\\\/", b"\\/")
    files = saved(Trickle(line, step), tmp_path, max_line_bytes=500)
    stem = media_stem("big/one")
    assert files == {f"{stem}({n + 1}).jpeg": pictures[n] for n in range(3)}


def test_escaped_slashes_in_base64_are_read(tmp_path: Path) -> None:
    image = bytes(range(256)) * 4  # its base64 has "/" in it
    encoded = base64.b64encode(image).decode()
    assert "/" in encoded
    line = merged_line("a", {"data": [{"b64_json": encoded}]}).replace(b"/", b"\\/")
    assert saved(io.BytesIO(line), tmp_path) == {"a.png": image}


def test_a_large_image_line_is_decoded_in_bounded_memory(tmp_path: Path) -> None:
    big = picture(5, 12 * 1024 * 1024)
    line = merged_line("huge", images_body(big))
    sizes: list[int] = []

    def save(name: str, path: Path) -> None:
        sizes.append(path.stat().st_size)

    stream = io.BytesIO(line)
    del big
    tracemalloc.start()
    try:
        save_images(stream, tmp_path, save, max_line_bytes=1024 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sizes == [12 * 1024 * 1024 + len(PNG)]
    # The line is 16 MB of base64: what is held is the line's head and a few reads, not it.
    assert peak < 8 * 1024 * 1024


def test_merged_lines_are_read_as_the_merge_writes_them(tmp_path: Path) -> None:
    image = picture(9)
    request = {
        "custom_id": "é id",
        "method": "POST",
        "url": "/v1/images/generations",
        "body": {"model": "gpt-image-1", "prompt": "p"},
    }
    response = {"status_code": 200, "request_id": "q", "body": images_body(image)}
    result = {"id": "r", "custom_id": "é id", "error": None, "response": response}
    merged = io.BytesIO()

    def opener(document: Any) -> Callable[[], io.BytesIO]:
        return lambda: io.BytesIO(json.dumps(document).encode() + b"\n")

    merge_in_input_order(
        [opener(request)], [opener(result)], merged, io.BytesIO(), workdir=tmp_path
    )
    head = read_head(merged.getvalue())
    assert head is not None
    assert (head.custom_id, head.status) == ("é id", "succeeded")
    assert saved(io.BytesIO(merged.getvalue()), tmp_path) == {media_name("é id", "png"): image}


def test_completed_videos_are_listed_by_file_name() -> None:
    def video(video_id: str, status: str) -> dict[str, Any]:
        return {"id": video_id, "object": "video", "status": status, "seconds": "4"}

    results = b"".join(
        [
            merged_line("v1", video("video_1", "completed"), number=1),
            merged_line("v2", video("video_2", "failed"), number=2),
            merged_line("v3", {"error": {"code": "x"}}, status="failed", number=3),
            merged_line("v 4", video("video_4", "completed"), number=4),
        ]
    )
    found = [(v.name, v.video_id) for v in completed_videos(io.BytesIO(results))]
    assert found == [("v1.mp4", "video_1"), (media_name("v 4", "mp4"), "video_4")]


def test_a_line_whose_base64_does_not_decode_saves_nothing_and_the_rest_go_on(
    tmp_path: Path,
) -> None:
    broken = merged_line("broken", {"data": [{"b64_json": "iVBORw0KG"}]}, number=1)
    results = broken + merged_line("fine", images_body(picture(1)), number=2)
    assert list(saved(io.BytesIO(results), tmp_path)) == ["fine.png"]
