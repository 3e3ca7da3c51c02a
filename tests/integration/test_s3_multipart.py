"""Streaming bytes of unknown length into S3 objects, against moto's S3."""

from __future__ import annotations

import io
import random
from itertools import pairwise

import boto3
import pytest

from batchdrop.adapters.s3_multipart import MIN_PART_BYTES, S3MultipartWriter, copy_stream

KEY = "results/job/results.jsonl"


def random_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def stored(bucket: str, key: str = KEY) -> tuple[bytes, str, str]:
    s3_object = boto3.client("s3").get_object(Bucket=bucket, Key=key)
    return s3_object["Body"].read(), s3_object["ContentType"], s3_object["ETag"]


def open_uploads(bucket: str) -> list[dict[str, object]]:
    uploads: list[dict[str, object]] = (
        boto3.client("s3").list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    )
    return uploads


def test_a_writer_of_more_than_two_parts_stores_the_exact_bytes(bucket: str) -> None:
    data = random_bytes(2 * MIN_PART_BYTES + 12_345, seed=1)
    # Uneven writes, one far larger than a part, so parts are cut across write boundaries.
    cuts = [0, 17, 3 * 1024 * 1024, 3 * 1024 * 1024 + 1, len(data) - 5, len(data)]

    with S3MultipartWriter(boto3.client("s3"), bucket, KEY, part_size=MIN_PART_BYTES) as writer:
        for start, end in pairwise(cuts):
            assert writer.write(data[start:end]) == end - start

    body, content_type, etag = stored(bucket)
    assert body == data
    assert writer.bytes_written == len(data)
    assert content_type == "application/jsonl"
    assert etag.strip('"').endswith("-3")  # a multipart object of three parts
    assert open_uploads(bucket) == []


@pytest.mark.parametrize("data", [b"", b'{"line": 1}\n'], ids=["empty", "under-one-part"])
def test_an_object_smaller_than_a_part_is_put_whole(bucket: str, data: bytes) -> None:
    with S3MultipartWriter(
        boto3.client("s3"), bucket, KEY, content_type="text/plain; charset=utf-8"
    ) as writer:
        writer.write(data)

    body, content_type, etag = stored(bucket)
    assert body == data
    assert content_type == "text/plain; charset=utf-8"
    assert "-" not in etag  # a single put, no multipart upload
    assert open_uploads(bucket) == []


def test_an_exception_inside_the_writer_aborts_the_upload(bucket: str) -> None:
    s3 = boto3.client("s3")
    writer = S3MultipartWriter(s3, bucket, KEY, part_size=MIN_PART_BYTES)
    uploads_before_failing: list[int] = []

    def write_then_fail() -> None:
        with writer:
            writer.write(random_bytes(MIN_PART_BYTES + 1, seed=2))
            uploads_before_failing.append(len(open_uploads(bucket)))
            raise RuntimeError("merge failed")

    with pytest.raises(RuntimeError, match="merge failed"):
        write_then_fail()

    assert uploads_before_failing == [1]  # a part had been stored before the failure
    assert open_uploads(bucket) == []
    assert s3.list_objects_v2(Bucket=bucket, Prefix=KEY)["KeyCount"] == 0
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"more")


def test_copy_stream_round_trips_a_stream_of_short_reads(bucket: str) -> None:
    class ShortReads(io.BytesIO):
        """Returns fewer bytes than asked, as a network stream may."""

        def read(self, size: int | None = -1, /) -> bytes:
            return super().read(min(size or 0, 700_000))

    data = random_bytes(MIN_PART_BYTES + 3 * 1024 * 1024, seed=3)

    with S3MultipartWriter(boto3.client("s3"), bucket, KEY, part_size=MIN_PART_BYTES) as writer:
        copied = copy_stream(ShortReads(data), writer)

    assert copied == len(data) == writer.bytes_written
    assert stored(bucket)[0] == data


def test_a_part_below_the_s3_minimum_is_refused(bucket: str) -> None:
    with pytest.raises(ValueError, match="part_size"):
        S3MultipartWriter(boto3.client("s3"), bucket, KEY, part_size=MIN_PART_BYTES - 1)


def test_a_failed_completion_aborts_the_upload(bucket: str) -> None:
    class CompletionFails:
        """The real client, except that completing an upload fails as a throttled call may."""

        def __init__(self) -> None:
            self._s3 = boto3.client("s3")

        def __getattr__(self, name: str) -> object:
            return getattr(self._s3, name)

        def complete_multipart_upload(self, **_: object) -> None:
            raise ConnectionError("completion lost")

    writer = S3MultipartWriter(CompletionFails(), bucket, KEY, part_size=MIN_PART_BYTES)
    writer.write(random_bytes(MIN_PART_BYTES + 1, seed=4))

    with pytest.raises(ConnectionError):
        writer.close()

    assert writer.closed
    assert open_uploads(bucket) == []
