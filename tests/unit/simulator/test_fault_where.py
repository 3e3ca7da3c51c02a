"""A fault narrowed to one path value: one file's downloads fail, every other file's succeed."""

from __future__ import annotations

from local.simulator.faults import FaultPlan

ROUTE = "GET /v1/files/{file_id}/content"


def test_a_fault_with_where_takes_only_the_calls_that_name_its_values() -> None:
    plan = FaultPlan()
    plan.inject(ROUTE, kind="503", times=2, where={"file_id": "file-bad"})

    assert plan.take(ROUTE, {"file_id": "file-good"}) is None
    assert plan.take(ROUTE, {"file_id": "file-bad"}) is not None
    assert plan.take("GET /v1/files/{file_id}", {"file_id": "file-bad"}) is None
    assert plan.take(ROUTE, {"file_id": "file-bad"}) is not None
    assert plan.pending == []


def test_a_fault_without_where_still_takes_every_call_of_its_route() -> None:
    plan = FaultPlan()
    plan.inject(ROUTE, kind="503", times=2)

    assert plan.take(ROUTE, {"file_id": "any"}) is not None
    assert plan.take(ROUTE) is not None
