"""S3 ObjectCreated events exactly as AWS delivers them, built from the sample in events/."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

EVENTS = Path(__file__).resolve().parent.parent / "events"


def sample_event(name: str = "s3_put.json") -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


def encode_key(key: str) -> str:
    """S3 URL-encodes keys in events: '+' for a space, %XX for the rest, '/' kept."""
    return quote_plus(key, safe="/")


def object_created(
    *,
    bucket: str,
    key: str,
    size: int,
    etag: str,
    sequencer: str,
    version_id: str | None,
    region: str = "us-east-1",
    template: str = "s3_put.json",
) -> dict[str, Any]:
    """One-record ObjectCreated:Put event for an object that now exists."""
    event = copy.deepcopy(sample_event(template))
    record = event["Records"][0]
    record["awsRegion"] = region
    record["eventTime"] = (
        datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
    record["s3"]["bucket"]["name"] = bucket
    record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
    obj = record["s3"]["object"]
    obj.update(
        {"key": encode_key(key), "size": size, "eTag": etag.strip('"'), "sequencer": sequencer}
    )
    if version_id:
        obj["versionId"] = version_id
    else:
        obj.pop("versionId", None)
    return event
