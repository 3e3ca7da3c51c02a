"""Publishing a person-readable notice to the SNS topic that emails the job's owner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SUBJECT_LIMIT = 100  # SNS rejects longer email subjects


@dataclass(frozen=True)
class Notice:
    subject: str
    body: str
    # Message attributes let a subscription filter, e.g. only {"status": ["failed"]}.
    attributes: dict[str, str] = field(default_factory=dict)


class SnsNotifier:
    def __init__(self, client: Any, topic_arn: str) -> None:
        self._sns = client
        self._topic_arn = topic_arn

    def publish(self, notice: Notice) -> str:
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
        message_id: str = response["MessageId"]
        return message_id


def fit_subject(subject: str) -> str:
    """SNS subjects: at most 100 printable characters, no line breaks."""
    flat = " ".join(subject.split())
    return flat if len(flat) <= SUBJECT_LIMIT else flat[: SUBJECT_LIMIT - 1] + "…"
