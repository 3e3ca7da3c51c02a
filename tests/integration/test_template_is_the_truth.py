"""The moto resources come from template.yaml, so the template and the code cannot drift apart."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from batchdrop.adapters.job_store import JobStore
from batchdrop.settings import ConfigurationError, Settings
from local.template_stack import DeployedStack, deploy, load_template


def exercise_store(stack: DeployedStack) -> None:
    """Write a job and a batch the way the functions do, then find it the way the poller does."""
    table = boto3.resource("dynamodb").Table(stack.resource("JobsTable"))
    store = JobStore(table, retention_days=1)
    assert store.create_job("job1", {"status": "submitting"})
    store.record_file("job1", 0, {"file_id": "file-1", "submission_token": "t"})
    store.record_batch("job1", 0, {"id": "batch_1", "status": "validating", "created_at": 1})
    active = list(store.active_batches())
    assert [item["batch_id"] for item in active] == ["batch_1"]


def test_the_store_works_on_the_table_the_template_defines(stack: DeployedStack) -> None:
    exercise_store(stack)


def _jobs_table(template: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = template["Resources"]["JobsTable"]["Properties"]
    return props


def rename_partition_key(template: dict[str, Any]) -> None:
    props = _jobs_table(template)
    props["KeySchema"][0]["AttributeName"] = "id"
    props["AttributeDefinitions"][0]["AttributeName"] = "id"


def rename_active_index_key(template: dict[str, Any]) -> None:
    props = _jobs_table(template)
    props["GlobalSecondaryIndexes"][0]["KeySchema"][0]["AttributeName"] = "is_active"
    for definition in props["AttributeDefinitions"]:
        if definition["AttributeName"] == "active_pk":
            definition["AttributeName"] = "is_active"


def rename_active_index(template: dict[str, Any]) -> None:
    _jobs_table(template)["GlobalSecondaryIndexes"][0]["IndexName"] = "Active"


def drop_the_sort_key(template: dict[str, Any]) -> None:
    props = _jobs_table(template)
    props["KeySchema"] = props["KeySchema"][:1]
    props["AttributeDefinitions"] = [
        d for d in props["AttributeDefinitions"] if d["AttributeName"] != "sk"
    ]


@pytest.mark.parametrize(
    "drift",
    [rename_partition_key, rename_active_index_key, rename_active_index, drop_the_sort_key],
)
def test_a_table_that_drifts_from_the_code_fails(
    drift: Callable[[dict[str, Any]], None], aws_env: None
) -> None:
    template = load_template()
    drift(template)
    with mock_aws():
        drifted = deploy(template=template)
        with pytest.raises((ClientError, AssertionError)):
            exercise_store(drifted)


@pytest.mark.parametrize("function", ["SubmitFunction", "PollFunction"])
def test_each_function_gets_every_setting_it_needs_from_the_template(
    function: str, stack: DeployedStack
) -> None:
    settings = Settings.from_env(stack.env(function))
    assert settings.table_name == stack.resource("JobsTable")
    assert settings.bucket == stack.resource("BatchBucket")
    assert settings.topic_arn == stack.resource("NotificationTopic")
    assert settings.api_key_secret == stack.resource("OpenAIApiKeySecret")


def test_submit_gets_the_idempotency_table(stack: DeployedStack) -> None:
    settings = Settings.from_env(stack.env("SubmitFunction"))
    assert settings.idempotency_table_name == stack.resource("IdempotencyTable")


def test_a_setting_missing_from_the_template_fails_at_cold_start(aws_env: None) -> None:
    template = load_template()
    del template["Globals"]["Function"]["Environment"]["Variables"]["TABLE_NAME"]
    with mock_aws():
        drifted = deploy(template=template)
        with pytest.raises(ConfigurationError, match="TABLE_NAME"):
            Settings.from_env(drifted.env("PollFunction"))


def test_the_s3_trigger_is_wired_as_the_template_says(stack: DeployedStack) -> None:
    (trigger,) = stack.s3_triggers
    assert trigger.function == "SubmitFunction"
    assert trigger.matches("ObjectCreated:Put", "requests/a.jsonl")
    assert not trigger.matches("ObjectCreated:Put", "results/a.jsonl")
    assert not trigger.matches("ObjectCreated:Put", "requests/a.csv")
    (schedule,) = stack.schedules
    assert (schedule.function, schedule.expression) == ("PollFunction", "rate(5 minutes)")
