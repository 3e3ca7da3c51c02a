"""S3 in memory: the `ObjectStore` port over one versioned set of objects.

A create-only write (S3's If-None-Match: *) where an object is already there is refused, as S3
refuses it, so a test can count how often each key was written and prove none was written over.
A streamed write (`writer`, `upload_stream`) appears whole when it ends, or not at all if it
raises, as a multipart upload does.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

from batchdrop.errors import AlreadyWrittenError
from batchdrop.ports import Readable, Writable

Address = tuple[str, str]


class NoSuchKey(LookupError):
    """Reading an object that is not there (S3 answers 404)."""


@dataclass
class _Versions:
    bodies: list[bytes] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)  # per version, as S3 keeps it

    @property
    def etag(self) -> str:
        return f'"v{len(self.bodies)}"'


class FakeObjectStore:
    def __init__(self) -> None:
        self._objects: dict[Address, _Versions] = {}
        self._lock = threading.Lock()
        self._failures: dict[str, list[BaseException]] = {}

    # --- for tests --------------------------------------------------------------------------------

    def put(
        self, bucket: str, key: str, body: bytes, metadata: dict[str, str] | None = None
    ) -> str:
        """Upload an object as a user would, with its user-defined metadata (ASCII, as S3
        takes it); returns its version id."""
        self._write(bucket, key, body, create_only=False, metadata=metadata)
        return self.version_id(bucket, key)

    def read(self, bucket: str, key: str) -> bytes:
        return self._versions(bucket, key).bodies[-1]

    def read_jsonl(self, bucket: str, key: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.read(bucket, key).splitlines()]

    def writes(self, bucket: str, key: str) -> int:
        """How many times the key was written (S3 keeps a version per write)."""
        versions = self._objects.get((bucket, key))
        return len(versions.bodies) if versions else 0

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        return sorted(k for b, k in self._objects if b == bucket and k.startswith(prefix))

    def version_id(self, bucket: str, key: str) -> str:
        return str(len(self._versions(bucket, key).bodies))

    def fail_next(self, method: str, error: BaseException) -> None:
        """The next call of `method` raises `error` before doing anything."""
        self._failures.setdefault(method, []).append(error)

    def _maybe_fail(self, method: str) -> None:
        failures = self._failures.get(method)
        if failures:
            raise failures.pop(0)

    # --- the ObjectStore port ---------------------------------------------------------------------

    def open(
        self,
        bucket: str,
        key: str,
        version_id: str | None = None,
        *,
        start: int = 0,
        end: int | None = None,
    ) -> Readable:
        self._maybe_fail("open")
        bodies = self._versions(bucket, key).bodies
        body = bodies[int(version_id) - 1] if version_id else bodies[-1]
        return BytesIO(body[start:end])

    def size(self, bucket: str, key: str) -> int | None:
        versions = self._objects.get((bucket, key))
        return len(versions.bodies[-1]) if versions else None

    def user_metadata(self, bucket: str, key: str, version_id: str | None = None) -> dict[str, str]:
        self._maybe_fail("user_metadata")
        metadata = self._versions(bucket, key).metadata
        return dict(metadata[int(version_id) - 1] if version_id else metadata[-1])

    def put_json(self, bucket: str, key: str, document: Any, *, create_only: bool = False) -> None:
        self._maybe_fail("put_json")
        body = json.dumps(document, indent=2, ensure_ascii=False).encode()
        self._write(bucket, key, body, create_only=create_only)

    def read_json(self, bucket: str, key: str) -> tuple[Any, str] | None:
        versions = self._objects.get((bucket, key))
        if versions is None:
            return None
        return json.loads(versions.bodies[-1]), versions.etag

    def replace_json(self, bucket: str, key: str, document: Any, etag: str | None) -> bool:
        body = json.dumps(document, indent=2, ensure_ascii=False).encode()
        with self._lock:
            versions = self._objects.get((bucket, key))
            current = versions.etag if versions else None
            if current != etag:
                return False
            versions = self._objects.setdefault((bucket, key), _Versions())
            versions.bodies.append(body)
            versions.metadata.append({})
        return True

    def upload_file(self, path: Path, bucket: str, key: str, *, create_only: bool = False) -> None:
        self._maybe_fail("upload_file")
        self._write(bucket, key, path.read_bytes(), create_only=create_only)

    def upload_stream(
        self, source: Readable, bucket: str, key: str, *, create_only: bool = False
    ) -> None:
        with self.writer(bucket, key, create_only=create_only) as sink:
            while chunk := source.read(64 * 1024):
                sink.write(chunk)

    @contextmanager
    def writer(self, bucket: str, key: str, *, create_only: bool = False) -> Iterator[Writable]:
        """The object is written when the block ends (refused then if create-only and there
        already), and not at all if the block raises."""
        sink = BytesIO()
        yield sink
        self._write(bucket, key, sink.getvalue(), create_only=create_only)

    def presigned_url(self, bucket: str, key: str) -> str:
        return f"https://{bucket}.s3.example/{key}?X-Amz-Expires=604800"

    # --- internals --------------------------------------------------------------------------------

    def _write(
        self,
        bucket: str,
        key: str,
        body: bytes,
        *,
        create_only: bool,
        metadata: dict[str, str] | None = None,
    ) -> None:
        with self._lock:
            if create_only and (bucket, key) in self._objects:
                raise AlreadyWrittenError(f"s3://{bucket}/{key} exists")
            versions = self._objects.setdefault((bucket, key), _Versions())
            versions.bodies.append(bytes(body))
            versions.metadata.append({k.lower(): v for k, v in (metadata or {}).items()})

    def _versions(self, bucket: str, key: str) -> _Versions:
        versions = self._objects.get((bucket, key))
        if versions is None:
            raise NoSuchKey(f"s3://{bucket}/{key}")
        return versions
