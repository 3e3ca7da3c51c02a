"""The tuned moto DynamoDB answers exactly as moto's own serializer does, for every kind of
attribute, keys, pages and the records of an update."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core.serialize import BaseJSONSerializer

from local import moto_dynamodb

ITEM: dict[str, Any] = {
    "pk": {"S": "job#1"},
    "sk": {"S": "BATCH#0"},
    "text": {"S": "Nightly eval ☕"},
    "count": {"N": "-12.50"},
    "flag": {"BOOL": False},
    "nothing": {"NULL": True},
    "raw": {"B": b"\x00\xffbytes"},
    "names": {"SS": ["a", "b"]},
    "numbers": {"NS": ["1", "2.5"]},
    "blobs": {"BS": [b"\x01", b"\x02"]},
    "nested": {
        "M": {
            "list": {"L": [{"S": "x"}, {"N": "3"}, {"B": b"\x03"}, {"M": {}}, {"L": []}]},
            "deep": {"M": {"raw": {"B": b"\x04"}, "usage": {"N": "1000"}}},
        }
    },
}


def _answers() -> list[Any]:
    """GetItem, a paged Query, a Scan and UpdateItem's ALL_NEW, as the client parses them."""
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="t",
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        for index in range(3):
            client.put_item(TableName="t", Item={**ITEM, "sk": {"S": f"BATCH#{index}"}})
        key = {"pk": ITEM["pk"], "sk": ITEM["sk"]}
        query = {"TableName": "t", "KeyConditionExpression": "pk = :p", "Limit": 2,
                 "ExpressionAttributeValues": {":p": ITEM["pk"]}}  # fmt: skip
        first = client.query(**query)
        got = client.get_item(TableName="t", Key=key)["Item"]
        updated = client.update_item(
            TableName="t", Key=key, UpdateExpression="SET #c = :c",
            ExpressionAttributeNames={"#c": "count"}, ExpressionAttributeValues={":c": {"N": "7"}},
            ReturnValues="ALL_NEW",
        )  # fmt: skip
        return [
            got,
            first["Items"],
            first["LastEvaluatedKey"],
            client.query(**query, ExclusiveStartKey=first["LastEvaluatedKey"])["Items"],
            client.scan(TableName="t")["Items"],
            updated["Attributes"],
        ]


def test_the_tuned_serializer_answers_as_motos_own(
    aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    current = BaseJSONSerializer._serialize_type_structure
    # An earlier test may have tuned it already: moto's own is back for this test's first half.
    motos_own = getattr(current, "__wrapped__", current)
    monkeypatch.setattr(BaseJSONSerializer, "_serialize_type_structure", motos_own)
    motos = _answers()

    moto_dynamodb.tune_moto_dynamodb()
    assert getattr(BaseJSONSerializer._serialize_type_structure, "_batchdrop_tuned", False)
    tuned = _answers()

    assert tuned == motos
    assert tuned[0] == ITEM
