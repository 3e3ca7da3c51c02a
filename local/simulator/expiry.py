"""Expiration policies: `expires_after` on files.create and uploads.create, and
`output_expires_after` on batches.create (for the batch's output and error files).

All three take `{"anchor": "created_at", "seconds": N}` with N from 3600 (1 hour) to 2592000
(30 days); the anchor is the file's own creation time. Without a policy, files with a batch
purpose expire after 30 days and all others stay until deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import errors

MIN_SECONDS = 3600
MAX_SECONDS = 2_592_000
ANCHORS = ("created_at",)


def _checked_anchor(policy: Mapping[str, Any], param: str) -> None:
    anchor = policy.get("anchor")
    if anchor is None:
        raise errors.invalid_request(
            f"Missing required parameter: '{param}.anchor'.",
            f"{param}.anchor",
            "missing_required_parameter",
        )
    if anchor not in ANCHORS:
        raise errors.invalid_request(
            f"Invalid value: {anchor!r}. Supported values are: 'created_at'.",
            f"{param}.anchor",
            "invalid_value",
        )


def _checked_seconds(policy: Mapping[str, Any], param: str) -> int:
    seconds = policy.get("seconds")
    name = f"{param}.seconds"
    if seconds is None:
        raise errors.invalid_request(
            f"Missing required parameter: '{name}'.", name, "missing_required_parameter"
        )
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        raise errors.invalid_request(
            f"Invalid type for '{name}': expected an integer, but got {seconds!r} instead.",
            name,
            "invalid_type",
        )
    if seconds < MIN_SECONDS:
        raise errors.invalid_request(
            f"Invalid '{name}': integer below minimum value. Expected a value >= {MIN_SECONDS}, "
            f"but got {seconds} instead.",
            name,
            "integer_below_min_value",
        )
    if seconds > MAX_SECONDS:
        raise errors.invalid_request(
            f"Invalid '{name}': integer above maximum value. Expected a value <= {MAX_SECONDS}, "
            f"but got {seconds} instead.",
            name,
            "integer_above_max_value",
        )
    return seconds


def checked_lifetime(policy: object, param: str) -> int | None:
    """Seconds from a file's creation to its expiry, or None when no policy was given."""
    if policy is None:
        return None
    if not isinstance(policy, Mapping):
        raise errors.invalid_request(
            f"Invalid type for '{param}': expected an object.", param, "invalid_type"
        )
    _checked_anchor(policy, param)
    return _checked_seconds(policy, param)


def form_policy(form: Mapping[str, str], param: str = "expires_after") -> object:
    """The policy a multipart form carries as `expires_after[anchor]` and
    `expires_after[seconds]` (how the SDK sends nested fields), in its JSON shape; a flat
    `expires_after` field comes back as the string it is, for the type check to refuse."""
    fields: dict[str, object] = {}
    for name in ("anchor", "seconds"):
        if (value := form.get(f"{param}[{name}]")) is not None:
            fields[name] = int(value) if value.lstrip("-").isdigit() else value
    return fields or form.get(param)
