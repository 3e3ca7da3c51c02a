"""Which IAM permissions one AWS API call needs: the actions (named as IAM names them, which is
not always the operation's name) and the ARNs of what it touches.

A call this module does not know is an error (`UnmodelledCall`), so a new kind of call cannot slip
past the audit: teach it here, from the service's "Actions, resources and condition keys" page.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from tests.iam_audit.policy import Need


class UnmodelledCallError(ValueError):
    """The audit cannot tell which permissions this call needs."""


@dataclass(frozen=True)
class Account:
    """Where calls land: enough to spell ARNs the way IAM sees them."""

    region: str
    account_id: str
    secrets: Mapping[str, str] = field(default_factory=dict)  # secret name -> ARN

    def arn(self, service: str, resource: str, *, regional: bool = True) -> str:
        region, account = (self.region, self.account_id) if regional else ("", "")
        return f"arn:aws:{service}:{region}:{account}:{resource}"


def needs(service: str, operation: str, params: Mapping[str, Any], account: Account) -> list[Need]:
    """The permissions `service`.`operation` with `params` needs (botocore's names for both)."""
    for_service = _BY_SERVICE.get(service)
    if for_service is None:
        raise UnmodelledCallError(f"no IAM model of {service} calls ({service}.{operation})")
    return for_service(operation, params, account)


def missing_object_needs(bucket: str) -> Need:
    """S3 answers a read of a missing object with 404 only to a caller who may list the bucket;
    to anyone else it is 403 AccessDenied, which code that expects "not found" would not catch."""
    return Need("s3:ListBucket", _bucket_arn(bucket), why="to read a missing object as 404")


# --- S3 ----------------------------------------------------------------------------------------

# Operations on one object, and the action each needs (a versioned one when a version is named).
_S3_OBJECT_ACTIONS = {
    "GetObject": ("s3:GetObject", "s3:GetObjectVersion"),
    "HeadObject": ("s3:GetObject", "s3:GetObjectVersion"),
    "GetObjectAttributes": ("s3:GetObjectAttributes", "s3:GetObjectVersionAttributes"),
    "GetObjectTagging": ("s3:GetObjectTagging", "s3:GetObjectVersionTagging"),
    "DeleteObject": ("s3:DeleteObject", "s3:DeleteObjectVersion"),
    # A multipart upload is authorised as the PutObject it becomes.
    "PutObject": ("s3:PutObject", "s3:PutObject"),
    "CreateMultipartUpload": ("s3:PutObject", "s3:PutObject"),
    "UploadPart": ("s3:PutObject", "s3:PutObject"),
    "CompleteMultipartUpload": ("s3:PutObject", "s3:PutObject"),
    "AbortMultipartUpload": ("s3:AbortMultipartUpload", "s3:AbortMultipartUpload"),
    "ListParts": ("s3:ListMultipartUploadParts", "s3:ListMultipartUploadParts"),
}
_S3_BUCKET_ACTIONS = {
    "ListObjects": "s3:ListBucket",
    "ListObjectsV2": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket",
    "ListObjectVersions": "s3:ListBucketVersions",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "GetBucketLocation": "s3:GetBucketLocation",
}


def _s3(operation: str, params: Mapping[str, Any], account: Account) -> list[Need]:
    if "Bucket" not in params:
        raise UnmodelledCallError(f"no IAM model of s3.{operation}, which names no bucket")
    bucket = str(params["Bucket"])
    if operation in _S3_BUCKET_ACTIONS:
        return [Need(_S3_BUCKET_ACTIONS[operation], _bucket_arn(bucket))]
    if operation in ("CopyObject", "UploadPartCopy"):
        target = Need("s3:PutObject", _object_arn(bucket, str(params["Key"])))
        return [target, _copy_source_need(params["CopySource"])]
    if operation not in _S3_OBJECT_ACTIONS:
        raise UnmodelledCallError(f"no IAM model of s3.{operation}")
    plain, versioned = _S3_OBJECT_ACTIONS[operation]
    arn = _object_arn(bucket, str(params["Key"]))
    found = [Need(versioned if params.get("VersionId") else plain, arn)]
    if operation in ("PutObject", "CreateMultipartUpload") and params.get("Tagging"):
        found.append(Need("s3:PutObjectTagging", arn))
    if operation in ("PutObject", "CreateMultipartUpload") and params.get("ACL"):
        found.append(Need("s3:PutObjectAcl", arn))
    return found


def _copy_source_need(source: Any) -> Need:
    if isinstance(source, Mapping):
        bucket, key, version = source["Bucket"], source["Key"], source.get("VersionId")
    else:
        path, _, query = str(source).lstrip("/").partition("?")
        bucket, _, key = path.partition("/")
        key = unquote(key)
        version = parse_qs(query).get("versionId", [None])[0]
    action = "s3:GetObjectVersion" if version else "s3:GetObject"
    return Need(action, _object_arn(str(bucket), str(key)))


def _bucket_arn(bucket: str) -> str:
    return f"arn:aws:s3:::{bucket}"


def _object_arn(bucket: str, key: str) -> str:
    return f"arn:aws:s3:::{bucket}/{key}"


# --- DynamoDB ----------------------------------------------------------------------------------

_DYNAMODB_ONE_TABLE = {
    "GetItem",
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "Query",
    "Scan",
    "DescribeTable",
    "DescribeTimeToLive",
}
_DYNAMODB_TRANSACT_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Get": "dynamodb:GetItem",
}


def _dynamodb(operation: str, params: Mapping[str, Any], account: Account) -> list[Need]:
    if operation in _DYNAMODB_ONE_TABLE:
        arn = _table_arn(str(params["TableName"]), account)
        if params.get("IndexName"):  # Query and Scan of an index are authorised on the index
            arn = f"{arn}/index/{params['IndexName']}"
        return [Need(f"dynamodb:{operation}", arn)]
    if operation in ("BatchGetItem", "BatchWriteItem"):
        return [
            Need(f"dynamodb:{operation}", _table_arn(str(table), account))
            for table in params["RequestItems"]
        ]
    if operation in ("TransactWriteItems", "TransactGetItems"):
        found = []
        for item in params["TransactItems"]:
            ((kind, request),) = item.items()
            found.append(
                Need(_DYNAMODB_TRANSACT_ACTIONS[kind], _table_arn(request["TableName"], account))
            )
        return found
    raise UnmodelledCallError(f"no IAM model of dynamodb.{operation}")


def _table_arn(table: str, account: Account) -> str:
    return table if table.startswith("arn:") else account.arn("dynamodb", f"table/{table}")


# --- SNS, SQS, Secrets Manager, KMS, STS -------------------------------------------------------


def _sns(operation: str, params: Mapping[str, Any], account: Account) -> list[Need]:
    if operation in ("Publish", "PublishBatch"):
        target = params.get("TopicArn") or params.get("TargetArn")
        if not target:
            raise UnmodelledCallError("no IAM model of an SNS publish to a phone number")
        return [Need("sns:Publish", str(target))]
    if "TopicArn" in params:
        return [Need(f"sns:{operation}", str(params["TopicArn"]))]
    raise UnmodelledCallError(f"no IAM model of sns.{operation}")


def _sqs(operation: str, params: Mapping[str, Any], account: Account) -> list[Need]:
    if "QueueUrl" in params:
        name = urlparse(str(params["QueueUrl"])).path.rstrip("/").rsplit("/", 1)[-1]
    elif "QueueName" in params:
        name = str(params["QueueName"])
    else:
        raise UnmodelledCallError(f"no IAM model of sqs.{operation}")
    # A batch is authorised as the single action it repeats.
    action = operation.removesuffix("Batch")
    return [Need(f"sqs:{action}", account.arn("sqs", name))]


def _secretsmanager(operation: str, params: Mapping[str, Any], account: Account) -> list[Need]:
    if "SecretId" not in params:
        raise UnmodelledCallError(f"no IAM model of secretsmanager.{operation}")
    secret = str(params["SecretId"])
    if not secret.startswith("arn:"):
        # IAM sees the full ARN, random suffix and all, even when the call names the secret.
        secret = account.secrets.get(secret) or account.arn("secretsmanager", f"secret:{secret}")
    return [Need(f"secretsmanager:{operation}", secret)]


def _kms(operation: str, params: Mapping[str, Any], account: Account) -> list[Need]:
    if "KeyId" not in params:
        raise UnmodelledCallError(f"no IAM model of kms.{operation}")
    key = str(params["KeyId"])
    return [Need(f"kms:{operation}", key if key.startswith("arn:") else account.arn("kms", key))]


def _sts(operation: str, params: Mapping[str, Any], account: Account) -> list[Need]:
    if operation == "GetCallerIdentity":
        return []  # allowed to every principal; no policy can deny it
    raise UnmodelledCallError(f"no IAM model of sts.{operation}")


_BY_SERVICE: dict[str, Callable[[str, Mapping[str, Any], Account], list[Need]]] = {
    "s3": _s3,
    "dynamodb": _dynamodb,
    "sns": _sns,
    "sqs": _sqs,
    "secretsmanager": _secretsmanager,
    "kms": _kms,
    "sts": _sts,
}
