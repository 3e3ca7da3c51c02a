"""Expiration policies: their checks, their multipart form, and files that expire."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from local.simulator import ManualClock
from local.simulator.errors import ApiError
from local.simulator.expiry import checked_lifetime, form_policy
from local.simulator.store import FileStore, IdFactory


@pytest.mark.parametrize("seconds", [3600, 86400, 2_592_000])
def test_a_policy_within_the_bounds_gives_its_seconds(seconds: int) -> None:
    assert (
        checked_lifetime({"anchor": "created_at", "seconds": seconds}, "expires_after") == seconds
    )


def test_no_policy_is_no_lifetime() -> None:
    assert checked_lifetime(None, "expires_after") is None


@pytest.mark.parametrize(
    ("policy", "param", "code"),
    [
        ("3600", "expires_after", "invalid_type"),
        ({"seconds": 3600}, "expires_after.anchor", "missing_required_parameter"),
        ({"anchor": "now", "seconds": 3600}, "expires_after.anchor", "invalid_value"),
        ({"anchor": "created_at"}, "expires_after.seconds", "missing_required_parameter"),
        ({"anchor": "created_at", "seconds": True}, "expires_after.seconds", "invalid_type"),
        (
            {"anchor": "created_at", "seconds": 3599},
            "expires_after.seconds",
            "integer_below_min_value",
        ),
        (
            {"anchor": "created_at", "seconds": 2_592_001},
            "expires_after.seconds",
            "integer_above_max_value",
        ),
    ],
)
def test_a_policy_out_of_bounds_is_a_400(policy: Any, param: str, code: str) -> None:
    with pytest.raises(ApiError) as refused:
        checked_lifetime(policy, "expires_after")

    assert (refused.value.status, refused.value.param, refused.value.code) == (400, param, code)


@pytest.mark.parametrize(
    ("form", "policy"),
    [
        ({}, None),
        (
            {"expires_after[anchor]": "created_at", "expires_after[seconds]": "7200"},
            {"anchor": "created_at", "seconds": 7200},
        ),
        ({"expires_after[seconds]": "soon"}, {"seconds": "soon"}),
        ({"expires_after": "7200"}, "7200"),
    ],
)
def test_the_form_fields_the_sdk_sends_read_as_the_json_policy(
    form: dict[str, str], policy: Any
) -> None:
    assert form_policy(form) == policy


def _content(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(b"{}\n")
    return path


def test_a_file_is_gone_from_its_expiry_on(tmp_path: Path) -> None:
    clock = ManualClock(start=1000)
    store = FileStore(tmp_path, IdFactory(0), clock)
    short = store.add(_content(tmp_path, "a"), "a.jsonl", "batch", lifetime=3600)
    default = store.add(_content(tmp_path, "b"), "b.jsonl", "batch")
    forever = store.add(_content(tmp_path, "c"), "c.txt", "user_data")

    clock.advance(3600)

    assert (short.expires_at, default.expires_at, forever.expires_at) == (
        4600,
        1000 + 2_592_000,
        None,
    )
    assert [f.id for f in store.all()] == [default.id, forever.id]
    with pytest.raises(ApiError):
        store.get(short.id)
    with pytest.raises(ApiError):
        store.delete(short.id)
    assert store.deleted == []


def test_deletes_are_logged_in_order(tmp_path: Path) -> None:
    store = FileStore(tmp_path, IdFactory(0), ManualClock())
    first = store.add(_content(tmp_path, "a"), "a.jsonl", "batch")
    second = store.add(_content(tmp_path, "b"), "b.jsonl", "batch")

    store.delete(second.id)
    store.delete(first.id)

    assert store.deleted == [second.id, first.id]
    assert store.all() == []
