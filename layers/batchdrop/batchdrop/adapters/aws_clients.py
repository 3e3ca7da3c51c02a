"""boto3 clients built the standard way, so AWS_ENDPOINT_URL points the same code at moto."""

from __future__ import annotations

import functools
from typing import Any

import boto3
from botocore.config import Config

# Adaptive retries absorb throttling; the pool covers the poll function's thread pool.
_CONFIG = Config(retries={"mode": "adaptive", "max_attempts": 5}, max_pool_connections=64)
# SigV4 pre-signed links last up to 7 days (and are the only kind newer regions accept).
_SERVICE_CONFIG = {"s3": _CONFIG.merge(Config(signature_version="s3v4"))}


@functools.cache
def _shared_session() -> boto3.session.Session:
    """One session per process: its clients share loaded service models, a cold start's
    biggest cost after imports. Endpoint, region and credentials still come from the
    environment when each client is made."""
    return boto3.session.Session()


def resource(service: str, session: boto3.session.Session | None = None) -> Any:
    """A boto3 resource on the same configuration (pool size, retries) as the clients."""
    return (session or _shared_session()).resource(service, config=_CONFIG)


def client(service: str, session: boto3.session.Session | None = None) -> Any:
    """A client with no hard-coded endpoint, region or credentials: the environment decides."""
    config = _SERVICE_CONFIG.get(service, _CONFIG)
    return (session or _shared_session()).client(service, config=config)
