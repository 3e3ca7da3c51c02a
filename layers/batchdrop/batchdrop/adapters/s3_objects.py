"""S3 access for batchdrop: streamed reads (whole or a byte range), small JSON writes, links."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from batchdrop.adapters.s3_multipart import S3MultipartWriter, copy_stream, is_precondition_failure
from batchdrop.errors import AlreadyWrittenError
from batchdrop.ports import Readable

PRESIGN_SECONDS = 7 * 86_400  # the longest SigV4 allows


class S3Objects:
    def __init__(self, client: Any) -> None:
        self._s3 = client

    @property
    def client(self) -> Any:
        """The boto3 client, for tools and benchmarks; the use cases go through the methods."""
        return self._s3

    def open(
        self,
        bucket: str,
        key: str,
        version_id: str | None = None,
        *,
        start: int = 0,
        end: int | None = None,
    ) -> Readable:
        """A stream of the object's bytes [start, end). The GET is sent at once (so a missing
        object fails here); the body is read as asked for."""
        request: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if version_id:
            request["VersionId"] = version_id
        if start or end is not None:
            request["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        body: Readable = self._s3.get_object(**request)["Body"]
        return body

    def size(self, bucket: str, key: str) -> int | None:
        """The object's size, or None when it is not there (or not readable)."""
        try:
            head = self._s3.head_object(Bucket=bucket, Key=key)
        except ClientError:
            return None
        size: int = head["ContentLength"]
        return size

    def user_metadata(self, bucket: str, key: str, version_id: str | None = None) -> dict[str, str]:
        """The object's user-defined metadata (x-amz-meta-*), keys lower-cased as S3 keeps them;
        values as S3 sends them (ASCII; a non-ASCII value arrives RFC 2047 encoded)."""
        request: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if version_id:
            request["VersionId"] = version_id
        metadata = self._s3.head_object(**request).get("Metadata") or {}
        return {str(k).lower(): str(v) for k, v in metadata.items()}

    def put_json(self, bucket: str, key: str, document: Any, *, create_only: bool = False) -> None:
        """A small JSON document; `create_only` writes it only where none is yet (else raises
        AlreadyWrittenError), so a result once written is never written over."""
        body = json.dumps(document, indent=2, ensure_ascii=False).encode()
        condition = {"IfNoneMatch": "*"} if create_only else {}
        try:
            self._s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=body,
                ContentType="application/json; charset=utf-8",
                **condition,
            )
        except ClientError as error:
            if is_precondition_failure(error):
                raise AlreadyWrittenError(f"s3://{bucket}/{key} exists") from None
            raise

    def read_json(self, bucket: str, key: str) -> tuple[Any, str] | None:
        """A small JSON document and its ETag, or None when there is none."""
        try:
            response = self._s3.get_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                return None
            raise
        return json.loads(response["Body"].read()), str(response["ETag"])

    def replace_json(self, bucket: str, key: str, document: Any, etag: str | None) -> bool:
        """Write a small JSON document over the version with `etag` (None: over nothing). False
        when another writer got there first, so the caller can read again and decide again."""
        body = json.dumps(document, indent=2, ensure_ascii=False).encode()
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            self._s3.put_object(
                Bucket=bucket, Key=key, Body=body, ContentType="application/json", **condition
            )
        except ClientError as error:
            if is_precondition_failure(error):
                return False
            raise
        return True

    def upload_file(self, path: Path, bucket: str, key: str, *, create_only: bool = False) -> None:
        """A local file to S3, streamed in parts; `create_only` as for put_json."""
        with path.open("rb") as source:
            self.upload_stream(source, bucket, key, create_only=create_only)

    def upload_stream(
        self, source: Readable, bucket: str, key: str, *, create_only: bool = False
    ) -> None:
        """A stream to S3 until its end, in parts, in constant memory; `create_only` as for
        put_json."""
        with self.writer(bucket, key, create_only=create_only) as sink:
            copy_stream(source, sink)

    def writer(self, bucket: str, key: str, *, create_only: bool = False) -> S3MultipartWriter:
        """A new object written as a stream: whole once the `with` block ends, nothing at all if
        it raises; `create_only` as for put_json (closing raises AlreadyWrittenError)."""
        return S3MultipartWriter(self._s3, bucket, key, create_only=create_only)

    def presigned_url(self, bucket: str, key: str) -> str:
        url: str = self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=PRESIGN_SECONDS
        )
        return url
