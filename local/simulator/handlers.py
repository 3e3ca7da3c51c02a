"""One function per OpenAI route; each returns the JSON object (or a Response) to send."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from werkzeug.wrappers import Response
from werkzeug.wsgi import wrap_file

from . import errors
from .batches import BatchBook
from .clock import Clock
from .expiry import checked_lifetime, form_policy
from .multipart import SpoolingRequest
from .store import MAX_FILE_BYTES, FileStore, check_purpose

STREAM_CHUNK = 1024 * 1024
BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON.)"
)
Json = dict[str, Any]


def json_body(request: SpoolingRequest) -> Json:
    payload = request.get_json(force=True, silent=True)
    if not isinstance(payload, dict):
        raise errors.invalid_request(BAD_JSON)
    return payload


def page_limit(request: SpoolingRequest, default: int, maximum: int) -> int:
    raw = request.args.get("limit")
    if raw is None:
        return default
    try:
        limit = int(raw)
    except ValueError:
        raise errors.invalid_request(
            f"Invalid 'limit': expected an integer, but got {raw!r} instead.", "limit"
        ) from None
    if not 1 <= limit <= maximum:
        raise errors.invalid_request(
            f"Invalid 'limit': integer must be between 1 and {maximum}, got {limit}.", "limit"
        )
    return limit


def after_cursor[T](items: list[T], after: str | None, item_id: Callable[[T], str]) -> list[T]:
    """The items that follow the one whose id is `after` (all of them without a cursor)."""
    if after is None:
        return items
    ids = [item_id(item) for item in items]
    return items[ids.index(after) + 1 :] if after in ids else []


def list_object(page: list[Json], has_more: bool) -> Json:
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": has_more,
    }


class Handlers:
    def __init__(self, files: FileStore, batches: BatchBook, clock: Clock) -> None:
        self.files = files
        self.batches = batches
        self.clock = clock

    # -- Files API -----------------------------------------------------------------------

    def create_file(self, request: SpoolingRequest) -> Json:
        spooled = request.spooled_path("file")
        if spooled is None:
            raise errors.invalid_request("Missing required parameter: 'file'.", "file")
        path, filename = spooled
        purpose = check_purpose(request.form.get("purpose"), filename)
        lifetime = checked_lifetime(form_policy(request.form), "expires_after")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise errors.invalid_request(
                f"File is too large. Individual files can be up to {MAX_FILE_BYTES} bytes "
                "(512 MB).",
                "file",
            )
        return self.files.add(path, filename, purpose, lifetime=lifetime).to_json()

    def list_files(self, request: SpoolingRequest) -> Json:
        purpose = request.args.get("purpose")
        newest_first = request.args.get("order", "desc") != "asc"
        stored = [f for f in self.files.all() if purpose is None or f.purpose == purpose]
        stored.sort(key=lambda f: f.created_at, reverse=newest_first)
        stored = after_cursor(stored, request.args.get("after"), lambda f: f.id)
        limit = page_limit(request, default=10_000, maximum=10_000)
        return list_object([f.to_json() for f in stored[:limit]], len(stored) > limit)

    def retrieve_file(self, _request: SpoolingRequest, file_id: str) -> Json:
        return self.files.get(file_id).to_json()

    def delete_file(self, _request: SpoolingRequest, file_id: str) -> Json:
        stored = self.files.delete(file_id)
        return {"id": stored.id, "object": "file", "deleted": True}

    def file_content(self, request: SpoolingRequest, file_id: str) -> Response:
        stored = self.files.get(file_id)
        handle = stored.path.open("rb")  # closed by the WSGI server when the body is sent
        size = os.fstat(handle.fileno()).st_size
        response = Response(
            wrap_file(request.environ, handle, buffer_size=STREAM_CHUNK),
            mimetype="application/octet-stream",
            direct_passthrough=True,
        )
        response.headers["Content-Length"] = str(size)
        return response

    # -- Uploads API ---------------------------------------------------------------------

    def create_upload(self, request: SpoolingRequest) -> Json:
        payload = json_body(request)
        upload = self.files.create_upload(
            payload.get("bytes"),
            payload.get("filename"),
            payload.get("mime_type"),
            payload.get("purpose"),
            checked_lifetime(payload.get("expires_after"), "expires_after"),
        )
        return upload.to_json(self.clock.now())

    def add_upload_part(self, request: SpoolingRequest, upload_id: str) -> Json:
        self.files.get_upload(upload_id)  # 404 before touching the body
        spooled = request.spooled_path("data")
        if spooled is None:
            raise errors.invalid_request("Missing required parameter: 'data'.", "data")
        return self.files.add_part(upload_id, spooled[0]).to_json()

    def complete_upload(self, request: SpoolingRequest, upload_id: str) -> Json:
        payload = json_body(request)
        upload = self.files.complete_upload(upload_id, payload.get("part_ids"), payload.get("md5"))
        return upload.to_json(self.clock.now())

    def cancel_upload(self, _request: SpoolingRequest, upload_id: str) -> Json:
        return self.files.cancel_upload(upload_id).to_json(self.clock.now())

    # -- Batches API ---------------------------------------------------------------------

    def create_batch(self, request: SpoolingRequest) -> Json:
        return self.batches.render(self.batches.create(json_body(request)))

    def retrieve_batch(self, _request: SpoolingRequest, batch_id: str) -> Json:
        return self.batches.render(self.batches.get(batch_id))

    def list_batches(self, request: SpoolingRequest) -> Json:
        limit = page_limit(request, default=20, maximum=100)
        records = after_cursor(
            self.batches.newest_first(), request.args.get("after"), lambda r: r.id
        )
        page = [self.batches.render(record) for record in records[:limit]]
        return list_object(page, has_more=len(records) > limit)

    def cancel_batch(self, _request: SpoolingRequest, batch_id: str) -> Json:
        return self.batches.cancel(batch_id)

    # -- Videos API (content of batch-made videos only) ----------------------------------

    def video_content(self, request: SpoolingRequest, video_id: str) -> Response:
        variant = request.args.get("variant", "video")
        content, mimetype = self.batches.videos.download(video_id, variant, self.clock.now())
        return Response(content, mimetype=mimetype)
