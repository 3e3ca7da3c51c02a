"""The simulator's link cap: request bodies arrive no faster than the set rate."""

from __future__ import annotations

import io

import pytest

from local.simulator import server
from local.simulator.server import RateLimitedStream


def test_a_body_arrives_at_the_link_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr(server.time, "sleep", waits.append)
    body = RateLimitedStream(io.BytesIO(b"x" * 1000), rate=100.0)

    received = b"".join(iter(lambda: body.read(250), b""))

    assert received == b"x" * 1000
    # With the waits not really waited, each is the whole time the bytes so far should take.
    assert waits == pytest.approx([2.5, 5.0, 7.5, 10.0], abs=0.1)
