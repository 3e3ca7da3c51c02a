"""SNS's documented rules for a Publish `Subject`, held by the tests because moto does not.

The Publish API reference: subjects must be ASCII text that begins with a letter, number or
punctuation mark, with no line breaks or control characters, and less than 100 characters long
(newer revisions say "UTF-8 text", but SNS still rewrites or refuses non-ASCII subjects for
email; the stricter reading is the one every notice must pass). A subject that breaks one is
refused with `InvalidParameter`, so its email never goes out.
"""

from __future__ import annotations

import string
from typing import Any

from botocore.exceptions import ClientError

SUBJECT_MAX_CHARS = 99  # "less than 100 characters"
FIRST_CHARACTERS = set(string.ascii_letters + string.digits + string.punctuation)


def subject_problems(subject: str) -> list[str]:
    """Every documented rule `subject` breaks; empty when SNS accepts it."""
    problems = []
    if not subject:
        problems.append("empty")
    elif subject[0] not in FIRST_CHARACTERS:
        problems.append(f"begins with {subject[0]!r}, not a letter, number or punctuation mark")
    if len(subject) > SUBJECT_MAX_CHARS:
        problems.append(f"{len(subject)} characters, not less than 100")
    if any(not (" " <= char <= "~") for char in subject):
        problems.append("holds a character that is not printable ASCII")
    return problems


class StrictSns:
    """An SNS client that refuses what real SNS refuses, then publishes through the real one."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.refused: list[str] = []

    def publish(self, **kwargs: Any) -> Any:
        problems = subject_problems(kwargs.get("Subject", "x"))
        if problems:
            self.refused.append(kwargs["Subject"])
            raise ClientError(
                {
                    "Error": {
                        "Code": "InvalidParameter",
                        "Message": f"Invalid parameter: Subject ({'; '.join(problems)})",
                    }
                },
                "Publish",
            )
        return self._client.publish(**kwargs)
