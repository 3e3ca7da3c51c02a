"""ApprovedBytes: an upload never passes on a chunk validation has not approved."""

from __future__ import annotations

import threading

import pytest

from batchdrop.domain.approval import ApprovedBytes, UploadAbandoned


def test_chunks_pass_only_as_far_as_approved() -> None:
    approved = ApprovedBytes()
    approved.approve(10)
    follower = approved.follow([b"12345", b"67890", b"abc"], start=0)

    assert [next(follower), next(follower)] == [b"12345", b"67890"]
    approved.abandon()
    with pytest.raises(UploadAbandoned):
        next(follower)  # ends at 13, never approved


def test_approval_never_moves_back() -> None:
    approved = ApprovedBytes()
    approved.approve(20)
    approved.approve(5)

    assert approved.until == 20


def test_a_waiting_upload_moves_on_when_validation_approves() -> None:
    approved = ApprovedBytes()
    passed: list[bytes] = []
    waiting = threading.Thread(target=lambda: passed.extend(approved.follow([b"x" * 8], start=4)))
    waiting.start()

    approved.approve(12)
    waiting.join(timeout=30)

    assert not waiting.is_alive()
    assert passed == [b"x" * 8]


def test_abandoning_wakes_a_waiting_upload_with_an_error() -> None:
    approved = ApprovedBytes()
    raised: list[BaseException] = []

    def wait() -> None:
        try:
            approved.wait_for(1)
        except UploadAbandoned as error:
            raised.append(error)

    waiting = threading.Thread(target=wait)
    waiting.start()
    approved.abandon()
    waiting.join(timeout=30)

    assert approved.abandoned
    assert len(raised) == 1
