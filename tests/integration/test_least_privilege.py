"""The least-privilege audit (tests/iam_audit) can fail: its IAM checker decides as IAM would, its
recorder tells each call to the function that made it, and a role missing one action the code
uses makes a whole job's test fail, naming the call.

Every other integration test runs under the same audit (tests/integration/conftest.py), so the
real template.yaml is proven sufficient by the whole suite passing.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from contextlib import suppress
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from local.lambda_runtime import Execution, executing
from local.moto_dynamodb import tune_moto_dynamodb
from local.template_stack import DeployedStack, deploy, load_template
from tests.iam_audit.audit import Ledger, TestAudit, report
from tests.iam_audit.permissions import Account, UnmodelledCallError, needs
from tests.iam_audit.policy import Need, Statement, evaluate, wildcard_match
from tests.iam_audit.roles import Grant, template_grants
from tests.pipeline import Pipeline
from tests.support import jsonl, request_lines

BUCKET = "arn:aws:s3:::example-bucket"
ACCOUNT = Account("us-east-1", "123456789012")


def allow(actions: list[str], resources: list[str], **extra: Any) -> Statement:
    return Statement.parse({"Effect": "Allow", "Action": actions, "Resource": resources, **extra})


def allowed(statements: list[Statement], action: str, resource: str, **context: str) -> bool:
    return evaluate(statements, Need(action, resource, tuple(context.items()))).allowed


# --- the checker -------------------------------------------------------------------------------


def test_an_action_granted_on_the_resource_is_allowed() -> None:
    role = [allow(["s3:GetObject"], [f"{BUCKET}/results/*"])]
    assert allowed(role, "s3:GetObject", f"{BUCKET}/results/job/results.jsonl")


def test_an_action_not_granted_is_denied_even_on_a_granted_resource() -> None:
    role = [allow(["s3:GetObject"], [f"{BUCKET}/results/*"])]
    assert not allowed(role, "s3:PutObject", f"{BUCKET}/results/job/results.jsonl")
    assert not allowed(role, "s3:GetObjectVersion", f"{BUCKET}/results/job/results.jsonl")


def test_a_granted_action_is_denied_on_a_resource_not_granted() -> None:
    role = [allow(["s3:GetObject"], [f"{BUCKET}/results/*"])]
    assert not allowed(role, "s3:GetObject", f"{BUCKET}/reports/job.json")
    assert not allowed(role, "s3:GetObject", "arn:aws:s3:::example-bucket-2/results/x")
    assert not allowed(role, "s3:ListBucket", BUCKET)  # the bucket is not its objects


def test_wildcards_match_as_iam_matches_them() -> None:
    role = [allow(["s3:Get*", "sns:Publish"], [f"{BUCKET}/*/summary.json", "arn:aws:sns:*:*:t?"])]
    assert allowed(role, "s3:GetObjectVersion", f"{BUCKET}/results/a/b/summary.json")  # * spans /
    assert allowed(role, "S3:getobject", f"{BUCKET}/x/summary.json")  # actions ignore case
    assert not allowed(role, "s3:GetObject", f"{BUCKET}/X/SUMMARY.JSON")  # resources do not
    assert allowed(role, "sns:Publish", "arn:aws:sns:us-east-1:123456789012:t1")
    assert not allowed(role, "sns:Publish", "arn:aws:sns:us-east-1:123456789012:t12")  # ? is one
    assert not wildcard_match("a.c", "abc")  # regular-expression characters are literal


def test_an_explicit_deny_beats_any_allow() -> None:
    deny = Statement.parse({"Effect": "Deny", "Action": "s3:*", "Resource": f"{BUCKET}/secret/*"})
    role = [allow(["s3:*"], [f"{BUCKET}/*"]), deny]
    assert allowed(role, "s3:GetObject", f"{BUCKET}/results/x")
    decision = evaluate(role, Need("s3:GetObject", f"{BUCKET}/secret/x"))
    assert not decision.allowed
    assert decision.denied_by is deny


def test_a_condition_must_hold_for_its_statement_to_apply() -> None:
    key = "arn:aws:kms:us-east-1:123456789012:key/k"
    via = {"StringEquals": {"kms:ViaService": ["sns.us-east-1.amazonaws.com"]}}
    role = [allow(["kms:Decrypt"], [key], Condition=via)]
    assert allowed(role, "kms:Decrypt", key, **{"kms:ViaService": "sns.us-east-1.amazonaws.com"})
    assert not allowed(role, "kms:Decrypt", key, **{"kms:ViaService": "s3.us-east-1.amazonaws.com"})
    assert not allowed(role, "kms:Decrypt", key)  # called directly, not through a service


def test_a_condition_operator_the_checker_does_not_know_is_an_error_not_an_allow() -> None:
    role = [allow(["s3:GetObject"], ["*"], Condition={"DateGreaterThan": {"aws:CurrentTime": "x"}})]
    with pytest.raises(ValueError, match="DateGreaterThan"):
        allowed(role, "s3:GetObject", f"{BUCKET}/x")


def test_calls_are_named_as_iam_names_them() -> None:
    get = needs("s3", "GetObject", {"Bucket": "b", "Key": "requests/a.jsonl"}, ACCOUNT)
    versioned = needs("s3", "HeadObject", {"Bucket": "b", "Key": "k", "VersionId": "v"}, ACCOUNT)
    part = needs("s3", "UploadPart", {"Bucket": "b", "Key": "results/r.jsonl"}, ACCOUNT)
    query = needs("dynamodb", "Query", {"TableName": "jobs", "IndexName": "ActiveIndex"}, ACCOUNT)
    queue_url = "http://127.0.0.1:5000/123456789012/dead-letters"
    send = needs("sqs", "SendMessage", {"QueueUrl": queue_url, "MessageBody": "{}"}, ACCOUNT)
    assert get == [Need("s3:GetObject", "arn:aws:s3:::b/requests/a.jsonl")]
    assert versioned == [Need("s3:GetObjectVersion", "arn:aws:s3:::b/k")]
    assert part == [Need("s3:PutObject", "arn:aws:s3:::b/results/r.jsonl")]
    table = "arn:aws:dynamodb:us-east-1:123456789012:table/jobs"
    assert query == [Need("dynamodb:Query", f"{table}/index/ActiveIndex")]
    assert send == [Need("sqs:SendMessage", "arn:aws:sqs:us-east-1:123456789012:dead-letters")]


def test_a_call_the_audit_cannot_model_is_an_error() -> None:
    with pytest.raises(UnmodelledCallError, match=r"lambda\.Invoke"):
        needs("lambda", "Invoke", {"FunctionName": "f"}, ACCOUNT)
    with pytest.raises(UnmodelledCallError, match=r"s3\.PutBucketPolicy"):
        needs("s3", "PutBucketPolicy", {"Bucket": "b", "Policy": "{}"}, ACCOUNT)


def test_unused_grants_are_reported_and_the_lambda_services_own_apart() -> None:
    used = Grant("R", "p/Read", "s3:GetObject", "bucket/*")
    idle = Grant("R", "p/Write", "s3:PutObject", "bucket/*")
    logs = Grant("R", "p/Logs", "logs:PutLogEvents", "!GetAtt LogGroup.Arn")
    ledger = Ledger(used={used}, tests=1, calls=1)
    lines = report(ledger, {used, idle, logs}, full_run=True)
    text = "\n".join(lines)
    assert idle.describe() in text
    assert used.describe() not in text
    assert text.index(logs.describe()) > text.index("used by the Lambda service")
    assert "partial" not in text


def test_the_template_declares_the_grants_the_report_starts_from() -> None:
    grants = template_grants()
    assert (
        Grant(
            "PollFunctionRole",
            "poll/FindActiveWork",
            "dynamodb:Query",
            "${JobsTable.Arn}/index/ActiveIndex",
        )
        in grants
    )
    assert {grant.role for grant in grants} == {"SubmitFunctionRole", "PollFunctionRole"}


# --- the recorder ------------------------------------------------------------------------------


def test_calls_belong_to_the_function_whose_client_or_code_made_them(
    stack: DeployedStack, bucket: str, least_privilege: TestAudit
) -> None:
    boto3.client("s3").put_object(Bucket=bucket, Key="results/setup.json", Body=b"{}")
    poll = Execution("PollFunction", stack)
    with executing(poll):  # a client made by a function's code is that function's for good
        poll_s3 = boto3.client("s3")
    setup_s3 = boto3.client("s3")

    def look_for_a_missing_object() -> None:
        with suppress(ClientError):
            poll_s3.head_object(Bucket=bucket, Key="results/x")

    # A worker thread does not inherit the context; the client still says whose it is.
    worker = threading.Thread(target=look_for_a_missing_object)
    worker.start()
    worker.join()
    with executing(poll):  # the test's own client, used while the function's code runs
        setup_s3.get_object(Bucket=bucket, Key="results/setup.json")
    setup_s3.get_object(Bucket=bucket, Key="results/setup.json")  # setup: not recorded

    assert least_privilege.problems() == []
    recorded = [(c.execution.function, c.api, c.needs) for c in least_privilege.calls]
    objects = f"arn:aws:s3:::{bucket}/results"
    assert recorded == [
        ("PollFunction", "s3.HeadObject", (Need("s3:GetObject", f"{objects}/x"),)),
        (
            "PollFunction",
            f"s3.HeadObject of s3://{bucket}/results/x, answered 404,",
            (
                Need(
                    "s3:ListBucket", f"arn:aws:s3:::{bucket}", why="to read a missing object as 404"
                ),
            ),
        ),
        ("PollFunction", "s3.GetObject", (Need("s3:GetObject", f"{objects}/setup.json"),)),
    ]


def test_a_publish_to_the_encrypted_topic_needs_its_key_through_sns(
    stack: DeployedStack, least_privilege: TestAudit
) -> None:
    with executing(Execution("SubmitFunction", stack)):
        boto3.client("sns").publish(TopicArn=stack.resource("NotificationTopic"), Message="hi")

    assert least_privilege.problems() == []
    (call,) = least_privilege.calls
    key = stack.attributes[("DataKey", "Arn")]
    via = (("kms:ViaService", "sns.us-east-1.amazonaws.com"),)
    assert [(n.action, n.resource, n.context) for n in call.needs[1:]] == [
        ("kms:GenerateDataKey", key, via),
        ("kms:Decrypt", key, via),
    ]


# --- the must-show: a role short of one action fails the test, naming the call -----------------


def without(template: dict[str, Any], role: str, sid: str, action: str) -> dict[str, Any]:
    """A copy of the template whose role statement `sid` no longer grants `action`."""
    changed = copy.deepcopy(template)
    (policy,) = changed["Resources"][role]["Properties"]["Policies"]
    (statement,) = (s for s in policy["PolicyDocument"]["Statement"] if s.get("Sid") == sid)
    actions = (
        statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
    )
    assert action in actions, f"{role}/{sid} does not grant {action}: the test is out of date"
    statement["Action"] = [a for a in actions if a != action]
    if not statement["Action"]:
        policy["PolicyDocument"]["Statement"].remove(statement)
    return changed


@pytest.fixture
def stack(aws_env: None, request: pytest.FixtureRequest) -> Iterator[DeployedStack]:
    """template.yaml deployed as it is, or (parametrized) with one action taken from a role."""
    template = load_template()
    if hasattr(request, "param"):
        template = without(template, *request.param)
    tune_moto_dynamodb()
    with mock_aws():
        yield deploy(template=template)


def index_arn(stack: DeployedStack) -> str:
    return f"{stack.attributes[('JobsTable', 'Arn')]}/index/ActiveIndex"


def bucket_arn(stack: DeployedStack) -> str:
    return f"arn:aws:s3:::{stack.resource('BatchBucket')}"


def key_arn(stack: DeployedStack) -> str:
    return stack.attributes[("DataKey", "Arn")]


@pytest.mark.parametrize(
    ("stack", "expected"),
    [
        pytest.param(
            ("PollFunctionRole", "FindActiveWork", "dynamodb:Query"),
            lambda stack: (
                f"PollFunction dynamodb.Query needs dynamodb:Query on {index_arn(stack)}: "
                "not allowed by PollFunctionRole"
            ),
            id="the poll role without dynamodb:Query",
        ),
        pytest.param(
            ("PollFunctionRole", "TellMissingObjectsFromForbidden", "s3:ListBucket"),
            lambda stack: (
                f"PollFunction s3.GetObject of s3://{stack.resource('BatchBucket')}/results/team/"
                f"chat/latest.json, answered 404, needs s3:ListBucket on {bucket_arn(stack)} "
                "(to read a missing object as 404): not allowed by PollFunctionRole"
            ),
            id="the poll role without s3:ListBucket",
        ),
        pytest.param(
            ("SubmitFunctionRole", "UseDataKeyThroughItsServices", "kms:Decrypt"),
            lambda stack: (
                "SubmitFunction secretsmanager.GetSecretValue needs kms:Decrypt on "
                f"{key_arn(stack)} (secretsmanager uses the key of OpenAIApiKeySecret with the "
                "caller's permissions): not allowed by SubmitFunctionRole"
            ),
            id="the submit role without kms:Decrypt",
        ),
    ],
    indirect=["stack"],
)
def test_a_role_missing_one_action_the_code_uses_fails_the_test_naming_the_call(
    pipeline: Pipeline, stack: DeployedStack, least_privilege: TestAudit, expected: Any
) -> None:
    outcome = pipeline.submit("requests/team/chat.jsonl", jsonl(request_lines(3)))
    job = pipeline.run(outcome["job_id"])
    assert job["status"] == "completed"  # moto enforces no IAM: only the audit can tell

    problems = least_privilege.take_problems()  # taken, or they would fail this test

    assert expected(stack) in problems
