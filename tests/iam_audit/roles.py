"""A function's role, read from the CloudFormation that SAM turns template.yaml into (so SAM's
policy templates arrive expanded), with its Refs, GetAtts and Subs resolved to the names and ARNs
of one deployment.

Each Allow is also split into grants, one action on one resource as the template writes it, so a
run can say which grants no call used.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local.template_stack import (
    DEFAULT_PARAMETERS,
    TEMPLATE,
    DeployedStack,
    load_template,
    render,
    resolve,
)
from tests.iam_audit.policy import Decision, Need, Statement, as_list, wildcard_match


@dataclass(frozen=True, order=True)
class Grant:
    """One action on one resource, as the template grants it."""

    role: str
    statement: str  # "<policy name>/<Sid>" (or "#<index>" for a statement without a Sid)
    action: str
    resource: str  # as written: intrinsic functions shown, not resolved

    def describe(self) -> str:
        return f"{self.role} {self.statement}: {self.action} on {self.resource}"


@dataclass(frozen=True)
class _ResolvedGrant:
    grant: Grant
    statement: Statement
    resource: str  # the pattern, resolved for this deployment


@dataclass(frozen=True)
class RolePolicy:
    """What one function's role allows in one deployment."""

    function: str
    role: str
    statements: tuple[Statement, ...]
    grants: tuple[_ResolvedGrant, ...]
    unevaluated: tuple[str, ...]  # managed policies outside the template, which it cannot read

    def grants_used(self, need: Need, decision: Decision) -> list[Grant]:
        """The grants that allowed `need`: those of an allowing statement that name it."""
        return [
            entry.grant
            for entry in self.grants
            if entry.statement in decision.allowed_by
            and wildcard_match(entry.grant.action, need.action, ignore_case=True)
            and wildcard_match(entry.resource, need.resource)
        ]


def role_of(cfn: dict[str, Any], function: str) -> str:
    """The logical id of the role a function runs with."""
    resource = cfn["Resources"].get(function)
    if resource is None or resource["Type"] != "AWS::Lambda::Function":
        raise ValueError(f"{function} is not a function of this template")
    role = resource["Properties"].get("Role")
    if isinstance(role, dict) and "Fn::GetAtt" in role:
        target = role["Fn::GetAtt"]
        return str(target[0] if isinstance(target, list) else target.split(".")[0])
    raise ValueError(f"{function}: its role {role!r} is not one of this template's")


def role_policy(stack: DeployedStack, function: str) -> RolePolicy:
    role = role_of(stack.template, function)
    statements, grants = [], []
    for label, document in _statements(stack.template, role):
        statement = Statement.parse(resolve(stack, document), label)
        statements.append(statement)
        for grant, resource in _split(role, label, document):
            grants.append(_ResolvedGrant(grant, statement, str(resolve(stack, resource))))
    return RolePolicy(
        function=function,
        role=role,
        statements=tuple(statements),
        grants=tuple(grants),
        unevaluated=tuple(_managed_arns(stack.template, role)),
    )


def declared_grants(cfn: dict[str, Any]) -> set[Grant]:
    """Every grant of every function's role in a transformed template."""
    roles = {
        role_of(cfn, logical_id)
        for logical_id, resource in cfn["Resources"].items()
        if resource["Type"] == "AWS::Lambda::Function"
    }
    return {
        grant
        for role in roles
        for label, document in _statements(cfn, role)
        for grant, _ in _split(role, label, document)
    }


def _statements(cfn: dict[str, Any], role: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The role's statements: its inline policies and the template's policies attached to it."""
    props = cfn["Resources"][role]["Properties"]
    documents = [
        (str(policy["PolicyName"]), policy["PolicyDocument"])
        for policy in props.get("Policies", [])
    ]
    managed = {arn["Ref"] for arn in props.get("ManagedPolicyArns", []) if _is_ref(arn)}
    for logical_id, resource in cfn["Resources"].items():
        if resource["Type"] not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            continue
        policy = resource["Properties"]
        if {"Ref": role} in as_list(policy.get("Roles", [])) or logical_id in managed:
            documents.append((logical_id, policy["PolicyDocument"]))
    for name, document in documents:
        for index, statement in enumerate(as_list(document["Statement"])):
            yield f"{name}/{statement.get('Sid') or f'#{index}'}", statement


def _split(role: str, label: str, statement: dict[str, Any]) -> Iterator[tuple[Grant, Any]]:
    """An Allow's grants, each with its resource as written (still to be resolved)."""
    if statement["Effect"] != "Allow":
        return
    action_key = "NotAction" if "NotAction" in statement else "Action"
    resource_key = "NotResource" if "NotResource" in statement else "Resource"
    for action in as_list(statement[action_key]):
        for resource in as_list(statement[resource_key]):
            shown = _written(resource)
            if action_key == "NotAction" or resource_key == "NotResource":
                shown = f"{action_key} {action} / {resource_key} {shown}"
            yield Grant(role, label, str(action), shown), resource


def _managed_arns(cfn: dict[str, Any], role: str) -> Iterator[str]:
    """Managed policies that live outside the template (AWS's own), which cannot be read here."""
    for arn in cfn["Resources"][role]["Properties"].get("ManagedPolicyArns", []):
        if not _is_ref(arn):
            yield arn if isinstance(arn, str) else json.dumps(arn)


def _is_ref(value: Any) -> bool:
    return isinstance(value, dict) and "Ref" in value


def _written(value: Any) -> str:
    """A resource as a reader of the template would write it."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Ref" in value:
        return f"!Ref {value['Ref']}"
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        return f"!GetAtt {target if isinstance(target, str) else '.'.join(target)}"
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return str(sub if isinstance(sub, str) else sub[0])
    return json.dumps(value, sort_keys=True)


def template_grants(template_path: Path = TEMPLATE) -> set[Grant]:
    """The grants of template.yaml itself, transformed with its parameters' defaults."""
    sam = load_template(template_path)
    defaults = {
        name: str(spec["Default"])
        for name, spec in sam.get("Parameters", {}).items()
        if "Default" in spec
    }
    cfn = render(sam, {**defaults, **DEFAULT_PARAMETERS}, "us-east-1", "batchdrop-local")
    return declared_grants(cfn)
