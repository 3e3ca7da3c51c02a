"""The security and operations promises of template.yaml, checked on the CloudFormation that SAM
turns it into (offline, with samtranslator), so what is checked is what would be deployed.

Each check is a function that lists what is wrong with a transformed template. The tests assert
the deployed template has no problems, and that each check does find the problem it exists for
when the template is broken on purpose: every check can fail.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from local.inbox import Inbox
from local.lambda_runtime import Function
from local.simulator import BatchSimulator
from local.template_stack import DEFAULT_PARAMETERS, DeployedStack, load_template, render
from tests.pipeline import Pipeline
from tests.support import jsonl, request_lines

Template = dict[str, Any]
Check = Callable[[Template], list[str]]

FUNCTIONS = ("SubmitFunction", "PollFunction")
BUCKET_PREFIX = "arn:${AWS::Partition}:s3:::"

# The only actions a role may grant on Resource "*", and why nothing narrower exists.
WILDCARD_ALLOWED = {
    "xray:PutTraceSegments": "X-Ray has no resource-level permissions; Tracing needs it.",
    "xray:PutTelemetryRecords": "X-Ray has no resource-level permissions; Tracing needs it.",
}
# Not on the list, on purpose:
# - logs:CreateLogStream / logs:PutLogEvents: each role names its own log group instead of taking
#   the AWS managed AWSLambdaBasicExecutionRole (Resource "*"); the stack creates the group, so
#   logs:CreateLogGroup is not granted at all.
# - cloudwatch:PutMetricData: metrics are EMF log lines, which need no API permission.

# What each function's code calls, on what. Labels: a logical id, "<id>/index/<name>" for a
# table index, "bucket/<key pattern>" for objects in the bucket. Any change here is deliberate.
EXPECTED_GRANTS: dict[str, dict[str, set[str]]] = {
    "SubmitFunction": {
        "logs:CreateLogStream": {"SubmitLogGroup"},
        "logs:PutLogEvents": {"SubmitLogGroup"},
        "s3:GetObject": {"bucket/${InputPrefix}*", "bucket/reports/*"},
        "s3:GetObjectVersion": {"bucket/${InputPrefix}*"},
        "s3:PutObject": {"bucket/reports/*"},
        "dynamodb:GetItem": {"JobsTable", "IdempotencyTable"},
        "dynamodb:PutItem": {"JobsTable", "IdempotencyTable"},
        "dynamodb:UpdateItem": {"JobsTable", "IdempotencyTable"},
        "dynamodb:Query": {"JobsTable"},
        "dynamodb:DeleteItem": {"IdempotencyTable"},
        "sns:Publish": {"NotificationTopic"},
        "secretsmanager:GetSecretValue": {"OpenAIApiKeySecret"},
        "sqs:SendMessage": {"SubmitDeadLetterQueue"},
        "kms:Decrypt": {"DataKey"},
        "kms:GenerateDataKey": {"DataKey"},
        "xray:PutTraceSegments": {"*"},
        "xray:PutTelemetryRecords": {"*"},
    },
    "PollFunction": {
        "logs:CreateLogStream": {"PollLogGroup"},
        "logs:PutLogEvents": {"PollLogGroup"},
        # reports/: a submission the poller resumes may be refused, like one submit refuses.
        "s3:GetObject": {"bucket/${InputPrefix}*", "bucket/results/*", "bucket/reports/*"},
        "s3:GetObjectVersion": {"bucket/${InputPrefix}*"},
        "s3:PutObject": {"bucket/results/*", "bucket/reports/*"},
        "s3:AbortMultipartUpload": {"bucket/results/*"},
        # Only so that reading results/<name>/latest.json before it exists answers 404, not 403.
        "s3:ListBucket": {"bucket"},
        "dynamodb:GetItem": {"JobsTable"},
        "dynamodb:PutItem": {"JobsTable"},
        "dynamodb:UpdateItem": {"JobsTable"},
        "dynamodb:Query": {"JobsTable", "JobsTable/index/ActiveIndex"},
        "sns:Publish": {"NotificationTopic"},
        "secretsmanager:GetSecretValue": {"OpenAIApiKeySecret"},
        "kms:Decrypt": {"DataKey"},
        "kms:GenerateDataKey": {"DataKey"},
        "xray:PutTraceSegments": {"*"},
        "xray:PutTelemetryRecords": {"*"},
    },
}
# The code publishes these "status" values; the failure subscription takes all but "completed".
FAILURE_STATUSES = {"failed", "expired", "cancelled", "rejected", "stuck", "needs_attention"}


def transform(sam: Template) -> Template:
    parameters = {
        name: str(spec["Default"])
        for name, spec in sam.get("Parameters", {}).items()
        if "Default" in spec
    }
    return render(sam, {**parameters, **DEFAULT_PARAMETERS}, "us-east-1", "batchdrop-test")


@pytest.fixture(scope="module")
def cfn() -> Template:
    return transform(load_template())


# --- helpers -----------------------------------------------------------------------------------


def resources(cfn: Template, kind: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource.get("Properties", {})
        for logical_id, resource in cfn["Resources"].items()
        if resource["Type"] == kind
    }


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def ref_of(value: Any) -> str | None:
    """The logical id a Ref or a GetAtt (of any attribute) names."""
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        return str(target[0] if isinstance(target, list) else target.split(".")[0])
    return None


def role_of(cfn: Template, function: str) -> str | None:
    return ref_of(cfn["Resources"][function]["Properties"].get("Role"))


def bucket_name(cfn: Template) -> Any:
    return cfn["Resources"]["BatchBucket"]["Properties"]["BucketName"]


def label(cfn: Template, resource: Any) -> str:
    """A readable name for a policy resource (see EXPECTED_GRANTS); unknown forms stay JSON."""
    if resource == "*":
        return "*"
    if (logical_id := ref_of(resource)) is not None:
        return logical_id
    sub = resource.get("Fn::Sub") if isinstance(resource, dict) else None
    if isinstance(sub, str):
        return re.sub(r"\$\{(\w+)\.Arn\}", r"\1", sub)
    if isinstance(sub, list):
        text, variables = str(sub[0]), sub[1]
        name = bucket_name(cfn)["Fn::Sub"]
        # Objects of this stack's bucket: the same name formula as the bucket itself.
        if text.startswith(f"{BUCKET_PREFIX}{name[0]}/") and variables == name[1]:
            return "bucket/" + text.removeprefix(f"{BUCKET_PREFIX}{name[0]}/")
        if text == f"{BUCKET_PREFIX}{name[0]}" and variables == name[1]:
            return "bucket"
    return json.dumps(resource, sort_keys=True)


def role_statements(role: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for policy in role.get("Policies", []):
        yield from as_list(policy["PolicyDocument"]["Statement"])


def grants(cfn: Template, role: dict[str, Any]) -> dict[str, set[str]]:
    granted: dict[str, set[str]] = {}
    for statement in role_statements(role):
        if statement.get("Effect") != "Allow":
            continue
        for action in as_list(statement.get("Action", [])):
            for resource in as_list(statement.get("Resource", [])):
                granted.setdefault(action, set()).add(label(cfn, resource))
    return granted


# --- checks: each returns what is wrong --------------------------------------------------------


def public_access_problems(cfn: Template) -> list[str]:
    flags = ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
    return [
        f"{bucket}: {flag} is not on"
        for bucket, props in resources(cfn, "AWS::S3::Bucket").items()
        for flag in flags
        if props.get("PublicAccessBlockConfiguration", {}).get(flag) is not True
    ]


def bucket_storage_problems(cfn: Template) -> list[str]:
    problems = []
    for bucket, props in resources(cfn, "AWS::S3::Bucket").items():
        rules = props.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
        algorithms = {r.get("ServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in rules}
        if not algorithms or not algorithms <= {"AES256", "aws:kms", "aws:kms:dsse"}:
            problems.append(f"{bucket}: no default encryption")
        if props.get("VersioningConfiguration", {}).get("Status") != "Enabled":
            problems.append(f"{bucket}: versioning is off")
    return problems


def tls_only_problems(cfn: Template) -> list[str]:
    policies = resources(cfn, "AWS::S3::BucketPolicy")
    problems = []
    for bucket in resources(cfn, "AWS::S3::Bucket"):
        denies_plain_http = False
        for props in policies.values():
            if ref_of(props["Bucket"]) != bucket:
                continue
            for statement in as_list(props["PolicyDocument"]["Statement"]):
                covered = {json.dumps(r, sort_keys=True) for r in as_list(statement["Resource"])}
                denies_plain_http |= (
                    statement["Effect"] == "Deny"
                    and statement.get("Principal") in ("*", {"AWS": "*"})
                    and "s3:*" in as_list(statement["Action"])
                    and statement.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
                    and json.dumps({"Fn::GetAtt": [bucket, "Arn"]}) in covered
                    and json.dumps({"Fn::Sub": f"${{{bucket}.Arn}}/*"}) in covered
                )
        if not denies_plain_http:
            problems.append(f"{bucket}: the bucket policy does not deny requests without TLS")
    return problems


def lifecycle_problems(cfn: Template) -> list[str]:
    rules = cfn["Resources"]["BatchBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    enabled = [rule for rule in rules if rule["Status"] == "Enabled"]

    def expires(prefix: Any, parameter: str) -> bool:
        return any(
            rule.get("Prefix") == prefix and rule.get("ExpirationInDays") == {"Ref": parameter}
            for rule in enabled
        )

    wanted = {
        "inputs expire": expires({"Ref": "InputPrefix"}, "InputRetentionDays"),
        "results expire": expires("results/", "ResultRetentionDays"),
        "reports expire": expires("reports/", "ResultRetentionDays"),
        "incomplete uploads are aborted": any(
            rule.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation")
            == {"Ref": "IncompleteUploadDays"}
            for rule in enabled
        ),
        "old versions expire": any(
            rule.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays")
            == {"Ref": "NoncurrentVersionDays"}
            for rule in enabled
        ),
    }
    return [f"lifecycle: no rule where {what}" for what, present in wanted.items() if not present]


def table_problems(cfn: Template) -> list[str]:
    problems = []
    for table, props in resources(cfn, "AWS::DynamoDB::Table").items():
        if props.get("BillingMode") != "PAY_PER_REQUEST":
            problems.append(f"{table}: not on-demand")
        if props.get("SSESpecification", {}).get("SSEEnabled") is not True:
            problems.append(f"{table}: not encrypted with KMS")
        pitr = props.get("PointInTimeRecoverySpecification", {})
        if pitr.get("PointInTimeRecoveryEnabled") is not True:
            problems.append(f"{table}: no point-in-time recovery")
        if props.get("TimeToLiveSpecification", {}).get("Enabled") is not True:
            problems.append(f"{table}: no TTL")
    jobs = cfn["Resources"]["JobsTable"]
    if jobs["Properties"].get("TimeToLiveSpecification", {}).get("AttributeName") != "expires_at":
        problems.append("JobsTable: TTL is not on expires_at, which the code sets")
    if jobs["Properties"].get("DeletionProtectionEnabled") != {"Ref": "TableDeletionProtection"}:
        problems.append("JobsTable: deletion protection does not follow its parameter")
    if jobs.get("DeletionPolicy") != "Retain":
        problems.append("JobsTable: not retained when the stack is deleted")
    return problems


def messaging_encryption_problems(cfn: Template) -> list[str]:
    problems = []
    for topic, props in resources(cfn, "AWS::SNS::Topic").items():
        if not props.get("KmsMasterKeyId"):
            problems.append(f"{topic}: not encrypted")
    for queue, props in resources(cfn, "AWS::SQS::Queue").items():
        if not props.get("KmsMasterKeyId") and props.get("SqsManagedSseEnabled") is not True:
            problems.append(f"{queue}: not encrypted")
    for secret, props in resources(cfn, "AWS::SecretsManager::Secret").items():
        if ref_of(props.get("KmsKeyId")) != "DataKey":
            problems.append(f"{secret}: not encrypted with the stack's key")
    for key, props in resources(cfn, "AWS::KMS::Key").items():
        if props.get("EnableKeyRotation") is not True:
            problems.append(f"{key}: rotation is off")
    return problems


def alarm_topic_key_problems(cfn: Template) -> list[str]:
    """CloudWatch can publish alarms to the encrypted topic only if its key lets it."""
    topic_key = ref_of(cfn["Resources"]["NotificationTopic"]["Properties"].get("KmsMasterKeyId"))
    if topic_key is None:
        return ["NotificationTopic: not encrypted with a key of this stack"]
    statements = cfn["Resources"][topic_key]["Properties"]["KeyPolicy"]["Statement"]
    lets_cloudwatch = any(
        statement["Effect"] == "Allow"
        and statement.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
        and {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(as_list(statement["Action"]))
        for statement in statements
    )
    return [] if lets_cloudwatch else [f"{topic_key}: CloudWatch alarms cannot use the key"]


def wildcard_problems(cfn: Template) -> list[str]:
    problems = []
    for role, props in resources(cfn, "AWS::IAM::Role").items():
        for arn in props.get("ManagedPolicyArns", []):
            problems.append(f"{role}: managed policy {arn} (grants beyond this stack)")
        for statement in role_statements(props):
            if "NotResource" in statement or "NotAction" in statement:
                problems.append(f"{role}: {statement.get('Sid')} uses NotResource/NotAction")
            for action in as_list(statement.get("Action", [])):
                if "*" in action:
                    problems.append(f"{role}: wildcard action {action}")
                if "*" in as_list(statement.get("Resource", [])) and (
                    action not in WILDCARD_ALLOWED
                ):
                    problems.append(f"{role}: {action} on Resource '*'")
    for policy in resources(cfn, "AWS::IAM::Policy"):
        problems.append(f"{policy}: a stand-alone policy outside the function roles")
    return problems


def role_problems(cfn: Template) -> list[str]:
    problems = []
    roles = [role_of(cfn, function) for function in FUNCTIONS]
    if len(set(roles)) != len(roles):
        problems.append(f"functions share a role: {roles}")
    for function, role in zip(FUNCTIONS, roles, strict=True):
        if role is None or role not in resources(cfn, "AWS::IAM::Role"):
            problems.append(f"{function}: its role is not one of this stack's")
            continue
        trust = cfn["Resources"][role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        principals = [statement["Principal"] for statement in as_list(trust)]
        if principals != [{"Service": "lambda.amazonaws.com"}]:
            problems.append(f"{role}: assumable by {principals}")
        granted = grants(cfn, cfn["Resources"][role]["Properties"])
        if granted != EXPECTED_GRANTS[function]:
            extra = {a: r - EXPECTED_GRANTS[function].get(a, set()) for a, r in granted.items()}
            missing = {a: r - granted.get(a, set()) for a, r in EXPECTED_GRANTS[function].items()}
            problems.append(
                f"{role}: grants differ; extra { ({a: r for a, r in extra.items() if r}) }, "
                f"missing { ({a: r for a, r in missing.items() if r}) }"
            )
    return problems


def lambda_problems(cfn: Template) -> list[str]:
    problems = []
    for function in FUNCTIONS:
        props = cfn["Resources"][function]["Properties"]
        if props.get("Architectures") != ["arm64"] or props.get("Runtime") != "python3.13":
            problems.append(f"{function}: not python3.13 on arm64")
        if props.get("TracingConfig") != {"Mode": "Active"}:
            problems.append(f"{function}: tracing is not active")
        if not {"Timeout", "MemorySize"} <= props.keys():
            problems.append(f"{function}: timeout or memory left to the defaults")
    submit = cfn["Resources"]["SubmitFunction"]["Properties"]
    if submit.get("ReservedConcurrentExecutions") != {"Ref": "SubmitReservedConcurrency"}:
        problems.append("SubmitFunction: reserved concurrency does not follow its parameter")
    return problems


def log_group_problems(cfn: Template) -> list[str]:
    problems = []
    groups = resources(cfn, "AWS::Logs::LogGroup")
    for function in FUNCTIONS:
        resource = cfn["Resources"][function]
        name = resource["Properties"].get("FunctionName", {}).get("Fn::Sub")
        owned = [
            group
            for group, props in groups.items()
            if name and props.get("LogGroupName") == {"Fn::Sub": f"/aws/lambda/{name}"}
        ]
        if len(owned) != 1:
            problems.append(f"{function}: no log group of its own (Lambda's default name)")
            continue
        (group,) = owned
        if groups[group].get("RetentionInDays") != {"Ref": "LogRetentionDays"}:
            problems.append(f"{group}: retention does not follow LogRetentionDays")
        if group not in as_list(resource.get("DependsOn", [])):
            problems.append(f"{function}: may run (and log) before {group} exists")
        role = role_of(cfn, function)
        logs = grants(cfn, cfn["Resources"][role]["Properties"]) if role else {}
        if logs.get("logs:PutLogEvents") != {group}:
            problems.append(f"{function}: may write logs elsewhere than {group}")
    return problems


def dead_letter_problems(cfn: Template) -> list[str]:
    configs = {
        ref_of(props["FunctionName"]): props
        for props in resources(cfn, "AWS::Lambda::EventInvokeConfig").values()
    }
    submit = configs.get("SubmitFunction")
    if submit is None:
        return ["SubmitFunction: no asynchronous invocation config"]
    problems = []
    destination = submit.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
    queue = ref_of(destination)
    if queue is None or queue not in resources(cfn, "AWS::SQS::Queue"):
        return ["SubmitFunction: failed events go to no queue of this stack"]
    if not {"MaximumRetryAttempts", "MaximumEventAgeInSeconds"} <= submit.keys():
        problems.append("SubmitFunction: retries or event age left to the defaults")
    if cfn["Resources"][queue]["Properties"].get("MessageRetentionPeriod") != 1_209_600:
        problems.append(f"{queue}: does not keep messages for 14 days")
    return problems


def alarm_problems(cfn: Template) -> list[str]:
    alarms = resources(cfn, "AWS::CloudWatch::Alarm").values()
    target = {"Fn::If": ["HasOpsTopic", {"Ref": "OpsTopicArn"}, {"Ref": "NotificationTopic"}]}
    watched = set()
    for alarm in alarms:
        if alarm.get("AlarmActions") != [target]:
            return [f"alarm on {alarm['MetricName']} notifies {alarm.get('AlarmActions')}"]
        dimensions = [ref_of(d["Value"]) for d in alarm.get("Dimensions", [])]
        watched.add((alarm["Namespace"], alarm["MetricName"], *dimensions))
    filters = resources(cfn, "AWS::Logs::MetricFilter").values()
    stuck_metrics = {
        (t["MetricNamespace"], t["MetricName"])
        for f in filters
        if ref_of(f["LogGroupName"]) == "PollLogGroup"
        for t in f["MetricTransformations"]
    }
    wanted = {
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "SubmitDeadLetterQueue"),
        ("AWS/Lambda", "Errors", "SubmitFunction"),
        ("AWS/Lambda", "Errors", "PollFunction"),
        ("AWS/Lambda", "Throttles", "SubmitFunction"),
        ("AWS/Lambda", "Throttles", "PollFunction"),
        # The poll function's own EMF metrics: a failed finish, and a job set aside.
        ("batchdrop", "FinishFailed", None),
        ("batchdrop", "JobsNeedingAttention", None),
        *stuck_metrics,
    }
    problems = [f"no alarm on {item}" for item in sorted(wanted - watched)]
    if not stuck_metrics:
        problems.append("no metric counts stuck batches")
    return problems


def subscription_problems(cfn: Template) -> list[str]:
    subscriptions = resources(cfn, "AWS::SNS::Subscription")
    owner = [s for s in subscriptions.values() if s.get("Endpoint") == {"Ref": "NotificationEmail"}]
    failures = cfn["Resources"].get("FailureSubscription", {})
    props = failures.get("Properties", {})
    problems = [] if owner else ["no email subscription for NotificationEmail"]
    if (
        failures.get("Condition") != "HasFailureEmail"
        or props.get("Endpoint") != {"Ref": "FailureNotificationEmail"}
        or props.get("FilterPolicyScope") != "MessageAttributes"
        or set(props.get("FilterPolicy", {}).get("status", [])) != FAILURE_STATUSES
    ):
        problems.append("the optional failure subscription does not take exactly the failures")
    return problems


CHECKS: dict[str, Check] = {
    "public_access": public_access_problems,
    "bucket_storage": bucket_storage_problems,
    "tls_only": tls_only_problems,
    "lifecycle": lifecycle_problems,
    "tables": table_problems,
    "messaging_encryption": messaging_encryption_problems,
    "alarm_topic_key": alarm_topic_key_problems,
    "wildcards": wildcard_problems,
    "roles": role_problems,
    "lambda": lambda_problems,
    "log_groups": log_group_problems,
    "dead_letter": dead_letter_problems,
    "alarms": alarm_problems,
    "subscriptions": subscription_problems,
}


@pytest.mark.parametrize("check", CHECKS.values(), ids=CHECKS.keys())
def test_the_template_keeps_its_promise(check: Check, cfn: Template) -> None:
    assert check(cfn) == []


# --- every check can fail: break the SAM template on purpose, transform, check ---------------


def props(sam: Template, logical_id: str) -> dict[str, Any]:
    properties: dict[str, Any] = sam["Resources"][logical_id]["Properties"]
    return properties


def statement(sam: Template, role: str, sid: str) -> dict[str, Any]:
    policy = props(sam, role)["Policies"][0]["PolicyDocument"]["Statement"]
    found: dict[str, Any] = next(s for s in policy if s.get("Sid") == sid)
    return found


def share_the_submit_role(sam: Template) -> None:
    props(sam, "PollFunction")["Role"] = {"Fn::GetAtt": ["SubmitFunctionRole", "Arn"]}


def use_sam_generated_roles(sam: Template) -> None:
    for function in FUNCTIONS:
        del props(sam, function)["Role"]
        del sam["Resources"][f"{function}Role"]


BREAKAGES: list[tuple[str, Callable[[Template], None]]] = [
    (
        "public_access",
        lambda t: props(t, "BatchBucket")["PublicAccessBlockConfiguration"].update(
            RestrictPublicBuckets=False
        ),
    ),
    ("bucket_storage", lambda t: props(t, "BatchBucket").pop("BucketEncryption")),
    ("bucket_storage", lambda t: props(t, "BatchBucket").pop("VersioningConfiguration")),
    (
        "tls_only",
        lambda t: props(t, "BatchBucketPolicy")["PolicyDocument"]["Statement"][0].update(
            Effect="Allow"
        ),
    ),
    ("lifecycle", lambda t: props(t, "BatchBucket")["LifecycleConfiguration"]["Rules"].pop(0)),
    (
        "lifecycle",
        lambda t: props(t, "BatchBucket")["LifecycleConfiguration"]["Rules"][3].update(
            Status="Disabled"
        ),
    ),
    ("tables", lambda t: props(t, "JobsTable").pop("PointInTimeRecoverySpecification")),
    (
        "tables",
        lambda t: props(t, "IdempotencyTable").update(SSESpecification={"SSEEnabled": False}),
    ),
    ("tables", lambda t: props(t, "JobsTable").update(BillingMode="PROVISIONED")),
    ("tables", lambda t: props(t, "JobsTable").pop("DeletionProtectionEnabled")),
    ("messaging_encryption", lambda t: props(t, "NotificationTopic").pop("KmsMasterKeyId")),
    ("messaging_encryption", lambda t: props(t, "SubmitDeadLetterQueue").pop("KmsMasterKeyId")),
    ("messaging_encryption", lambda t: props(t, "OpenAIApiKeySecret").pop("KmsKeyId")),
    ("alarm_topic_key", lambda t: props(t, "DataKey")["KeyPolicy"]["Statement"].pop(1)),
    ("wildcards", lambda t: statement(t, "SubmitFunctionRole", "Notify").update(Resource="*")),
    (
        "wildcards",
        lambda t: statement(t, "PollFunctionRole", "TrackJobs").update(Action="dynamodb:*"),
    ),
    ("wildcards", use_sam_generated_roles),
    ("roles", share_the_submit_role),
    (
        "roles",
        lambda t: statement(t, "PollFunctionRole", "WriteResults")["Action"].append(
            "s3:DeleteObject"
        ),
    ),
    (
        "roles",
        lambda t: statement(t, "SubmitFunctionRole", "ReadInputs").update(
            Resource={"Fn::Sub": ["arn:${AWS::Partition}:s3:::other-bucket/*", {}]}
        ),
    ),
    (
        "roles",
        lambda t: statement(t, "SubmitFunctionRole", "WriteReports").update(
            Resource=statement(t, "PollFunctionRole", "WriteResults")["Resource"]
        ),
    ),
    ("lambda", lambda t: t["Globals"]["Function"].update(Architectures=["x86_64"])),
    ("lambda", lambda t: t["Globals"]["Function"].pop("Tracing")),
    ("lambda", lambda t: props(t, "PollFunction").pop("Timeout")),
    ("log_groups", lambda t: props(t, "PollLogGroup").pop("RetentionInDays")),
    ("log_groups", lambda t: t["Resources"]["SubmitFunction"].pop("DependsOn")),
    ("log_groups", lambda t: props(t, "SubmitLogGroup").update(LogGroupName="/batchdrop/other")),
    ("dead_letter", lambda t: props(t, "SubmitFunction").pop("EventInvokeConfig")),
    (
        "dead_letter",
        lambda t: props(t, "SubmitDeadLetterQueue").update(MessageRetentionPeriod=345600),
    ),
    (
        "dead_letter",
        lambda t: props(t, "SubmitFunction")["EventInvokeConfig"].pop("MaximumRetryAttempts"),
    ),
    ("alarms", lambda t: t["Resources"].pop("PollThrottlesAlarm")),
    ("alarms", lambda t: t["Resources"].pop("StuckBatchMetricFilter")),
    ("alarms", lambda t: props(t, "SubmitErrorsAlarm").update(AlarmActions=[])),
    (
        "subscriptions",
        lambda t: props(t, "FailureSubscription")["FilterPolicy"]["status"].append("completed"),
    ),
    ("subscriptions", lambda t: t["Resources"].pop("NotificationSubscription")),
]


@pytest.mark.parametrize(
    ("check", "breakage"), BREAKAGES, ids=[f"{name}-{i}" for i, (name, _) in enumerate(BREAKAGES)]
)
def test_a_broken_template_fails_its_check(
    check: str, breakage: Callable[[Template], None]
) -> None:
    sam = copy.deepcopy(load_template())
    breakage(sam)
    assert CHECKS[check](transform(sam)) != []


# --- the stuck-batch alarm counts what the poll function really logs ---------------------------


def json_filter_matches(pattern: str, event: dict[str, Any]) -> bool:
    """CloudWatch Logs JSON filter patterns of the form { $.a = "x" && $.b = "y*" }."""
    body = pattern.strip().removeprefix("{").removesuffix("}")
    for term in body.split("&&"):
        match = re.fullmatch(r'\s*\$\.(\w+)\s*=\s*"([^"]*)"\s*', term)
        assert match, f"the test reads only simple JSON equality terms, not {term!r}"
        field, wanted = match.groups()
        value = event.get(field)
        if not isinstance(value, str):
            return False
        if wanted.endswith("*") and not value.startswith(wanted[:-1]):
            return False
        if not wanted.endswith("*") and value != wanted:
            return False
    return True


def json_lines(text: str) -> list[dict[str, Any]]:
    events = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def test_the_filter_reader_tells_matching_from_other_lines() -> None:
    pattern = '{ $.message = "notice sent" && $.kind = "stuck_*" }'
    assert json_filter_matches(pattern, {"message": "notice sent", "kind": "stuck_b1_validating"})
    assert not json_filter_matches(pattern, {"message": "notice sent", "kind": "outcome"})
    assert not json_filter_matches(pattern, {"message": "tick done", "kind": "stuck_b1"})


def test_the_stuck_batch_metric_counts_one_per_stuck_batch_and_nothing_else(
    load_function: Callable[..., Function],
    stack: DeployedStack,
    openai_sim: BatchSimulator,
    inbox: Inbox,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (metric_filter,) = resources(stack.template, "AWS::Logs::MetricFilter").values()
    pattern = metric_filter["FilterPattern"]
    pipeline = Pipeline(load_function, stack, openai_sim, inbox)
    openai_sim.outcomes.push("stuck_validating")
    outcome = pipeline.submit("requests/slow.jsonl", jsonl(request_lines(3)))
    for _ in range(75):  # 150 simulated minutes, past the default 120-minute threshold
        pipeline.clock.advance(120)
        pipeline.tick()
    openai_sim.release(outcome["batch_ids"][0])
    assert pipeline.run(outcome["job_id"])["status"] == "completed"

    events = json_lines(capsys.readouterr().out)
    notices = [e for e in events if e.get("message") == "notice sent"]
    counted = [e for e in events if json_filter_matches(pattern, e)]

    assert len(notices) == 2  # the stuck warning, then the outcome
    assert len(counted) == 1
    assert counted[0]["kind"].startswith("stuck_")
