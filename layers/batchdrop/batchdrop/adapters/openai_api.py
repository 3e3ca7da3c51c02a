"""The OpenAI Files, Uploads and Batches APIs over requests, with retries that survive faults.

Bodies are streamed: an upload is described by a *factory* that re-opens its bytes, so a retry
after a dropped connection sends the same bytes again without ever holding them in memory.
urllib3's own Retry cannot re-open a streamed body, which is why the retry loop lives here.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests
import requests.adapters

from batchdrop.errors import OpenAIError
from batchdrop.ports import BodyFactory, FileObject, Readable, Retry, Upload
from batchdrop.records import Batch

JSON = dict[str, Any]

_TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter; a longer Retry-After from the server wins."""

    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 20.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        backoff = random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))  # noqa: S311
        if retry_after is None:
            return backoff
        return min(max(retry_after, backoff), self.max_delay * 3)


class OpenAIBatchAPI:
    """The subset of the OpenAI API that batch jobs need."""

    def __init__(
        self,
        base_url: str,
        api_key: Callable[[], str],
        *,
        retry: Retry | None = None,
        timeout: tuple[float, float] = (5.0, 120.0),
        session: requests.Session | None = None,
        pool_size: int = 16,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._retry: Retry = retry or RetryPolicy()
        self._timeout = timeout
        self._session = session or _pooled_session(pool_size)

    @property
    def read_timeout(self) -> float:
        """Seconds a request may wait for its answer before the client gives up on it; OpenAI
        may still act on it after that."""
        return self._timeout[1]

    # --- files ---------------------------------------------------------------------------------

    def upload_file(
        self, filename: str, size: int, body: BodyFactory, *, expires_after: int | None = None
    ) -> FileObject:
        """POST /files with purpose=batch, streaming `size` bytes from `body()`; the file expires
        `expires_after` seconds after it is created (None: OpenAI's default)."""
        fields = {"purpose": "batch"}
        if expires_after is not None:
            # Nested fields go as the SDK sends them in a form: expires_after[anchor], [seconds].
            fields["expires_after[anchor]"] = "created_at"
            fields["expires_after[seconds]"] = str(expires_after)
        uploaded: FileObject = self._multipart("/files", fields, "file", filename, size, body)
        return uploaded

    def retrieve_file(self, file_id: str) -> FileObject:
        file: FileObject = self._json("GET", f"/files/{file_id}")
        return file

    def delete_file(self, file_id: str) -> JSON:
        deleted: JSON = self._json("DELETE", f"/files/{file_id}")
        return deleted

    @contextmanager
    def file_content(self, file_id: str) -> Iterator[requests.Response]:
        """The file's bytes as a streamed response (read with `iter_content`)."""
        response = self._send("GET", f"/files/{file_id}/content", stream=True)
        try:
            yield response
        finally:
            response.close()

    @contextmanager
    def file_stream(self, file_id: str) -> Iterator[Readable]:
        """The file's bytes as a binary stream, decoded: a gzip-encoded body reads as the file
        itself, not compressed."""
        with self.file_content(file_id) as response:
            response.raw.decode_content = True
            yield response.raw

    # --- videos --------------------------------------------------------------------------------

    @contextmanager
    def video_content(self, video_id: str) -> Iterator[Readable]:
        """A video's MP4 as a binary stream. A batch's videos can be downloaded for 24 hours
        after the batch ends, and OpenAI shut the Videos API down on 2026-09-24."""
        response = self._send(
            "GET", f"/videos/{video_id}/content", params={"variant": "video"}, stream=True
        )
        try:
            response.raw.decode_content = True
            yield response.raw
        finally:
            response.close()

    # --- uploads (files over 64 MB) ------------------------------------------------------------

    def create_upload(
        self, filename: str, size: int, *, expires_after: int | None = None
    ) -> Upload:
        payload: dict[str, Any] = {
            "purpose": "batch",
            "filename": filename,
            "bytes": size,
            "mime_type": "application/jsonl",
        }
        if expires_after is not None:
            payload["expires_after"] = _expiry(expires_after)
        upload: Upload = self._json("POST", "/uploads", payload)
        return upload

    def add_upload_part(self, upload_id: str, size: int, body: BodyFactory) -> Upload:
        part: Upload = self._multipart(
            f"/uploads/{upload_id}/parts", {}, "data", "part", size, body
        )
        return part

    def complete_upload(self, upload_id: str, part_ids: list[str]) -> Upload:
        """Complete an upload. Like creating a batch, this cannot be repeated: a second call
        on a completed upload is refused, so an unknown outcome is raised at once."""
        payload = {"part_ids": part_ids}
        completed: Upload = self._json(
            "POST", f"/uploads/{upload_id}/complete", payload, retry_ambiguous=False
        )
        return completed

    def cancel_upload(self, upload_id: str) -> Upload:
        cancelled: Upload = self._json("POST", f"/uploads/{upload_id}/cancel")
        return cancelled

    # --- batches -------------------------------------------------------------------------------

    def create_batch(
        self,
        input_file_id: str,
        endpoint: str,
        metadata: Mapping[str, str],
        *,
        output_expires_after: int | None = None,
    ) -> Batch:
        """Create a batch. Failures after which the batch may exist anyway (a dropped connection,
        a timeout, a 5xx) are raised at once, marked `ambiguous`: only the caller can tell, by its
        metadata, whether to adopt what was created or to try again; a blind retry could pay for
        a second batch.
        """
        payload: dict[str, Any] = {
            "input_file_id": input_file_id,
            "endpoint": endpoint,
            "completion_window": "24h",
            "metadata": dict(metadata),
        }
        if output_expires_after is not None:
            # For the output and error files, counted from their own creation.
            payload["output_expires_after"] = _expiry(output_expires_after)
        created: Batch = self._json("POST", "/batches", payload, retry_ambiguous=False)
        return created

    def retrieve_batch(self, batch_id: str) -> Batch:
        batch: Batch = self._json("GET", f"/batches/{batch_id}")
        return batch

    def cancel_batch(self, batch_id: str) -> Batch:
        batch: Batch = self._json("POST", f"/batches/{batch_id}/cancel")
        return batch

    def list_batches(self, page_size: int = 100) -> Iterator[Batch]:
        """Every batch, newest first, following the `after` cursor."""
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": page_size}
            if after:
                params["after"] = after
            page = self._json("GET", "/batches", params=params)
            yield from page["data"]
            if not page.get("has_more") or not page["data"]:
                return
            after = page["data"][-1]["id"]

    # --- transport -----------------------------------------------------------------------------

    def _json(
        self,
        method: str,
        path: str,
        payload: JSON | None = None,
        params: dict[str, Any] | None = None,
        *,
        retry_ambiguous: bool = True,
    ) -> Any:
        """The response's JSON, whose shape the caller names."""
        response = self._send(
            method, path, json=payload, params=params, retry_ambiguous=retry_ambiguous
        )
        return response.json()

    def _multipart(
        self,
        path: str,
        fields: Mapping[str, str],
        file_field: str,
        filename: str,
        size: int,
        body: BodyFactory,
    ) -> Any:
        boundary = uuid.uuid4().hex

        def make_body() -> _MultipartBody:
            return _MultipartBody(boundary, fields, file_field, filename, size, body())

        response = self._send(
            "POST",
            path,
            data=make_body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        return response.json()

    def _send(
        self,
        method: str,
        path: str,
        *,
        data: Callable[[], Any] | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        retry_ambiguous: bool = True,
        **kwargs: Any,
    ) -> requests.Response:
        url = self._base_url + path
        for attempt in range(self._retry.attempts):
            request_headers = {"Authorization": f"Bearer {self._api_key()}", **(headers or {})}
            try:
                response = self._session.request(
                    method,
                    url,
                    data=data() if data else None,
                    headers=request_headers,
                    timeout=self._timeout,
                    stream=stream,
                    **kwargs,
                )
            except _TRANSIENT_ERRORS as exc:
                error = OpenAIError(None, type(exc).__name__, self._redact(str(exc)))
                retry_after = None
                # Only a failed connect proves the server never saw the request.
                ambiguous = not isinstance(exc, requests.ConnectTimeout)
            except requests.RequestException as exc:
                # Not worth a retry (a malformed request); its message may quote our headers.
                raise OpenAIError(0, type(exc).__name__, self._redact(str(exc))) from None
            else:
                if response.ok:
                    return response
                error = self._error_from(response)
                retry_after = _retry_after_seconds(response)
                ambiguous = response.status_code >= 500
                response.close()
            last_attempt = attempt == self._retry.attempts - 1
            error.ambiguous = ambiguous and not retry_ambiguous
            if not error.retryable or last_attempt or error.ambiguous:
                raise error
            self._retry.sleep(self._retry.delay(attempt, retry_after))
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    def _error_from(self, response: requests.Response) -> OpenAIError:
        try:
            detail = response.json().get("error") or {}
        except ValueError:
            detail = {}
        message = detail.get("message") or response.reason or "no message"
        return OpenAIError(response.status_code, detail.get("code"), self._redact(str(message)))

    def _redact(self, text: str) -> str:
        """Errors travel to logs and emails; the key must never travel with them."""
        key = self._api_key()
        return text.replace(key, "***") if key else text


def _expiry(seconds: int) -> dict[str, Any]:
    """An expiration policy in OpenAI's shape: `seconds` after the file is created."""
    return {"anchor": "created_at", "seconds": seconds}


def _pooled_session(size: int) -> requests.Session:
    """Enough kept-alive connections for every poll thread (requests keeps 10 by default)."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _retry_after_seconds(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class _MultipartBody:
    """A multipart/form-data body streamed from an iterable, with an exact length.

    requests sends an object with __len__ and __iter__ with Content-Length instead of chunked
    encoding, which upload endpoints expect.
    """

    def __init__(
        self,
        boundary: str,
        fields: Mapping[str, str],
        file_field: str,
        filename: str,
        size: int,
        content: Iterable[bytes],
    ) -> None:
        head = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
            f"{value}\r\n".encode()
            for name, value in fields.items()
        )
        safe_name = filename.replace('"', "_").replace("\r", "_").replace("\n", "_")
        head += (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{file_field}"; filename="{safe_name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        self._head = head
        self._tail = f"\r\n--{boundary}--\r\n".encode()
        self._size = size
        self._content = content

    def __len__(self) -> int:
        return len(self._head) + self._size + len(self._tail)

    def __iter__(self) -> Iterator[bytes]:
        yield self._head
        sent = 0
        for chunk in self._content:
            sent += len(chunk)
            yield chunk
        if sent != self._size:
            # A short or long body would corrupt the upload; fail loudly instead.
            raise ValueError(f"upload body was {sent} bytes, declared {self._size}")
        yield self._tail
