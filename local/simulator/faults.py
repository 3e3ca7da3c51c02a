"""Scripted transport faults and the record of every call the server answered.

Kinds: "429" and "500"/"502"/"503" answer with that error; "drop" resets the connection with no
answer; "latency" sleeps `delay` seconds and then serves the call; "hang" reads the request and
then answers nothing until the client closes the connection (at most `delay` seconds, or
HANG_CAP_SECONDS), then resets it: the client sees its own read timeout.

`where={"file_id": "file-abc"}` narrows a fault to the calls whose path names those values: one
file's downloads fail while every other file's succeed.

`lands_late=True` (with a 5xx, "drop" or "hang") makes the failure a lie, as a real server's can
be: the failure is delivered first, and only then is the call performed, for real. The fault's
`landed` event is set once it has been, so a test can order "the client gave up" before "the
call took effect" without any timing luck. With `held=True` as well, the late call waits for
`fault.release()` (or HANG_CAP_SECONDS) before it lands, so the test decides the moment.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import overload

FAULT_KINDS = ("429", "500", "502", "503", "drop", "latency", "hang")
# Failures after which the call may still have taken effect (a 429 says it did not).
LANDS_LATE_KINDS = ("500", "502", "503", "drop", "hang")
ANY_ROUTE = "*"
# How long a "hang" waits for the client to give up when no `delay` is given.
HANG_CAP_SECONDS = 30.0


@dataclass
class Fault:
    route: str  # "METHOD /v1/template" or "*"
    kind: str
    remaining: int
    retry_after: float = 0.0
    delay: float = 0.0
    lands_late: bool = False
    held: bool = False
    where: dict[str, str] = field(default_factory=dict)
    # Set each time a late call has been performed; `landed_status` is what it answered (to
    # nobody: the client had already been given the failure).
    landed: threading.Event = field(default_factory=threading.Event, compare=False)
    landed_status: int | None = None
    released: threading.Event = field(default_factory=threading.Event, compare=False)

    def matches(self, route: str, params: dict[str, str] | None = None) -> bool:
        if self.route not in {ANY_ROUTE, route}:
            return False
        given = params or {}
        return all(given.get(name) == value for name, value in self.where.items())

    @property
    def hang_seconds(self) -> float:
        return self.delay if self.delay > 0 else HANG_CAP_SECONDS

    def release(self) -> None:
        """Let a held late call land."""
        self.released.set()

    def wait_until_released(self) -> None:
        if self.held:
            self.released.wait(HANG_CAP_SECONDS)

    def record_landing(self, status: int) -> None:
        self.landed_status = status
        self.landed.set()


class FaultPlan:
    """Faults for the next N matching calls, consumed first-injected-first."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def inject(
        self,
        route: str,
        kind: str,
        times: int = 1,
        retry_after: float = 0,
        delay: float = 0.0,
        *,
        lands_late: bool = False,
        held: bool = False,
        where: dict[str, str] | None = None,
    ) -> Fault:
        """Script a fault for the next `times` calls of `route`; returned so a test can wait on
        its `landed` event."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        if times < 1:
            raise ValueError("times must be at least 1")
        if route != ANY_ROUTE and len(route.split(" ")) != 2:
            raise ValueError('route must look like "GET /v1/batches/{batch_id}" or be "*"')
        if lands_late and kind not in LANDS_LATE_KINDS:
            raise ValueError(f"only {LANDS_LATE_KINDS} can land late, not {kind!r}")
        if held and not lands_late:
            raise ValueError("only a call that lands late can be held")
        fault = Fault(
            route,
            kind,
            times,
            float(retry_after),
            float(delay),
            lands_late,
            held,
            dict(where or {}),
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, route: str, params: dict[str, str] | None = None) -> Fault | None:
        """Consume one use of the oldest fault matching this route (and its path's values), if
        any."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(route, params):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)


Call = tuple[str, str, int]  # (method, route template, status); status 0 = connection dropped


class CallLog:
    """Thread-safe, append-only, list-like record of calls in arrival order."""

    def __init__(self) -> None:
        self._calls: list[Call] = []
        self._lock = threading.Lock()

    def append(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def snapshot(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def count(self, route: str) -> int:
        """Calls of "METHOD /v1/template" that got a 2xx."""
        method, _, template = route.partition(" ")
        return sum(
            1
            for m, t, status in self.snapshot()
            if m == method and t == template and 200 <= status < 300
        )

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._calls)

    @overload
    def __getitem__(self, index: int) -> Call: ...
    @overload
    def __getitem__(self, index: slice) -> list[Call]: ...
    def __getitem__(self, index: int | slice) -> Call | list[Call]:
        with self._lock:
            return self._calls[index]

    def __iter__(self) -> Iterator[Call]:
        return iter(self.snapshot())

    def __eq__(self, other: object) -> bool:
        return self.snapshot() == other

    def __repr__(self) -> str:
        return f"CallLog({self.snapshot()!r})"
