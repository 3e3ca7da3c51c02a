"""Builders for request files and S3 events, shared by the tests."""

from __future__ import annotations

import json
from typing import Any

from local.s3_events import object_created

MODELS = {
    "/v1/chat/completions": "gpt-4o-mini",
    "/v1/responses": "gpt-4.1-mini",
    "/v1/embeddings": "text-embedding-3-small",
    "/v1/completions": "gpt-3.5-turbo-instruct",
    "/v1/moderations": "omni-moderation-latest",
}


def request_body(endpoint: str, model: str, n: int) -> dict[str, Any]:
    text = f"request number {n}"
    if endpoint == "/v1/chat/completions":
        return {"model": model, "messages": [{"role": "user", "content": text}]}
    if endpoint == "/v1/responses":
        return {"model": model, "input": text}
    if endpoint == "/v1/completions":
        return {"model": model, "prompt": text}
    return {"model": model, "input": text}


def request_lines(
    count: int, endpoint: str = "/v1/chat/completions", *, prefix: str = "req-", model: str = ""
) -> list[dict[str, Any]]:
    model = model or MODELS[endpoint]
    return [
        {
            "custom_id": f"{prefix}{n}",
            "method": "POST",
            "url": endpoint,
            "body": request_body(endpoint, model, n),
        }
        for n in range(count)
    ]


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def drop(
    bucket: str,
    key: str,
    body: bytes,
    template: str = "s3_put.json",
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Upload an object (with its S3 user metadata), then return the S3 event AWS would send
    for it."""
    import boto3  # here, not above: the unit tests use this module and never need boto3

    put = boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=body, Metadata=metadata or {})
    return object_created(
        bucket=bucket,
        key=key,
        size=len(body),
        etag=put["ETag"],
        sequencer=f"{abs(hash((key, put['ETag']))):016X}",
        version_id=put.get("VersionId"),
        template=template,
    )


class Crash(Exception):
    """Stands for the process dying: nothing after it runs in this invocation."""


class Killed(BaseException):
    """Stands for the runtime killing the process (out of memory, exit): unlike an exception,
    no `except Exception` handler runs, so Powertools keeps its INPROGRESS record and the
    submission keeps its lease, as they would after a real kill."""


class CrashOnce:
    """Wraps the job store so that one named write 'crashes' the first time it is reached."""

    def __init__(
        self, store: Any, method: str, *, before: bool, crash: type[BaseException] = Crash
    ) -> None:
        self._store = store
        self._method = method
        self._before = before
        self._crash = crash
        self.crashed = False

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._store, name)
        if name != self._method or self.crashed:
            return real

        def crashing(*args: Any, **kwargs: Any) -> Any:
            self.crashed = True
            if self._before:
                raise self._crash(f"crash before {name}")
            real(*args, **kwargs)
            raise self._crash(f"crash after {name}")

        return crashing


class AfterWrite:
    """Wraps the job store so that a hook runs right after one named write, the first time it
    is reached for a given batch index: a gate that places an outside event at an exact step."""

    def __init__(self, store: Any, method: str, index: int, hook: Any) -> None:
        self._store = store
        self._method = method
        self._index = index
        self._hook = hook
        self.fired = False

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._store, name)
        if name != self._method:
            return real

        def hooked(job_id: str, index: int, *args: Any, **kwargs: Any) -> Any:
            result = real(job_id, index, *args, **kwargs)
            if index == self._index and not self.fired:
                self.fired = True
                self._hook(job_id)
            return result

        return hooked
