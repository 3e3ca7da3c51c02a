"""Publishing a person-readable notice to the SNS topic that emails the job's owner."""

from __future__ import annotations

import unicodedata
from typing import Any

from botocore.exceptions import ClientError

from batchdrop.errors import NoticeRefused
from batchdrop.ports import Notice

# SNS refuses a subject that is not printable ASCII, holds a line break or a control character,
# or is not "less than 100 characters" long; such an email would never go out.
SUBJECT_LIMIT = 99
SUBJECT_ELLIPSIS = "..."
EMPTY_SUBJECT = "batchdrop notice"
UNREPRESENTABLE = "?"
# The error codes with which SNS refuses a request as malformed: retrying it cannot succeed.
REFUSED_AS_INVALID = frozenset({"InvalidParameter", "InvalidParameterValue"})


class SnsNotifier:
    def __init__(self, client: Any, topic_arn: str) -> None:
        self._sns = client
        self._topic_arn = topic_arn

    def publish(self, notice: Notice) -> str:
        try:
            response = self._sns.publish(
                TopicArn=self._topic_arn,
                Subject=fit_subject(notice.subject),
                Message=notice.body,
                MessageAttributes={
                    name: {"DataType": "String", "StringValue": value}
                    for name, value in notice.attributes.items()
                    if value
                },
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") in REFUSED_AS_INVALID:
                raise NoticeRefused(f"{error.get('Code')}: {error.get('Message', '')}") from exc
            raise
        message_id: str = response["MessageId"]
        return message_id


def fit_subject(subject: str) -> str:
    """A subject SNS accepts, whatever file name S3 allowed into it: printable ASCII only
    (letters transliterated where Unicode knows how, anything else one "?" per run), control
    characters and line breaks turned to spaces, whitespace collapsed, and under 100 characters.
    The body keeps the real name; the subject only has to be recognisable."""
    chars: list[str] = []
    for char in unicodedata.normalize("NFKD", subject):
        if " " <= char <= "~":
            chars.append(char)
        elif char.isspace() or unicodedata.category(char).startswith("C"):
            chars.append(" ")  # controls, format and unassigned characters, lone surrogates
        elif unicodedata.combining(char):
            continue  # the accent of a letter already kept: é became e + U+0301
        elif not chars or chars[-1] != UNREPRESENTABLE:
            chars.append(UNREPRESENTABLE)
    flat = " ".join("".join(chars).split()) or EMPTY_SUBJECT
    if len(flat) <= SUBJECT_LIMIT:
        return flat
    return flat[: SUBJECT_LIMIT - len(SUBJECT_ELLIPSIS)].rstrip() + SUBJECT_ELLIPSIS
