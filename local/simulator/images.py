"""Image batches (/v1/images/generations, /v1/images/edits): `ImagesResponse` bodies with
pictures in them.

GPT image models always answer in base64 (`data[].b64_json`), in the body's `output_format`
(png by default), and report `usage` in tokens. A PNG here is a real one, built with zlib and
struct, that any decoder opens: small by default (at most 16 pixels a side, in the requested
aspect ratio), or about `picture_bytes` big when a test wants large result lines. An SVG is a
real document too. JPEG, WebP and GIF are stand-ins: their format's signature and framing, so a
type sniffer names them, but no picture. Token counts are estimates that grow with size and
quality, as OpenAI's image pricing does; the same request always gets the same numbers.
"""

from __future__ import annotations

import base64
import math
import random
import re
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from .lines import LineContext, LineUsage, digest

OUTPUT_FORMATS = ("png", "webp", "jpeg", "gif", "svg")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DEFAULT_SIZE = "1024x1024"
DEFAULT_QUALITY = "medium"  # what `auto` (the default) resolves to here
# Output tokens of one 1024x1024 picture per quality; other sizes scale with the pixel count
# (1024x1536 at `low` is 408, as in OpenAI's table).
OUTPUT_TOKENS_PER_MEGAPIXEL = {"low": 272, "medium": 1056, "high": 4160, "xhigh": 6240, "max": 8320}
INPUT_IMAGE_TOKENS = 272  # one reference image (or mask) of an edit
CHARS_PER_TOKEN = 4
PREVIEW_SIDE = 16
MEGAPIXEL = 1024 * 1024


@dataclass(frozen=True)
class ImageUsage:
    text_tokens: int
    image_tokens: int  # the edit's input images
    output_tokens: int

    @property
    def input_tokens(self) -> int:
        return self.text_tokens + self.image_tokens

    def line_usage(self) -> LineUsage:
        return LineUsage(self.input_tokens, 0, self.output_tokens, 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {
                "image_tokens": self.image_tokens,
                "text_tokens": self.text_tokens,
            },
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"image_tokens": self.output_tokens, "text_tokens": 0},
            "total_tokens": self.input_tokens + self.output_tokens,
        }


def resolved_size(body: dict[str, Any]) -> str:
    size = body.get("size")
    return size if isinstance(size, str) and re.fullmatch(r"\d+x\d+", size) else DEFAULT_SIZE


def resolved_quality(body: dict[str, Any]) -> str:
    quality = body.get("quality")
    return quality if quality in OUTPUT_TOKENS_PER_MEGAPIXEL else DEFAULT_QUALITY


def resolved_format(body: dict[str, Any]) -> str:
    fmt = body.get("output_format")
    return fmt if fmt in OUTPUT_FORMATS else "png"


def dimensions(size: str) -> tuple[int, int]:
    width, _, height = size.partition("x")
    return int(width), int(height)


def picture_count(body: dict[str, Any]) -> int:
    n = body.get("n")
    return n if isinstance(n, int) and n > 0 else 1


def reference_count(body: dict[str, Any]) -> int:
    refs = body.get("images")
    return (len(refs) if isinstance(refs, list) else 0) + (1 if "mask" in body else 0)


def image_usage(body: dict[str, Any]) -> ImageUsage:
    prompt = body.get("prompt")
    text = max(1, len(prompt) // CHARS_PER_TOKEN) if isinstance(prompt, str) else 1
    width, height = dimensions(resolved_size(body))
    per_picture = round(
        OUTPUT_TOKENS_PER_MEGAPIXEL[resolved_quality(body)] * width * height / MEGAPIXEL
    )
    return ImageUsage(
        text, reference_count(body) * INPUT_IMAGE_TOKENS, per_picture * picture_count(body)
    )


# -- pictures -----------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, rgb_rows: list[bytes]) -> bytes:
    """An 8-bit RGB PNG of `height` rows of `width * 3` bytes each."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # RGB, no interlace
    scanlines = b"".join(b"\x00" + row for row in rgb_rows)  # filter type 0 on every row
    return (
        PNG_SIGNATURE
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(scanlines))
        + _png_chunk(b"IEND", b"")
    )


def preview_dimensions(size: str) -> tuple[int, int]:
    width, height = dimensions(size)
    scale = PREVIEW_SIDE / max(width, height, 1)
    return max(1, round(width * scale)), max(1, round(height * scale))


def gradient_png(width: int, height: int, seed: str) -> bytes:
    red, green, blue = bytes.fromhex(seed[:6])
    rows = [
        bytes(
            channel
            for x in range(width)
            for channel in ((red + 8 * x) % 256, (green + 8 * y) % 256, blue)
        )
        for y in range(height)
    ]
    return png(width, height, rows)


def noise_png(picture_bytes: int, seed: str) -> bytes:
    """A square PNG of incompressible pixels, about `picture_bytes` long."""
    side = max(1, math.isqrt(max(3, picture_bytes) // 3))
    rng = random.Random(seed)  # noqa: S311 - reproducible pixels, not a secret
    rows = [rng.randbytes(side * 3) for _ in range(side)]
    return png(side, side, rows)


def svg(width: int, height: int, seed: str) -> bytes:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><rect width="{width}" height="{height}" '
        f'fill="#{seed[:6]}"/></svg>'
    ).encode()


def stand_in(fmt: str, seed: str) -> bytes:
    """The format's signature and framing around a few deterministic bytes."""
    filler = bytes.fromhex(seed)
    if fmt == "jpeg":
        return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + (
            filler + b"\xff\xd9"
        )
    if fmt == "webp":
        chunk = b"VP8L" + struct.pack("<I", len(filler)) + filler
        return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk
    return b"GIF89a" + struct.pack("<HH", 1, 1) + b"\x00\x00\x00" + filler + b"\x3b"


def picture(body: dict[str, Any], seed: str, picture_bytes: int | None) -> bytes:
    fmt, size = resolved_format(body), resolved_size(body)
    if fmt == "png":
        if picture_bytes:
            return noise_png(picture_bytes, seed)
        return gradient_png(*preview_dimensions(size), seed)
    if fmt == "svg":
        return svg(*dimensions(size), seed)
    return stand_in(fmt, seed)


def images_response(line: LineContext, picture_bytes: int | None = None) -> dict[str, Any]:
    body = line.body
    data = [
        {
            "b64_json": base64.b64encode(
                picture(body, digest(line.key, index), picture_bytes)
            ).decode()
        }
        for index in range(picture_count(body))
    ]
    background = body.get("background")
    return {
        "created": line.created,
        "background": background if background in {"transparent", "opaque"} else "opaque",
        "data": data,
        "output_format": resolved_format(body),
        "quality": resolved_quality(body),
        "size": resolved_size(body),
        "usage": image_usage(body).to_json(),
    }
