"""Builders for request files and S3 events, shared by the tests."""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import quote_plus

import boto3

from tests.conftest import load_event

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


def s3_encoded(key: str) -> str:
    """Keys arrive in S3 events URL-encoded, with '+' for a space."""
    return quote_plus(key, safe="/")


def drop(bucket: str, key: str, body: bytes, template: str = "s3_put.json") -> dict[str, Any]:
    """Upload an object, then return the S3 event AWS would send for it."""
    s3 = boto3.client("s3")
    put = s3.put_object(Bucket=bucket, Key=key, Body=body)
    event = copy.deepcopy(load_event(template))
    record = event["Records"][0]
    record["s3"]["bucket"]["name"] = bucket
    record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
    record["s3"]["object"].update(
        {
            "key": s3_encoded(key),
            "size": len(body),
            "eTag": put["ETag"].strip('"'),
            "versionId": put.get("VersionId"),
            "sequencer": f"{abs(hash((key, put['ETag']))):016X}",
        }
    )
    return event
