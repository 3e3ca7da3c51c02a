"""Count the requests a process makes to AWS (every boto3 client) and to OpenAI (requests).

Installed in a measured child, it wraps the one method each library sends through, so clients
made anywhere (by the handlers, by Powertools) are counted without touching product code.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import requests
from botocore.client import BaseClient

# OpenAI ids in paths become placeholders: GET /v1/batches/{id}.
_ID_SEGMENT = re.compile(r"/(batch_|file-|upload_|part_)[A-Za-z0-9]+")


def openai_route(method: str, url: str) -> str:
    path = url.split("://", 1)[-1]
    path = path[path.find("/") :].split("?", 1)[0]
    return f"{method} {_ID_SEGMENT.sub('/{id}', path)}"


class CallCounter:
    """AWS calls as "service:Operation", OpenAI calls as "METHOD /v1/route"."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.aws: Counter[str] = Counter()
        self.openai: Counter[str] = Counter()

    def install(self) -> CallCounter:
        original_call: Callable[..., Any] = BaseClient._make_api_call
        original_send: Callable[..., Any] = requests.Session.send
        counter = self

        def counted_call(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
            service = client.meta.service_model.service_name
            with counter._lock:
                counter.aws[f"{service}:{operation}"] += 1
            return original_call(client, operation, params)

        def counted_send(session: requests.Session, request: Any, **kwargs: Any) -> Any:
            with counter._lock:
                counter.openai[openai_route(str(request.method), str(request.url))] += 1
            return original_send(session, request, **kwargs)

        BaseClient._make_api_call = counted_call
        requests.Session.send = counted_send  # type: ignore[method-assign,assignment]
        return self

    def snapshot(self) -> tuple[Counter[str], Counter[str]]:
        with self._lock:
            return Counter(self.aws), Counter(self.openai)

    def since(self, snapshot: tuple[Counter[str], Counter[str]]) -> dict[str, dict[str, int]]:
        aws, openai = self.snapshot()
        return {
            "aws": dict(sorted((aws - snapshot[0]).items())),
            "openai": dict(sorted((openai - snapshot[1]).items())),
        }


def by_service(aws_calls: dict[str, int]) -> dict[str, int]:
    totals: Counter[str] = Counter()
    for name, count in aws_calls.items():
        totals[name.split(":", 1)[0]] += count
    return dict(sorted(totals.items()))
