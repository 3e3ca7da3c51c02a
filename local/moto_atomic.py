"""Make moto's DynamoDB conditional writes atomic, as DynamoDB's are.

moto checks a write's condition and then applies it without a lock, so two threads can both pass
`attribute_not_exists`. Exactly-once logic must be tested against the real guarantee.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from moto.dynamodb.models import DynamoDBBackend

_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")
_lock = threading.RLock()


def make_dynamodb_writes_atomic() -> None:
    """Idempotent: wraps each write method of moto's DynamoDB backend in one shared lock."""
    for name in _WRITES:
        method = getattr(DynamoDBBackend, name)
        if getattr(method, "_batchdrop_atomic", False):
            continue
        setattr(DynamoDBBackend, name, _locked(method))


def _locked(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def write(*args: Any, **kwargs: Any) -> Any:
        with _lock:
            return method(*args, **kwargs)

    write._batchdrop_atomic = True  # type: ignore[attr-defined]
    return write
