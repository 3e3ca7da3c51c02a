"""S3 access for batchdrop: streamed reads (whole or a byte range), small JSON writes, links."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from batchdrop.lines import Readable

PRESIGN_SECONDS = 7 * 86_400  # the longest SigV4 allows


class S3Objects:
    def __init__(self, client: Any) -> None:
        self._s3 = client

    @property
    def client(self) -> Any:
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

    def put_json(self, bucket: str, key: str, document: Any) -> None:
        body = json.dumps(document, indent=2, ensure_ascii=False).encode()
        self._s3.put_object(
            Bucket=bucket, Key=key, Body=body, ContentType="application/json; charset=utf-8"
        )

    def upload_file(self, path: Path, bucket: str, key: str) -> None:
        """A local file to S3, in parts when large (boto3's managed transfer)."""
        self._s3.upload_file(str(path), bucket, key, ExtraArgs={"ContentType": "application/jsonl"})

    def presigned_url(self, bucket: str, key: str) -> str:
        url: str = self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=PRESIGN_SECONDS
        )
        return url
