"""Files and Uploads: metadata in memory, contents on disk under the simulator's temp dir.

Contents never pass through Python memory as a whole: multipart bodies are spooled straight
into this directory by the request parser and then renamed into place.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import string
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import errors
from .clock import Clock

UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
MAX_FILE_BYTES = 512 * 1024 * 1024
MAX_UPLOAD_BYTES = 8 * 1024 * 1024 * 1024
MAX_PART_BYTES = 64 * 1024 * 1024
UPLOAD_LIFETIME = 3600
BATCH_FILE_LIFETIME = 30 * 24 * 3600
COPY_CHUNK = 1024 * 1024


class IdFactory:
    """OpenAI-looking ids, reproducible for a given seed and call order."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)  # noqa: S311 - reproducible ids, not secrets
        self._lock = threading.Lock()

    def _token(self, length: int, alphabet: str) -> str:
        with self._lock:
            return "".join(self._rng.choice(alphabet) for _ in range(length))

    def file(self) -> str:
        return "file-" + self._token(22, string.ascii_letters + string.digits)

    def upload(self) -> str:
        return "upload_" + self._token(24, string.ascii_letters + string.digits)

    def part(self) -> str:
        return "part_" + self._token(24, string.ascii_letters + string.digits)

    def batch(self) -> str:
        return "batch_" + self._token(32, "0123456789abcdef")


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    bytes: int
    created_at: int
    path: Path
    expires_at: int | None = None

    def is_live(self, now: float) -> bool:
        """An expired file is gone, as a deleted one is."""
        return self.expires_at is None or now < self.expires_at

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
        }


@dataclass
class UploadPart:
    id: str
    upload_id: str
    created_at: int
    path: Path
    size: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "upload.part",
            "created_at": self.created_at,
            "upload_id": self.upload_id,
        }


@dataclass
class Upload:
    id: str
    bytes: int
    filename: str
    mime_type: str
    purpose: str
    created_at: int
    expires_at: int
    status: str = "pending"
    parts: dict[str, UploadPart] = field(default_factory=dict)
    file: StoredFile | None = None
    file_lifetime: int | None = None  # from `expires_after`, for the File it completes into

    def status_at(self, now: float) -> str:
        if self.status == "pending" and now >= self.expires_at:
            return "expired"
        return self.status

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "upload",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": self.status_at(now),
            "file": self.file.to_json() if self.file else None,
        }


def check_purpose(purpose: object, filename: str) -> str:
    if not isinstance(purpose, str) or purpose not in UPLOAD_PURPOSES:
        raise errors.invalid_request(
            f"{purpose!r} is not one of {list(UPLOAD_PURPOSES)} - 'purpose'", param="purpose"
        )
    if purpose == "batch" and not filename.endswith(".jsonl"):
        raise errors.invalid_request(
            "Invalid file format for Batch API. Must be .jsonl", param="file"
        )
    return purpose


class FileStore:
    def __init__(self, root: Path, ids: IdFactory, clock: Clock) -> None:
        self.root = root
        self.ids = ids
        self.clock = clock
        self._files: dict[str, StoredFile] = {}
        self._uploads: dict[str, Upload] = {}
        self._lock = threading.Lock()
        self._scratch = 0
        self.deleted: list[str] = []  # ids of deleted files, in the order of their deletion
        self._gone: dict[str, StoredFile] = {}  # deleted files' bytes, kept for tests to read

    def scratch_path(self, label: str) -> Path:
        """A fresh path inside the store's directory, for content about to be added."""
        with self._lock:
            self._scratch += 1
            return self.root / f"{label}-{self._scratch}"

    # -- files ---------------------------------------------------------------------------

    def add(
        self,
        content: Path,
        filename: str,
        purpose: str,
        created_at: int | None = None,
        lifetime: int | None = None,
    ) -> StoredFile:
        """Take ownership of `content` (moved into place) and register it as a File that
        expires `lifetime` seconds after its creation (None: OpenAI's default for `purpose`)."""
        file_id = self.ids.file()
        path = self.root / file_id
        content.replace(path)
        created = int(self.clock.now()) if created_at is None else created_at
        if lifetime is None and purpose.startswith("batch"):
            lifetime = BATCH_FILE_LIFETIME
        expires = None if lifetime is None else created + lifetime
        stored = StoredFile(file_id, filename, purpose, path.stat().st_size, created, path, expires)
        with self._lock:
            self._files[file_id] = stored
        return stored

    def get(self, file_id: str) -> StoredFile:
        with self._lock:
            stored = self._files.get(file_id)
        if stored is None or not stored.is_live(self.clock.now()):
            raise errors.not_found(f"No such File object: {file_id}", param="id")
        return stored

    def delete(self, file_id: str) -> StoredFile:
        now = self.clock.now()
        with self._lock:
            stored = self._files.get(file_id)
            if stored is None or not stored.is_live(now):
                raise errors.not_found(f"No such File object: {file_id}", param="id")
            del self._files[file_id]
            self.deleted.append(file_id)
            # The API serves it no more; its bytes stay on disk, as evidence for tests only.
            self._gone[file_id] = stored
        return stored

    def evidence(self, file_id: str) -> Path:
        """Where the bytes of any file ever stored are: live, expired or deleted."""
        with self._lock:
            stored = self._files.get(file_id) or self._gone.get(file_id)
        if stored is None:
            raise KeyError(file_id)
        return stored.path

    def all(self) -> list[StoredFile]:
        """The files that exist now: neither deleted nor expired."""
        now = self.clock.now()
        with self._lock:
            return [stored for stored in self._files.values() if stored.is_live(now)]

    # -- uploads -------------------------------------------------------------------------

    def create_upload(
        self,
        total: object,
        filename: object,
        mime_type: object,
        purpose: object,
        file_lifetime: int | None = None,
    ) -> Upload:
        if not isinstance(filename, str) or not filename:
            raise errors.invalid_request("Missing required parameter: 'filename'.", "filename")
        if not isinstance(mime_type, str) or not mime_type:
            raise errors.invalid_request("Missing required parameter: 'mime_type'.", "mime_type")
        if not isinstance(total, int) or isinstance(total, bool) or total < 0:
            raise errors.invalid_request(
                "Invalid 'bytes': expected a non-negative integer.", "bytes"
            )
        if total > MAX_UPLOAD_BYTES:
            raise errors.invalid_request(
                f"Invalid 'bytes': an Upload can accept at most {MAX_UPLOAD_BYTES} bytes "
                "(8 GB) in total.",
                "bytes",
            )
        checked = check_purpose(purpose, filename)
        now = int(self.clock.now())
        upload = Upload(
            self.ids.upload(), total, filename, mime_type, checked, now, now + UPLOAD_LIFETIME
        )
        upload.file_lifetime = file_lifetime
        with self._lock:
            self._uploads[upload.id] = upload
        return upload

    def get_upload(self, upload_id: str) -> Upload:
        with self._lock:
            upload = self._uploads.get(upload_id)
        if upload is None:
            raise errors.not_found(f"No such Upload object: {upload_id}", param="upload_id")
        return upload

    def _require_pending(self, upload: Upload) -> None:
        status = upload.status_at(self.clock.now())
        if status != "pending":
            raise errors.invalid_request(
                f"Upload {upload.id} is {status}; it no longer accepts changes.",
                param="upload_id",
            )

    def add_part(self, upload_id: str, content: Path) -> UploadPart:
        upload = self.get_upload(upload_id)
        size = content.stat().st_size
        if size > MAX_PART_BYTES:
            content.unlink(missing_ok=True)
            raise errors.invalid_request(
                f"Part is too large: {size} bytes. Each Part can be at most {MAX_PART_BYTES} "
                "bytes (64 MB).",
                param="data",
            )
        part = UploadPart(self.ids.part(), upload_id, int(self.clock.now()), Path(), size)
        part.path = self.root / part.id
        content.replace(part.path)
        with self._lock:
            self._require_pending(upload)
            upload.parts[part.id] = part
        return part

    def complete_upload(self, upload_id: str, part_ids: object, md5: object) -> Upload:
        upload = self.get_upload(upload_id)
        if not isinstance(part_ids, list) or not all(isinstance(p, str) for p in part_ids):
            raise errors.invalid_request("Missing required parameter: 'part_ids'.", "part_ids")
        with self._lock:
            self._require_pending(upload)
            unknown = [p for p in part_ids if p not in upload.parts]
            if unknown:
                raise errors.invalid_request(
                    f"Invalid 'part_ids': {unknown[0]} is not a Part of upload {upload_id}.",
                    "part_ids",
                )
            if len(set(part_ids)) != len(part_ids):
                raise errors.invalid_request("Invalid 'part_ids': duplicate Part ids.", "part_ids")
            parts = [upload.parts[p] for p in part_ids]
            received = sum(part.size for part in parts)
            if received != upload.bytes:
                raise errors.invalid_request(
                    f"The number of bytes uploaded upon completion ({received}) does not match "
                    f"the number of bytes specified when creating the Upload ({upload.bytes}).",
                    "part_ids",
                )
            upload.status = "completing"  # keeps concurrent calls out while we copy
        try:
            joined, checksum = self._concatenate(parts)
            if isinstance(md5, str) and md5 and md5.lower() != checksum:
                joined.unlink(missing_ok=True)
                raise errors.invalid_request(
                    f"The md5 checksum {md5} does not match the uploaded content ({checksum}).",
                    "md5",
                )
        except BaseException:
            upload.status = "pending"
            raise
        upload.file = self.add(
            joined, upload.filename, upload.purpose, lifetime=upload.file_lifetime
        )
        upload.status = "completed"
        self._discard_parts(upload)
        return upload

    def _concatenate(self, parts: list[UploadPart]) -> tuple[Path, str]:
        target = self.scratch_path("upload")
        checksum = hashlib.md5(usedforsecurity=False)
        with target.open("wb") as out:
            for part in parts:
                with part.path.open("rb") as chunk_source:
                    while chunk := chunk_source.read(COPY_CHUNK):
                        checksum.update(chunk)
                        out.write(chunk)
        return target, checksum.hexdigest()

    def cancel_upload(self, upload_id: str) -> Upload:
        upload = self.get_upload(upload_id)
        with self._lock:
            self._require_pending(upload)
            upload.status = "cancelled"
        self._discard_parts(upload)
        return upload

    def _discard_parts(self, upload: Upload) -> None:
        for part in upload.parts.values():
            part.path.unlink(missing_ok=True)

    def link_copy(self, stored: StoredFile, label: str) -> Path:
        """A private name for a file's bytes that survives the file being deleted."""
        target = self.scratch_path(label)
        try:
            os.link(stored.path, target)
        except OSError:
            shutil.copyfile(stored.path, target)
        return target
