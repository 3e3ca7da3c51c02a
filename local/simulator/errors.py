"""OpenAI's error envelope, `{"error": {"message", "type", "param", "code"}}`, with a status."""

from __future__ import annotations

from typing import Any

API_KEYS_PAGE = "https://platform.openai.com/account/api-keys"


class ApiError(Exception):
    """Raised by handlers; the server turns it into the JSON envelope and status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def invalid_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def not_found(message: str, param: str | None = None) -> ApiError:
    return ApiError(404, message, param=param)


def mask_key(key: str) -> str:
    """OpenAI shows only the tail of a rejected key; never echo the whole secret."""
    if len(key) < 12:
        return "*" * len(key)
    return f"{key[:3]}...{key[-4:]}"


def missing_api_key() -> ApiError:
    return ApiError(
        401,
        "You didn't provide an API key. You need to provide your API key in an Authorization "
        "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password "
        "field (with blank username) if you're accessing the API from your browser and are "
        f"prompted for a username and password. You can obtain an API key from {API_KEYS_PAGE}.",
        code="invalid_api_key",
    )


def incorrect_api_key(given: str) -> ApiError:
    return ApiError(
        401,
        f"Incorrect API key provided: {mask_key(given)}. You can find your API key at "
        f"{API_KEYS_PAGE}.",
        code="invalid_api_key",
    )


def rate_limited(retry_after: float) -> ApiError:
    return ApiError(
        429,
        "Rate limit reached for requests in organization org-simulator on requests per min "
        f"(RPM): Limit 500, Used 500, Requested 1. Please try again in {retry_after:g}s.",
        type="requests",
        code="rate_limit_exceeded",
        headers={"Retry-After": f"{retry_after:g}"},
    )


def server_error(status: int) -> ApiError:
    messages = {
        500: "The server had an error while processing your request. Sorry about that!",
        502: "Bad gateway.",
        503: "The engine is currently overloaded, please try again later.",
    }
    return ApiError(status, messages.get(status, "The server had an error."), type="server_error")


def invalid_url(method: str, path: str) -> ApiError:
    return not_found(f"Invalid URL ({method} {path})")
