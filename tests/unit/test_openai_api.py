"""The OpenAI adapter's own rules: retry timing and keeping the key out of errors."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from batchdrop.adapters.openai_api import OpenAIBatchAPI, OpenAIError, RetryPolicy

KEY = "sk-sentinel-DO-NOT-LEAK-1234"


class FakeSession:
    """Answers every request with one canned response and records what was asked."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        self.status, self.body, self.headers = status, body, headers or {}
        self.requests: list[dict[str, Any]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        self.requests.append({"method": method, "url": url, **kwargs})
        response = requests.Response()
        response.status_code = self.status
        response._content = __import__("json").dumps(self.body).encode()
        response.headers.update(self.headers)
        return response


def api(session: FakeSession, waits: list[float]) -> OpenAIBatchAPI:
    policy = RetryPolicy(attempts=3, sleep=waits.append)
    return OpenAIBatchAPI("http://sim/v1", lambda: KEY, retry=policy, session=session)  # type: ignore[arg-type]


def test_an_error_that_quotes_the_key_is_redacted() -> None:
    body = {"error": {"message": f"Incorrect API key provided: {KEY}", "code": "invalid_api_key"}}
    with pytest.raises(OpenAIError) as caught:
        api(FakeSession(401, body), []).retrieve_batch("batch_1")
    assert KEY not in str(caught.value)
    assert caught.value.code == "invalid_api_key"
    assert not caught.value.retryable


def test_retry_after_is_waited_for_and_attempts_are_capped() -> None:
    waits: list[float] = []
    session = FakeSession(429, {"error": {"message": "slow down"}}, {"Retry-After": "12"})
    with pytest.raises(OpenAIError, match="429"):
        api(session, waits).retrieve_batch("batch_1")
    assert len(session.requests) == 3
    assert waits == [12.0, 12.0]


def test_insufficient_quota_is_not_retried() -> None:
    waits: list[float] = []
    body = {"error": {"message": "You exceeded your current quota", "code": "insufficient_quota"}}
    session = FakeSession(429, body)
    with pytest.raises(OpenAIError):
        api(session, waits).retrieve_batch("batch_1")
    assert len(session.requests) == 1


@pytest.mark.parametrize(
    "call",
    [
        lambda client: client.create_batch("file-1", "/v1/embeddings", {}),
        lambda client: client.complete_upload("upload_1", ["part_1"]),
    ],
    ids=["create_batch", "complete_upload"],
)
def test_a_server_error_on_a_call_that_cannot_repeat_is_handed_back_at_once(call: Any) -> None:
    """It may have taken effect anyway; only the caller can reconcile."""
    waits: list[float] = []
    session = FakeSession(500, {"error": {"message": "boom"}})
    with pytest.raises(OpenAIError) as caught:
        call(api(session, waits))
    assert len(session.requests) == 1
    assert caught.value.retryable
    assert caught.value.ambiguous


def test_a_server_error_on_a_read_is_retried_and_not_ambiguous() -> None:
    waits: list[float] = []
    session = FakeSession(500, {"error": {"message": "boom"}})
    with pytest.raises(OpenAIError) as caught:
        api(session, waits).retrieve_batch("batch_1")
    assert len(session.requests) == 3
    assert not caught.value.ambiguous


@pytest.mark.parametrize("attempt", range(8))
def test_backoff_is_jittered_and_capped(attempt: int) -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=20)
    for _ in range(50):
        assert 0 <= policy.delay(attempt, None) <= min(20, 0.5 * 2**attempt)


def test_an_expired_video_is_refused_at_once_not_retried() -> None:
    waits: list[float] = []
    body = {"error": {"message": "The content of video video_1 has expired", "code": None}}
    session = FakeSession(404, body)
    with pytest.raises(OpenAIError) as caught, api(session, waits).video_content("video_1"):
        pass
    assert not caught.value.retryable
    (sent,) = session.requests
    assert sent["url"] == "http://sim/v1/videos/video_1/content"
    assert sent["params"] == {"variant": "video"}
    assert sent["stream"] is True
