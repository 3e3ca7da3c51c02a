"""OpenAI's Files, Uploads and Batches APIs in memory, with scripted outcomes and failures.

Batches are created "validating" at the clock's time and stay as they are until the test moves
them on (`progress`, `end`, `complete`, `fail`): no lifecycle runs by itself, so every state a
use case sees is one the test chose. Any method can be made to fail (`fail_next`), with an
error that either took effect first (a create that landed although the client was told
otherwise) or did not.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from typing import Any, cast

from batchdrop.errors import OpenAIError
from batchdrop.ports import BodyFactory, FileObject, Readable, Upload
from batchdrop.records import Batch

JSON = dict[str, Any]
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


def ambiguous(status: int | None = None, code: str = "ConnectionError") -> OpenAIError:
    """A failure after which the call may have taken effect (a dropped connection, a 5xx)."""
    error = OpenAIError(status, code, "the outcome of this call is unknown")
    error.ambiguous = True
    return error


def refused(status: int = 400, code: str = "invalid_request_error") -> OpenAIError:
    """A failure after which nothing happened (a 4xx, or a 429 that outlasted the retries)."""
    return OpenAIError(status, code, "refused")


@dataclass
class _Failure:
    error: BaseException
    takes_effect: bool


class FakeBatchAPI:
    read_timeout: float = 120.0

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, list[_Failure | None]] = {}
        self._hooks: dict[str, list[Callable[[], None]]] = {}
        self._ids = 0
        self.files: dict[str, bytes] = {}
        self.videos: dict[str, bytes] = {}  # a video's content by its id
        # What each upload and batch create asked for (seconds; None: OpenAI's default).
        self.file_expiry: dict[str, int | None] = {}
        self.output_expiry: dict[str, int | None] = {}
        self.uploads: dict[str, JSON] = {}
        self.batches: dict[str, JSON] = {}  # in creation order
        self.calls: list[str] = []  # every call by method name, failed ones included
        self.deleted: list[str] = []  # the files deleted, in order
        self._gone: dict[str, bytes] = {}  # their bytes, for tests to read still

    # --- for tests ------------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        error: BaseException,
        *,
        times: int = 1,
        after: int = 0,
        takes_effect: bool = False,
    ) -> None:
        """The next `times` calls of `method` (once `after` more have succeeded) raise `error`;
        with `takes_effect` each one does what it was asked first (OpenAI acted, the client
        never heard)."""
        failure = _Failure(error, takes_effect)
        self._failures.setdefault(method, []).extend([None] * after + [failure] * times)

    def before(self, method: str, hook: Callable[[], None]) -> None:
        """Run `hook()` the next time `method` is called, before it runs (once): another
        caller's whole step can be placed exactly there."""
        self._hooks.setdefault(method, []).append(hook)

    def count(self, method: str) -> int:
        return self.calls.count(method)

    def add_batch(self, *, metadata: Mapping[str, str], created_at: int, **fields: Any) -> JSON:
        """A batch made by someone else, or long ago (as OpenAI lists it)."""
        batch = self._new_batch(str(fields.pop("input_file_id", "file-x")), "/v1/x", metadata)
        batch.update(created_at=created_at, **fields)
        return dict(batch)

    def progress(self, batch_id: str, status: str, **fields: Any) -> None:
        """Move a batch on, e.g. to "in_progress" or "finalizing"."""
        batch = self.batches[batch_id]
        batch.update(status=status, **fields)
        batch.setdefault(f"{status}_at", int(self._clock()))

    def end(
        self,
        batch_id: str,
        status: str,
        *,
        output: Iterable[JSON] = (),
        error: Iterable[JSON] = (),
        **fields: Any,
    ) -> None:
        """End a batch with these output and error lines (a file only where there are lines)."""
        output_lines, error_lines = list(output), list(error)
        batch = self.batches[batch_id]
        if output_lines:
            batch["output_file_id"] = self._file(output_lines)
        if error_lines:
            batch["error_file_id"] = self._file(error_lines)
        failed = sum(1 for line in [*output_lines, *error_lines] if not _succeeded(line))
        batch["request_counts"] = {
            "total": len(output_lines) + len(error_lines),
            "completed": len(output_lines) + len(error_lines) - failed,
            "failed": failed,
        }
        self.progress(batch_id, status, **fields)

    def input_lines(self, batch_id: str) -> list[JSON]:
        """The requests a batch was created with."""
        file_id = self.batches[batch_id]["input_file_id"]
        content = self.files.get(file_id) or self._gone[file_id]
        return [json.loads(line) for line in content.splitlines()]

    def complete(self, batch_id: str, *, failing: Iterable[str] = (), usage: int = 10) -> None:
        """Run every request of the batch: those named in `failing` fail with a 400."""
        failing = set(failing)
        output = []
        for request in self.input_lines(batch_id):
            custom_id = request["custom_id"]
            status = 400 if custom_id in failing else 200
            output.append(result_line(custom_id, status))
        self.end(
            batch_id,
            "completed",
            output=output,
            usage={"input_tokens": usage, "output_tokens": usage, "total_tokens": 2 * usage},
        )

    def fail(self, batch_id: str, code: str, message: str = "the batch failed") -> None:
        """A batch that failed before running anything (OpenAI's `errors`)."""
        errors = {"object": "list", "data": [{"code": code, "message": message, "line": None}]}
        self.end(batch_id, "failed", errors=errors)

    def run_partly(self, batch_id: str, status: str, ran: int) -> None:
        """End a batch "expired" or "cancelled" after its first `ran` requests ran: the rest
        are listed in the error file as never run."""
        code = "batch_expired" if status == "expired" else "batch_cancelled"
        requests = [line["custom_id"] for line in self.input_lines(batch_id)]
        self.end(
            batch_id,
            status,
            output=[result_line(custom_id, 200) for custom_id in requests[:ran]],
            error=[not_run_line(custom_id, code) for custom_id in requests[ran:]],
        )

    # --- files ----------------------------------------------------------------------------------

    def upload_file(
        self, filename: str, size: int, body: BodyFactory, *, expires_after: int | None = None
    ) -> FileObject:
        def upload() -> FileObject:
            file = self._store_file(filename, size, body())
            self.file_expiry[file["id"]] = expires_after
            return file

        return self._call("upload_file", upload)

    @contextmanager
    def file_stream(self, file_id: str) -> Iterator[Readable]:
        content = self._call("file_stream", lambda: self.files[file_id])
        yield BytesIO(content)

    @contextmanager
    def video_content(self, video_id: str) -> Iterator[Readable]:
        yield BytesIO(self._call("video_content", lambda: self.videos[video_id]))

    # --- uploads --------------------------------------------------------------------------------

    def create_upload(
        self, filename: str, size: int, *, expires_after: int | None = None
    ) -> Upload:
        def create() -> Upload:
            upload_id = self._id("upload")
            stored = {
                "id": upload_id,
                "filename": filename,
                "bytes": size,
                "parts": {},
                "expires_after": expires_after,
            }
            self.uploads[upload_id] = {**stored, "status": "pending"}
            return {"id": upload_id, "status": "pending"}

        return self._call("create_upload", create)

    def add_upload_part(self, upload_id: str, size: int, body: BodyFactory) -> Upload:
        def add() -> Upload:
            content = b"".join(body())
            assert len(content) == size, "a part's declared size must be what it sends"
            part_id = self._id("part")
            self.uploads[upload_id]["parts"][part_id] = content
            return {"id": part_id}

        return self._call("add_upload_part", add)

    def complete_upload(self, upload_id: str, part_ids: list[str]) -> Upload:
        def complete() -> Upload:
            upload = self.uploads[upload_id]
            if upload["status"] != "pending":
                raise refused(400, "upload_not_pending")
            content = b"".join(upload["parts"][part_id] for part_id in part_ids)
            file = self._store_file(upload["filename"], upload["bytes"], [content])
            self.file_expiry[file["id"]] = upload["expires_after"]
            upload["status"] = "completed"
            return {"id": upload_id, "status": "completed", "file": file}

        return self._call("complete_upload", complete)

    def cancel_upload(self, upload_id: str) -> Upload:
        def cancel() -> Upload:
            self.uploads[upload_id]["status"] = "cancelled"
            return {"id": upload_id, "status": "cancelled"}

        return self._call("cancel_upload", cancel)

    # --- batches --------------------------------------------------------------------------------

    def create_batch(
        self,
        input_file_id: str,
        endpoint: str,
        metadata: Mapping[str, str],
        *,
        output_expires_after: int | None = None,
    ) -> Batch:
        def create() -> Batch:
            batch = self._new_batch(input_file_id, endpoint, metadata)
            self.output_expiry[batch["id"]] = output_expires_after
            return _as_batch(batch)

        return self._call("create_batch", create)

    def retrieve_batch(self, batch_id: str) -> Batch:
        return self._call("retrieve_batch", lambda: _as_batch(self.batches[batch_id]))

    def cancel_batch(self, batch_id: str) -> Batch:
        def cancel() -> Batch:
            batch = self.batches[batch_id]
            if batch["status"] not in TERMINAL:
                self.progress(batch_id, "cancelling")
            return _as_batch(batch)

        return self._call("cancel_batch", cancel)

    def list_batches(self) -> Iterator[Batch]:
        """Newest first, as OpenAI lists them."""
        listed = self._call(
            "list_batches",
            lambda: sorted(
                (_as_batch(batch) for batch in self.batches.values()),
                key=lambda batch: batch["created_at"],
                reverse=True,
            ),
        )
        yield from listed

    def delete_file(self, file_id: str) -> JSON:
        def delete() -> JSON:
            content = self.files.pop(file_id, None)
            if content is None:
                raise refused(404, "not_found")
            self.deleted.append(file_id)
            self._gone[file_id] = content
            return {"id": file_id, "object": "file", "deleted": True}

        return self._call("delete_file", delete)

    # --- internals ------------------------------------------------------------------------------

    def _call[T](self, method: str, action: Callable[[], T]) -> T:
        with self._lock:
            self.calls.append(method)
            failures = self._failures.get(method)
            failure = failures.pop(0) if failures else None
            hooks = self._hooks.get(method)
            hook = hooks.pop(0) if hooks else None
        if hook is not None:
            hook()
        if failure is None:
            return action()
        if failure.takes_effect:
            action()
        raise failure.error

    def _id(self, kind: str) -> str:
        with self._lock:
            self._ids += 1
            return f"{kind}-{self._ids}"

    def _store_file(self, filename: str, size: int, chunks: Iterable[bytes]) -> FileObject:
        content = b"".join(chunks)
        assert len(content) == size, "an upload's declared size must be what it sends"
        file_id = self._id("file")
        self.files[file_id] = content
        return {"id": file_id, "filename": filename, "bytes": size, "purpose": "batch"}

    def _file(self, lines: list[JSON]) -> str:
        content = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
        return str(self._store_file("results.jsonl", len(content), [content])["id"])

    def _new_batch(self, input_file_id: str, endpoint: str, metadata: Mapping[str, str]) -> JSON:
        batch: JSON = {
            "id": self._id("batch"),
            "object": "batch",
            "endpoint": endpoint,
            "input_file_id": input_file_id,
            "completion_window": "24h",
            "status": "validating",
            "created_at": int(self._clock()),
            "metadata": dict(metadata),
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
        }
        self.batches[batch["id"]] = batch
        return batch


def _as_batch(batch: JSON) -> Batch:
    """A copy of a stored batch, as the API hands one out. Batches are kept as plain dicts, so
    a test can set any field; OpenAI's JSON is as untyped."""
    return cast(Batch, dict(batch))


def result_line(custom_id: str, status: int = 200) -> JSON:
    """One line of an output file: a response, successful or not."""
    body: JSON = (
        {"object": "chat.completion", "choices": [{"message": {"content": "ok"}}]}
        if status < 400
        else {"error": {"code": "invalid_request", "message": "bad request"}}
    )
    return {
        "id": f"batch_req_{custom_id}",
        "custom_id": custom_id,
        "response": {"status_code": status, "request_id": f"req_{custom_id}", "body": body},
        "error": None,
    }


def not_run_line(custom_id: str, code: str) -> JSON:
    """One line of an error file for a request the batch never ran."""
    return {
        "id": f"batch_req_{custom_id}",
        "custom_id": custom_id,
        "response": None,
        "error": {"code": code, "message": "This request was not executed."},
    }


def _succeeded(line: JSON) -> bool:
    response = line.get("response") or {}
    return line.get("error") is None and int(response.get("status_code", 500)) < 400
