"""The pure pieces of image and video answers: pictures, token estimates, the download window."""

from __future__ import annotations

import struct
import zlib

import pytest

from local.simulator import images
from local.simulator.errors import ApiError
from local.simulator.lines import NO_USAGE, LineContext
from local.simulator.videos import StoredVideo, VideoVault, content_bytes


def test_a_png_holds_its_rows_behind_a_valid_header() -> None:
    picture = images.gradient_png(3, 2, "a0b0c0")

    ihdr = picture[8 + 8 : 8 + 8 + 13]
    (idat_length,) = struct.unpack(">I", picture[33:37])
    rows = zlib.decompress(picture[41 : 41 + idat_length])

    assert picture.startswith(images.PNG_SIGNATURE)
    assert struct.unpack(">IIBBBBB", ihdr) == (3, 2, 8, 2, 0, 0, 0)
    assert rows[:7] == b"\x00" + bytes([0xA0, 0xB0, 0xC0, 0xA8, 0xB0, 0xC0])
    assert len(rows) == 2 * (1 + 3 * 3)
    assert picture.endswith(b"IEND\xae\x42\x60\x82")


@pytest.mark.parametrize(
    ("size", "preview"),
    [("1024x1024", (16, 16)), ("1536x1024", (16, 11)), ("1024x1536", (11, 16))],
)
def test_previews_keep_the_aspect_ratio(size: str, preview: tuple[int, int]) -> None:
    assert images.preview_dimensions(size) == preview


@pytest.mark.parametrize(
    ("body", "tokens"),
    [
        ({"prompt": "p" * 40}, (10, 0, 1056)),
        ({"prompt": "p", "quality": "low", "size": "1024x1536"}, (1, 0, 408)),
        ({"prompt": "p", "quality": "high", "n": 3}, (1, 0, 3 * 4160)),
        ({"prompt": "p", "images": [{}, {}], "mask": {}}, (1, 3 * 272, 1056)),
    ],
)
def test_image_tokens_follow_size_quality_count_and_references(
    body: dict[str, object], tokens: tuple[int, int, int]
) -> None:
    usage = images.image_usage(body)

    assert (usage.text_tokens, usage.image_tokens, usage.output_tokens) == tokens
    assert usage.line_usage().input_tokens == tokens[0] + tokens[1]


def test_the_same_line_gets_the_same_pictures() -> None:
    line = LineContext({"prompt": "p", "n": 2}, NO_USAGE, "ab" * 16, 0, "c")

    first, again = images.images_response(line), images.images_response(line)

    assert first == again
    assert first["data"][0] != first["data"][1]


def test_a_video_downloads_until_its_window_closes() -> None:
    vault = VideoVault()
    vault.keep(StoredVideo("video_1", "8", available_until=1000))

    content, mimetype = vault.download("video_1", "video", now=999)

    assert (content, mimetype) == (content_bytes("video_1", "video", "8"), "video/mp4")
    assert len(content) > len(content_bytes("video_1", "video", "4"))
    with pytest.raises(ApiError) as gone:
        vault.download("video_1", "video", now=1000)
    assert gone.value.status == 404
    with pytest.raises(ApiError) as unknown_variant:
        vault.download("video_1", "poster", now=0)
    assert unknown_variant.value.status == 400
