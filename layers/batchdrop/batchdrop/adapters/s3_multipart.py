"""Stream bytes of unknown length into one S3 object, holding at most one upload part in memory."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from botocore.exceptions import ClientError

from batchdrop.errors import AlreadyWrittenError
from batchdrop.ports import Readable, Writable

# S3's multipart limits: every part but the last is at least 5 MiB, and an upload has at most
# 10,000 parts (so 8 MiB parts allow objects of up to about 78 GiB).
MIN_PART_BYTES = 5 * 1024 * 1024
MAX_PARTS = 10_000
DEFAULT_PART_BYTES = 8 * 1024 * 1024
COPY_CHUNK_BYTES = 1024 * 1024
# S3 checks every part against it, and completing the upload checks the parts' list, so a part
# corrupted in transit is refused rather than stored. CRC32 is what boto3's transfers use.
CHECKSUM_ALGORITHM = "CRC32"


class S3MultipartWriter:
    """A write-only binary file backed by an S3 multipart upload.

    The upload starts only once a full part is buffered; an object that never fills a part
    (the empty object included) is written with a single put_object when the writer closes.
    Used as a context manager it completes the object on success and aborts it on an exception,
    so a failed writer leaves neither an object nor an upload whose parts S3 would bill for.
    `create_only` makes the object appear only if there is none yet (S3's If-None-Match: *),
    so nothing can be written over; closing then raises AlreadyWrittenError if one was there.
    """

    def __init__(
        self,
        s3_client: Any,
        bucket: str,
        key: str,
        *,
        part_size: int = DEFAULT_PART_BYTES,
        content_type: str = "application/jsonl",
        create_only: bool = False,
    ) -> None:
        if part_size < MIN_PART_BYTES:
            raise ValueError(f"part_size must be at least {MIN_PART_BYTES} bytes (S3's minimum)")
        self._s3 = s3_client
        self._bucket = bucket
        self._key = key
        self._part_size = part_size
        self._content_type = content_type
        self._condition = {"IfNoneMatch": "*"} if create_only else {}
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._bytes_written = 0
        self._closed = False

    @property
    def bytes_written(self) -> int:
        """Bytes accepted by write() so far, uploaded or still buffered."""
        return self._bytes_written

    @property
    def closed(self) -> bool:
        return self._closed

    def write(self, data: bytes) -> int:
        if self._closed:
            raise ValueError(f"write to a closed writer for s3://{self._bucket}/{self._key}")
        view = memoryview(data)
        # Top the buffer up to one part at a time, so a huge write never holds more than a part.
        while len(view):
            room = self._part_size - len(self._buffer)
            self._buffer += view[:room]
            view = view[room:]
            if len(self._buffer) == self._part_size:
                self._upload_buffer()
        self._bytes_written += len(data)
        return len(data)

    def close(self) -> None:
        """Finish the object; on failure the upload is aborted and the error raised."""
        if self._closed:
            return
        try:
            if self._upload_id is None:
                self._s3.put_object(
                    Bucket=self._bucket,
                    Key=self._key,
                    Body=bytes(self._buffer),
                    ContentType=self._content_type,
                    **self._condition,
                )
            else:
                if self._buffer:
                    self._upload_buffer()
                self._s3.complete_multipart_upload(
                    Bucket=self._bucket,
                    Key=self._key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                    **self._condition,
                )
        except ClientError as error:
            self.abort()
            if is_precondition_failure(error):
                raise AlreadyWrittenError(f"s3://{self._bucket}/{self._key} exists") from None
            raise
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self._buffer = bytearray()

    def abort(self) -> None:
        """Discard everything written; S3 keeps no object and no parts. Safe to call twice."""
        self._closed = True
        self._buffer = bytearray()
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is not None:
            self._s3.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=upload_id)

    def __enter__(self) -> S3MultipartWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _upload_buffer(self) -> None:
        if len(self._parts) == MAX_PARTS:
            raise ValueError(
                f"s3://{self._bucket}/{self._key} needs more than {MAX_PARTS} parts of "
                f"{self._part_size} bytes; use a larger part_size"
            )
        if self._upload_id is None:
            created = self._s3.create_multipart_upload(
                Bucket=self._bucket,
                Key=self._key,
                ContentType=self._content_type,
                ChecksumAlgorithm=CHECKSUM_ALGORITHM,
            )
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        uploaded = self._s3.upload_part(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=bytes(self._buffer),
            ChecksumAlgorithm=CHECKSUM_ALGORITHM,
        )
        self._parts.append(
            {
                "PartNumber": number,
                "ETag": uploaded["ETag"],
                "ChecksumCRC32": uploaded["ChecksumCRC32"],
            }
        )
        self._buffer.clear()


def is_precondition_failure(error: ClientError) -> bool:
    """S3 refused a conditional write because its condition did not hold."""
    return str(error.response.get("Error", {}).get("Code")) in {"PreconditionFailed", "412"}


def copy_stream(source: Readable, sink: Writable, chunk_size: int = COPY_CHUNK_BYTES) -> int:
    """Copy `source` to `sink` until end of stream, a chunk at a time; return the bytes copied.

    For a requests Response, pass `response.raw` with `decode_content = True` set on it (as
    `OpenAIBatchAPI.file_stream` does), or a gzip-encoded body would be copied still compressed.
    """
    if chunk_size <= 0:
        raise ValueError("chunk_size must be > 0")
    copied = 0
    while chunk := source.read(chunk_size):
        sink.write(chunk)
        copied += len(chunk)
    return copied
