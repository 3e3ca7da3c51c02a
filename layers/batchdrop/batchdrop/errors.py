"""What can go wrong across the layers: raised by the adapters and settings, caught by the use
cases and handlers. Kept apart from both, so neither side has to import the other to name one."""

from __future__ import annotations

# 429 is retried unless it means the account is out of money (retrying cannot fix that).
RETRYABLE_HTTP_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class ConfigurationError(RuntimeError):
    """The deployment is missing or mangling a setting; raised at cold start, not mid-request."""


class StaleRecordError(Exception):
    """A conditional write lost: another invocation changed the record first."""


class AlreadyWrittenError(Exception):
    """A create-only write found its object there already: an earlier writer made it whole."""


class NoticeRefused(Exception):
    """SNS refused the notice as invalid: the same publish will be refused every time."""


class OpenAIError(Exception):
    """OpenAI refused a request; the message is OpenAI's own, with the API key redacted."""

    def __init__(self, status: int | None, code: str | None, message: str) -> None:
        super().__init__(f"OpenAI API error {status} ({code}): {message}")
        self.status = status
        self.code = code
        self.message = message
        # Set when a call that must not be repeated blindly may have taken effect anyway.
        self.ambiguous = False

    @property
    def retryable(self) -> bool:
        return self.status is None or (
            self.status in RETRYABLE_HTTP_STATUS and self.code != "insufficient_quota"
        )
