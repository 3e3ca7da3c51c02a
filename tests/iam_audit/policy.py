"""How IAM evaluates identity-policy statements for one request: an explicit Deny wins, then any
Allow; nothing matching is an implicit deny.

Only what a function role can hold is modelled: Action/NotAction, Resource/NotResource with IAM's
wildcards, and the string, ARN and Bool condition operators. An operator it does not know is an
error, never a silent "allowed".
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Need:
    """One permission a request needs: an action on a resource, with its condition context."""

    action: str  # "s3:GetObject"
    resource: str  # an ARN
    context: tuple[tuple[str, str], ...] = ()  # condition keys, e.g. (("kms:ViaService", ...),)
    why: str = ""  # for a permission the call needs implicitly, the reason

    def describe(self) -> str:
        text = f"{self.action} on {self.resource}"
        return f"{text} ({self.why})" if self.why else text


@dataclass(frozen=True, eq=False)
class Statement:
    """One statement of a policy, its intrinsic functions already resolved. (Compared by
    identity: "which statements allowed this" means these very ones.)"""

    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    not_action: bool = False
    not_resource: bool = False
    condition: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    label: str = ""  # where it comes from: "<role>/<policy>/<Sid or index>"

    @classmethod
    def parse(cls, document: Mapping[str, Any], label: str = "") -> Statement:
        if "Principal" in document or "NotPrincipal" in document:
            raise ValueError(f"{label}: a resource policy statement in an identity policy")
        action_key = "NotAction" if "NotAction" in document else "Action"
        resource_key = "NotResource" if "NotResource" in document else "Resource"
        return cls(
            effect=str(document["Effect"]),
            actions=tuple(str(a) for a in as_list(document[action_key])),
            resources=tuple(str(r) for r in as_list(document[resource_key])),
            not_action=action_key == "NotAction",
            not_resource=resource_key == "NotResource",
            condition=document.get("Condition", {}),
            label=label,
        )

    def applies_to(self, need: Need) -> bool:
        return (
            self.covers_action(need.action)
            and self.covers_resource(need.resource)
            and conditions_hold(self.condition, dict(need.context))
        )

    def covers_action(self, action: str) -> bool:
        named = any(wildcard_match(pattern, action, ignore_case=True) for pattern in self.actions)
        return named != self.not_action

    def covers_resource(self, resource: str) -> bool:
        named = any(wildcard_match(pattern, resource) for pattern in self.resources)
        return named != self.not_resource


@dataclass(frozen=True)
class Decision:
    allowed: bool
    allowed_by: tuple[Statement, ...] = ()  # every Allow that matched, when allowed
    denied_by: Statement | None = None  # the explicit Deny, if one matched


def evaluate(statements: Iterable[Statement], need: Need) -> Decision:
    applying = [statement for statement in statements if statement.applies_to(need)]
    for statement in applying:
        if statement.effect == "Deny":
            return Decision(False, denied_by=statement)
    allows = tuple(statement for statement in applying if statement.effect == "Allow")
    return Decision(bool(allows), allowed_by=allows)


def wildcard_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM's matching: `*` is any run of characters (slashes too), `?` any one character."""
    return _compiled(pattern, ignore_case).fullmatch(value) is not None


@functools.cache
def _compiled(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.compile("".join(parts), flags)


# --- conditions --------------------------------------------------------------------------------


def conditions_hold(condition: Mapping[str, Mapping[str, Any]], context: Mapping[str, str]) -> bool:
    """Every operator and every key must hold (AND); any of a key's values may match (OR)."""
    known = {key.lower(): value for key, value in context.items()}
    return all(
        _holds(operator, key, as_list(expected), known.get(key.lower()))
        for operator, keys in condition.items()
        for key, expected in keys.items()
    )


def _holds(operator: str, key: str, expected: list[Any], actual: str | None) -> bool:
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists")
    if base not in _OPERATORS:
        raise ValueError(f"condition operator {operator} (on {key}) is not modelled")
    negated, compare = _OPERATORS[base]
    if actual is None:
        # A missing key fails a positive test and passes a negated one; IfExists passes both.
        return if_exists or negated
    matched = any(compare(str(value), actual) for value in expected)
    return matched != negated


def _equals(expected: str, actual: str) -> bool:
    return expected == actual


def _like(expected: str, actual: str) -> bool:
    return wildcard_match(expected, actual)


def _equals_ignore_case(expected: str, actual: str) -> bool:
    return expected.lower() == actual.lower()


_OPERATORS = {
    "StringEquals": (False, _equals),
    "StringNotEquals": (True, _equals),
    "StringEqualsIgnoreCase": (False, _equals_ignore_case),
    "StringNotEqualsIgnoreCase": (True, _equals_ignore_case),
    "StringLike": (False, _like),
    "StringNotLike": (True, _like),
    "ArnEquals": (False, _like),  # ARN operators take wildcards in either form
    "ArnLike": (False, _like),
    "ArnNotEquals": (True, _like),
    "ArnNotLike": (True, _like),
    "Bool": (False, _equals_ignore_case),
}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
