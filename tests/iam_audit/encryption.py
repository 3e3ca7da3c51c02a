"""The KMS permissions a call needs when the resource it touches is encrypted with a customer
managed key: the service calls KMS with the caller's own permissions (kms:ViaService says which
service), so a role that may publish to an encrypted topic but not use its key still fails.

moto encrypts nothing, so these calls never reach it; they are derived from the template.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from local.template_stack import ACCOUNT_ID, DeployedStack, resolve
from tests.iam_audit.policy import Need

# (action, service) -> the KMS actions the service performs with the caller's permissions, and
# the property of the resource that names its key.
_KMS_USE = {
    ("sns:Publish", "AWS::SNS::Topic"): (("kms:GenerateDataKey", "kms:Decrypt"), "KmsMasterKeyId"),
    ("sqs:SendMessage", "AWS::SQS::Queue"): (
        ("kms:GenerateDataKey", "kms:Decrypt"),
        "KmsMasterKeyId",
    ),
    ("secretsmanager:GetSecretValue", "AWS::SecretsManager::Secret"): (
        ("kms:Decrypt",),
        "KmsKeyId",
    ),
}


def kms_needs(needs: Iterable[Need], stack: DeployedStack) -> list[Need]:
    """The KMS permissions implied by `needs` on this deployment's encrypted resources."""
    resources = _logical_ids_by_arn(stack)
    implied = []
    for need in needs:
        logical_id = resources.get(need.resource)
        if logical_id is None:
            continue
        resource = stack.template["Resources"][logical_id]
        use = _KMS_USE.get((need.action, resource["Type"]))
        if use is None:
            continue
        actions, key_property = use
        key = _key_arn(stack, resource.get("Properties", {}).get(key_property))
        if key is None:
            continue
        service = need.action.split(":")[0]
        context = (("kms:ViaService", f"{service}.{stack.region}.amazonaws.com"),)
        why = f"{service} uses the key of {logical_id} with the caller's permissions"
        implied += [Need(action, key, context, why) for action in actions]
    return implied


def _logical_ids_by_arn(stack: DeployedStack) -> dict[str, str]:
    found = {physical: logical for logical, physical in stack.physical_ids.items()}
    found |= {
        value: logical
        for (logical, name), value in stack.attributes.items()
        if name.endswith("Arn")
    }
    return found


def _key_arn(stack: DeployedStack, key: Any) -> str | None:
    """The ARN of a customer managed key, or None for no key or an AWS managed one (alias/aws/…),
    whose key policy lets the service use it for anyone in the account."""
    if key is None:
        return None
    if isinstance(key, dict):
        target = key.get("Ref") or (key.get("Fn::GetAtt") or [None])[0]
        if target in stack.template["Resources"]:
            return str(resolve(stack, {"Fn::GetAtt": [target, "Arn"]}))
    resolved = str(resolve(stack, key))
    if resolved.startswith("alias/aws/"):
        return None
    if resolved.startswith("alias/"):
        raise ValueError(f"no model of a key named by its alias ({resolved})")
    if resolved.startswith("arn:"):
        return resolved
    return f"arn:aws:kms:{stack.region}:{ACCOUNT_ID}:key/{resolved}"
