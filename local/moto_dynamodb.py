"""moto's DynamoDB, as the tests need it: atomic conditional writes, and responses at speed.

- moto checks a write's condition and then applies it without a lock, so two threads can both
  pass `attribute_not_exists`. Exactly-once logic must be tested against the real guarantee, so
  every write runs under one shared lock.
- moto 5.2 serializes a response by walking the service's shapes, looking each of the ten
  members of every `AttributeValue` up under several aliases: a 1 KiB item costs ~20 ms, most
  of a soak's time. moto has already turned its items into wire-shaped dicts (`{"S": "x"}`,
  `{"M": {...}}`) by then, so an `AttributeValue` is emitted as it is, but for binary values,
  which go on the wire in base64. tests/integration/test_moto_dynamodb.py holds the result to
  moto's own.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from moto.core.serialize import BaseJSONSerializer
from moto.dynamodb.models import DynamoDBBackend

_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")
_lock = threading.RLock()


def tune_moto_dynamodb() -> None:
    """Idempotent: locks moto's DynamoDB writes and short-cuts its item serialization."""
    for name in _WRITES:
        method = getattr(DynamoDBBackend, name)
        if not getattr(method, "_batchdrop_tuned", False):
            setattr(DynamoDBBackend, name, _locked(method))
    serialize = BaseJSONSerializer._serialize_type_structure
    if not getattr(serialize, "_batchdrop_tuned", False):
        BaseJSONSerializer._serialize_type_structure = _items_as_stored(serialize)  # type: ignore[method-assign]


def _locked(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def write(*args: Any, **kwargs: Any) -> Any:
        with _lock:
            return method(*args, **kwargs)

    write._batchdrop_tuned = True  # type: ignore[attr-defined]
    return write


def _items_as_stored(serialize: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(serialize)
    def serialize_structure(
        self: BaseJSONSerializer, serialized: Any, value: Any, shape: Any, key: str
    ) -> None:
        if key and shape.name == "AttributeValue" and isinstance(value, dict):
            serialized[key] = _on_the_wire(value, self._base64)
            return
        serialize(self, serialized, value, shape, key)

    serialize_structure._batchdrop_tuned = True  # type: ignore[attr-defined]
    return serialize_structure


def _on_the_wire(value: dict[str, Any], base64: Callable[[Any], str]) -> dict[str, Any]:
    """An AttributeValue as DynamoDB's JSON carries it: binary in base64, the rest as is."""
    if "B" in value:
        return {"B": base64(value["B"])}
    if "BS" in value:
        return {"BS": [base64(member) for member in value["BS"]]}
    if "M" in value:
        return {"M": {k: _on_the_wire(v, base64) for k, v in value["M"].items()}}
    if "L" in value:
        return {"L": [_on_the_wire(member, base64) for member in value["L"]]}
    return value
