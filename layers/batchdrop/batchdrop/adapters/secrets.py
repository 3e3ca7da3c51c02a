"""Where the OpenAI API key comes from: the environment locally, Secrets Manager when deployed."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.parameters import SecretsProvider

from batchdrop.errors import ConfigurationError

_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")
PLACEHOLDER = "REPLACE_WITH_OPENAI_API_KEY"  # the value template.yaml creates the secret with
CACHE_SECONDS = 300  # a rotated key is picked up within five minutes


def api_key_provider(secret_id: str, secrets_client: Any) -> Callable[[], str]:
    """A callable returning the key; OPENAI_API_KEY wins so local runs need no secret."""
    local_key = os.environ.get("OPENAI_API_KEY", "").strip()
    if local_key:
        return lambda: local_key
    provider = SecretsProvider(boto3_client=secrets_client)
    # The poll threads all want the key at once on a cold start; one of them fetches it.
    fetching = threading.Lock()

    def from_secrets_manager() -> str:
        with fetching:
            value = str(provider.get(secret_id, max_age=CACHE_SECONDS)).strip()
        if value and not _HEADER_SAFE.fullmatch(value):
            # A key with a line break or space cannot go in a header; requests would quote the
            # whole header, key included, in its error.
            raise ConfigurationError(
                f"the OpenAI API key in {secret_id} has spaces or line breaks; store the key alone"
            )
        if not value or value == PLACEHOLDER:
            raise ConfigurationError(
                "the OpenAI API key is not set: store it with `aws secretsmanager "
                f"put-secret-value --secret-id {secret_id} --secret-string sk-…`"
            )
        return value

    return from_secrets_manager
