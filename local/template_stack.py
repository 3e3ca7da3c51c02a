"""Create template.yaml's resources in an AWS-compatible endpoint (moto) and derive each function's
environment from it, so the template stays the one source of truth for tests and the local stack.

The SAM template is transformed offline with samtranslator, exactly as CloudFormation would see it,
then its intrinsic functions are resolved against the physical names given to the resources here.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import yaml

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"
ACCOUNT_ID = "123456789012"
DEFAULT_PARAMETERS = {"NotificationEmail": "owner@example.com"}


@dataclass(frozen=True)
class S3Trigger:
    """A bucket notification that invokes a function, as the template wires it."""

    bucket: str
    function: str
    events: tuple[str, ...]
    prefix: str
    suffix: str

    def matches(self, event_name: str, key: str) -> bool:
        """Would S3 invoke the function for this record ("ObjectCreated:Put", key)?"""
        # The configuration says "s3:ObjectCreated:*" where the record says "ObjectCreated:Put".
        configured = (e.removeprefix("s3:") for e in self.events)
        wanted = any(
            event_name == e or (e.endswith("*") and event_name.startswith(e[:-1]))
            for e in configured
        )
        return wanted and key.startswith(self.prefix) and key.endswith(self.suffix)


@dataclass(frozen=True)
class Schedule:
    function: str
    expression: str


@dataclass(frozen=True)
class AsyncConfig:
    """How Lambda handles a failed asynchronous invocation of a function."""

    max_retries: int
    on_failure_queue_url: str | None


@dataclass
class DeployedStack:
    """What a deployment produced: physical ids, each function's environment and its triggers."""

    name: str
    region: str
    parameters: dict[str, str]
    template: dict[str, Any]
    physical_ids: dict[str, str] = field(default_factory=dict)
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)
    function_env: dict[str, dict[str, str]] = field(default_factory=dict)
    s3_triggers: list[S3Trigger] = field(default_factory=list)
    schedules: list[Schedule] = field(default_factory=list)
    async_configs: dict[str, AsyncConfig] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)

    def env(self, function: str) -> dict[str, str]:
        """The environment variables the template gives a function (Globals merged)."""
        return dict(self.function_env[function])

    def resource(self, logical_id: str) -> str:
        return self.physical_ids[logical_id]


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """Read a SAM/CloudFormation YAML template, keeping short-form tags such as !Ref as dicts."""
    template: dict[str, Any] = yaml.load(path.read_text(), Loader=_CfnLoader)  # noqa: S506 - a SafeLoader
    return template


def render(
    sam_template: dict[str, Any], parameters: Mapping[str, str], region: str, stack_name: str
) -> dict[str, Any]:
    """Transform the SAM template to plain CloudFormation, offline."""
    fragment = copy.deepcopy(sam_template)
    for resource in fragment.get("Resources", {}).values():
        props = resource.get("Properties", {})
        # samtranslator expects packaged code; a placeholder is enough to transform.
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str):
                props[key] = f"s3://batchdrop-local-artifacts/{props[key].strip('/')}.zip"
    values = {
        **parameters,
        "AWS::Region": region,
        "AWS::AccountId": ACCOUNT_ID,
        "AWS::StackName": stack_name,
        "AWS::Partition": "aws",
    }
    # Imported here, as it takes a second: reading the template (load_template) needs only yaml.
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    # No managed policies are looked up: the template names none, and offline we could not.
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region))
    result: dict[str, Any] = translator.translate(
        fragment, parameter_values=values, get_managed_policy_map=dict
    )
    return result


def deploy(
    template_path: Path = TEMPLATE,
    parameters: Mapping[str, str] | None = None,
    *,
    stack_name: str = "batchdrop-local",
    session: boto3.session.Session | None = None,
    template: dict[str, Any] | None = None,
) -> DeployedStack:
    """Create the template's data resources (buckets, tables, topics, queues, secrets, keys)."""
    session = session or boto3.session.Session()
    region = session.region_name or "us-east-1"
    sam_template = template if template is not None else load_template(template_path)
    params = _parameter_values(sam_template, {**DEFAULT_PARAMETERS, **(parameters or {})})
    cfn = render(sam_template, params, region, stack_name)
    stack = DeployedStack(stack_name, region, params, cfn)
    resolver = _Resolver(stack, region)
    resources: dict[str, Any] = cfn["Resources"]
    for logical_id, resource in resources.items():
        creator = _CREATORS.get(resource["Type"])
        if creator is not None:
            props = resolver.resolve(resource.get("Properties", {}))
            creator(session, stack, logical_id, props)
    for logical_id, resource in resources.items():
        if resource["Type"] == "AWS::Lambda::Function":
            name = resolver.resolve(resource["Properties"].get("FunctionName"))
            stack.physical_ids[logical_id] = str(name or f"{stack_name}-{logical_id}")
    for logical_id, resource in resources.items():
        _collect_wiring(stack, resolver, logical_id, resource)
    for name, output in cfn.get("Outputs", {}).items():
        stack.outputs[name] = str(resolver.resolve(output["Value"]))
    return stack


def resolve(stack: DeployedStack, value: Any) -> Any:
    """A value of the transformed template with its intrinsic functions evaluated against this
    deployment: the names and ARNs the resources were given."""
    return _Resolver(stack, stack.region).resolve(value)


def _parameter_values(template: dict[str, Any], given: Mapping[str, str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, spec in template.get("Parameters", {}).items():
        if name in given:
            values[name] = str(given[name])
        elif "Default" in spec:
            values[name] = str(spec["Default"])
        else:
            raise ValueError(f"template parameter {name} has no default; pass a value")
    return values


def _collect_wiring(
    stack: DeployedStack, resolver: _Resolver, logical_id: str, resource: dict[str, Any]
) -> None:
    props = resource.get("Properties", {})
    kind = resource["Type"]
    if kind == "AWS::Lambda::Function":
        variables = props.get("Environment", {}).get("Variables", {})
        stack.function_env[logical_id] = {k: str(v) for k, v in resolver.resolve(variables).items()}
    elif kind == "AWS::S3::Bucket":
        notifications = props.get("NotificationConfiguration", {})
        for config in notifications.get("LambdaConfigurations", []):
            rules = config.get("Filter", {}).get("S3Key", {}).get("Rules", [])
            by_name = {r["Name"].lower(): str(resolver.resolve(r["Value"])) for r in rules}
            events = config["Event"]
            stack.s3_triggers.append(
                S3Trigger(
                    bucket=stack.physical_ids[logical_id],
                    function=_function_of(config["Function"]),
                    events=tuple(events if isinstance(events, list) else [events]),
                    prefix=by_name.get("prefix", ""),
                    suffix=by_name.get("suffix", ""),
                )
            )
    elif kind == "AWS::Lambda::EventInvokeConfig":
        destination = props.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        queue_url = None
        if destination is not None:
            arn = str(resolver.resolve(destination))
            queue_url = next(
                stack.physical_ids[logical]
                for (logical, attribute), value in stack.attributes.items()
                if attribute == "Arn" and value == arn
            )
        stack.async_configs[_function_of(props["FunctionName"])] = AsyncConfig(
            max_retries=int(props.get("MaximumRetryAttempts", 2)), on_failure_queue_url=queue_url
        )
    elif kind == "AWS::Events::Rule" and "ScheduleExpression" in props:
        for target in props.get("Targets", []):
            stack.schedules.append(
                Schedule(
                    _function_of(target["Arn"]), str(resolver.resolve(props["ScheduleExpression"]))
                )
            )


def _function_of(reference: Any) -> str:
    """The logical id of the function a Ref or GetAtt points at."""
    if isinstance(reference, dict):
        if "Ref" in reference:
            return str(reference["Ref"])
        if "Fn::GetAtt" in reference:
            target = reference["Fn::GetAtt"]
            return str(target[0] if isinstance(target, list) else target.split(".")[0])
    raise ValueError(f"cannot tell which function {reference!r} names")


# --- resource creators -------------------------------------------------------------------------

Creator = Callable[[boto3.session.Session, DeployedStack, str, dict[str, Any]], None]


def _generated_name(stack: DeployedStack, logical_id: str) -> str:
    return f"{stack.name}-{logical_id}-{uuid.uuid4().hex[:8]}"


def _create_bucket(
    session: boto3.session.Session, stack: DeployedStack, logical_id: str, props: dict[str, Any]
) -> None:
    s3 = session.client("s3")
    name = props.get("BucketName") or _generated_name(stack, logical_id).lower()
    if stack.region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(
            Bucket=name, CreateBucketConfiguration={"LocationConstraint": stack.region}
        )
    if "VersioningConfiguration" in props:
        s3.put_bucket_versioning(
            Bucket=name,
            VersioningConfiguration={"Status": props["VersioningConfiguration"]["Status"]},
        )
    if "BucketEncryption" in props:
        # CloudFormation says ServerSideEncryptionByDefault where the S3 API says Apply…
        rules = [
            {"ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"]}
            for rule in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        ]
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
    if "PublicAccessBlockConfiguration" in props:
        s3.put_public_access_block(
            Bucket=name, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
        )
    stack.physical_ids[logical_id] = name
    stack.attributes[(logical_id, "Arn")] = f"arn:aws:s3:::{name}"


def _create_table(
    session: boto3.session.Session, stack: DeployedStack, logical_id: str, props: dict[str, Any]
) -> None:
    dynamodb = session.client("dynamodb")
    name = props.get("TableName") or _generated_name(stack, logical_id)
    request: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PROVISIONED"),
    }
    if props.get("GlobalSecondaryIndexes"):
        request["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    if "SSESpecification" in props:
        request["SSESpecification"] = {"Enabled": props["SSESpecification"]["SSEEnabled"]}
    description = dynamodb.create_table(**request)["TableDescription"]
    ttl = props.get("TimeToLiveSpecification")
    if ttl:
        dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
    stack.physical_ids[logical_id] = name
    stack.attributes[(logical_id, "Arn")] = description["TableArn"]


def _create_topic(
    session: boto3.session.Session, stack: DeployedStack, logical_id: str, props: dict[str, Any]
) -> None:
    name = props.get("TopicName") or _generated_name(stack, logical_id)
    attributes = {"DisplayName": props["DisplayName"]} if "DisplayName" in props else {}
    arn = session.client("sns").create_topic(Name=name, Attributes=attributes)["TopicArn"]
    stack.physical_ids[logical_id] = arn
    stack.attributes[(logical_id, "TopicName")] = name
    stack.attributes[(logical_id, "TopicArn")] = arn


def _create_queue(
    session: boto3.session.Session, stack: DeployedStack, logical_id: str, props: dict[str, Any]
) -> None:
    sqs = session.client("sqs")
    name = props.get("QueueName") or _generated_name(stack, logical_id)
    attributes = {
        key: str(props[key])
        for key in ("MessageRetentionPeriod", "VisibilityTimeout")
        if key in props
    }
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    stack.physical_ids[logical_id] = url
    stack.attributes[(logical_id, "Arn")] = arn["QueueArn"]
    stack.attributes[(logical_id, "QueueName")] = name


def _create_secret(
    session: boto3.session.Session, stack: DeployedStack, logical_id: str, props: dict[str, Any]
) -> None:
    name = props.get("Name") or _generated_name(stack, logical_id)
    secret = session.client("secretsmanager").create_secret(
        Name=name, SecretString=props.get("SecretString", "")
    )
    stack.physical_ids[logical_id] = secret["ARN"]


def _create_key(
    session: boto3.session.Session, stack: DeployedStack, logical_id: str, props: dict[str, Any]
) -> None:
    # Nothing encrypts with it locally; it exists so that its ARN is a real key's, as IAM sees it.
    key = session.client("kms").create_key(Description=props.get("Description", ""))
    stack.physical_ids[logical_id] = key["KeyMetadata"]["KeyId"]
    stack.attributes[(logical_id, "Arn")] = key["KeyMetadata"]["Arn"]
    stack.attributes[(logical_id, "KeyId")] = key["KeyMetadata"]["KeyId"]


_CREATORS: dict[str, Creator] = {
    "AWS::KMS::Key": _create_key,
    "AWS::S3::Bucket": _create_bucket,
    "AWS::DynamoDB::Table": _create_table,
    "AWS::SNS::Topic": _create_topic,
    "AWS::SQS::Queue": _create_queue,
    "AWS::SecretsManager::Secret": _create_secret,
}


# --- intrinsic functions -----------------------------------------------------------------------


class _Resolver:
    """Evaluates the intrinsic functions the template uses, against this deployment."""

    def __init__(self, stack: DeployedStack, region: str) -> None:
        stack_uuid = str(uuid.UUID(int=0x5EED))
        self._stack = stack
        self._pseudo = {
            "AWS::Region": region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::StackName": stack.name,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": (
                f"arn:aws:cloudformation:{region}:{ACCOUNT_ID}:stack/{stack.name}/{stack_uuid}"
            ),
        }

        self._intrinsics: dict[str, Callable[[Any], Any]] = {
            "Ref": self._ref,
            "Fn::GetAtt": self._get_att,
            "Fn::Sub": self._sub,
            "Fn::Select": self._select,
            "Fn::Split": self._split,
            "Fn::Join": self._join,
        }

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref" or key.startswith("Fn::"):
                if key not in self._intrinsics:
                    raise NotImplementedError(f"intrinsic {key} is not supported locally")
                return self._intrinsics[key](argument)
        return {k: self.resolve(v) for k, v in value.items()}

    def _ref(self, name: str) -> str:
        if name in self._pseudo:
            return self._pseudo[name]
        if name in self._stack.parameters:
            return self._stack.parameters[name]
        if name in self._stack.physical_ids:
            return self._stack.physical_ids[name]
        return f"{self._stack.name}-{name}"

    def _get_att(self, argument: Any) -> str:
        logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
        if (logical_id, attribute) in self._stack.attributes:
            return self._stack.attributes[(logical_id, attribute)]
        # Only functions and roles are left; their ARNs are never dereferenced locally.
        region = self._pseudo["AWS::Region"]
        return f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{self._ref(logical_id)}"

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        local = {k: str(self.resolve(v)) for k, v in variables.items()}
        out, rest = [], text
        while "${" in rest:
            before, _, after = rest.partition("${")
            name, _, rest = after.partition("}")
            out.append(before)
            if name.startswith("!"):
                out.append("${" + name[1:] + "}")
            elif name in local:
                out.append(local[name])
            elif "." in name:
                out.append(self._get_att(name))
            else:
                out.append(self._ref(name))
        out.append(rest)
        return "".join(out)

    def _select(self, argument: list[Any]) -> Any:
        index, items = argument
        return self.resolve(items)[int(self.resolve(index))]

    def _split(self, argument: list[Any]) -> list[str]:
        delimiter, text = argument
        return str(self.resolve(text)).split(delimiter)

    def _join(self, argument: list[Any]) -> str:
        delimiter, items = argument
        return str(delimiter).join(str(i) for i in self.resolve(items))


class _CfnLoader(yaml.CSafeLoader):
    """SafeLoader that turns CloudFormation short-form tags (!Ref, !Sub, …) into their long form.
    libyaml's (C) parser: it reads the template several times faster than PyYAML's own."""


def _construct_tag(loader: _CfnLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)
