"""Writing many DynamoDB items fast (batch_write_item, a few threads), as raw attribute maps."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import batched
from typing import Any

import boto3

RawItem = dict[str, Any]  # DynamoDB JSON: {"pk": {"S": "…"}, …}
BATCH_WRITE_LIMIT = 25


def put_items(table: str, items: Sequence[RawItem], *, threads: int = 4) -> None:
    """Put every item (overwriting any with the same key)."""
    client = boto3.client("dynamodb")

    def write(chunk: tuple[RawItem, ...]) -> None:
        pending: dict[str, Any] = {table: [{"PutRequest": {"Item": item}} for item in chunk]}
        for _attempt in range(10):
            pending = client.batch_write_item(RequestItems=pending)["UnprocessedItems"]
            if not pending:
                return
            time.sleep(0.05)
        raise RuntimeError(f"moto left {len(pending[table])} items unprocessed")

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(write, batched(items, BATCH_WRITE_LIMIT, strict=False)))


def get_item(table: str, pk: str, sk: str) -> RawItem:
    key = {"pk": {"S": pk}, "sk": {"S": sk}}
    item: RawItem = boto3.client("dynamodb").get_item(
        TableName=table, Key=key, ConsistentRead=True
    )["Item"]
    return item


def renamed(item: RawItem, replacements: Iterable[tuple[str, str]]) -> RawItem:
    """A copy of an item with every occurrence of some strings replaced (ids, keys)."""
    text = json.dumps(item)
    for old, new in replacements:
        text = text.replace(old, new)
    copy: RawItem = json.loads(text)
    return copy
