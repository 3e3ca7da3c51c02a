"""What the email subscribers of the notification topic receive, read back through SQS."""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3


class Inbox:
    """An SQS queue subscribed to the topic: each message is one email, as SNS delivers it."""

    def __init__(self, topic_arn: str) -> None:
        self._sqs = boto3.client("sqs")
        name = f"inbox-{uuid.uuid4().hex[:8]}"
        self._url = self._sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = self._sqs.get_queue_attributes(QueueUrl=self._url, AttributeNames=["QueueArn"])
        boto3.client("sns").subscribe(
            TopicArn=topic_arn, Protocol="sqs", Endpoint=arn["Attributes"]["QueueArn"]
        )

    def messages(self) -> list[dict[str, Any]]:
        """Every email delivered since the last call: subject, body and message attributes."""
        received: list[dict[str, Any]] = []
        while batch := self._sqs.receive_message(QueueUrl=self._url, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            for message in batch:
                envelope = json.loads(message["Body"])
                received.append(
                    {
                        "subject": envelope.get("Subject"),
                        "body": envelope["Message"],
                        "attributes": {
                            name: value["Value"]
                            for name, value in envelope.get("MessageAttributes", {}).items()
                        },
                    }
                )
                self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=message["ReceiptHandle"])
        return received


def as_email(message: dict[str, Any], sender: str = "batchdrop") -> str:
    """The message the way an email client shows what SNS sent."""
    return f"From: {sender}\nSubject: {message['subject']}\n\n{message['body']}"
