"""S3 ObjectCreated → one OpenAI job per object version (or a clear, emailed refusal)."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.data_classes import S3Event, event_source
from aws_lambda_powertools.utilities.data_classes.s3_event import S3EventRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from batchdrop import SERVICE, runtime
from batchdrop.adapters import aws_clients
from batchdrop.domain.model import SourceObject
from batchdrop.settings import ConfigurationError, Settings

logger = Logger(service=SERVICE)
tracer = Tracer()
metrics = Metrics()

settings = Settings.from_env()
if settings.idempotency_table_name is None:
    raise ConfigurationError("environment variable IDEMPOTENCY_TABLE_NAME is not set")
submitter = runtime.submitter(settings, metrics)
idempotency = IdempotencyConfig(expires_after_seconds=86_400)
persistence = DynamoDBPersistenceLayer(
    table_name=settings.idempotency_table_name, boto3_client=aws_clients.client("dynamodb")
)


class SubmitFailedError(RuntimeError):
    """Some records failed; Lambda retries the event and, after that, the DLQ keeps it."""


@idempotent_function(
    data_keyword_argument="source", persistence_store=persistence, config=idempotency
)
def submit_object(source: dict[str, Any]) -> dict[str, Any]:
    """One submission per object version; the data is exactly what identifies that version."""
    return submitter.submit(SourceObject(**source)).as_dict()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
@event_source(data_class=S3Event)
def lambda_handler(event: S3Event, context: LambdaContext) -> dict[str, Any]:
    idempotency.register_lambda_context(context)
    outcomes, failures = [], []
    for record in event.records:  # every record, even when an earlier one fails
        try:
            outcomes.append(_handle(record))
        except Exception:
            key = unquote_plus(record.s3.get_object.key)
            logger.exception("submission failed", extra={"key": key})
            failures.append(key)
    if failures:
        raise SubmitFailedError(f"{len(failures)} of {len(outcomes) + len(failures)} failed")
    return {"outcomes": outcomes}


def _handle(record: S3EventRecord) -> dict[str, Any]:
    obj = record.s3.get_object
    source: dict[str, Any] = {
        "bucket": record.s3.bucket.name,
        # S3 sends keys URL-encoded with '+' for a space; S3Event hands them over still encoded.
        "key": unquote_plus(obj.key),
        "size": obj.size or 0,
        "etag": obj.etag,
        "sequencer": obj.sequencer,
        "version_id": obj.version_id or None,
    }
    try:
        result: dict[str, Any] = submit_object(source=source)
    except IdempotencyAlreadyInProgressError:
        # Another invocation holds this object version, or held it and was killed: the event
        # is let go once the job's record guarantees it an end (the poller's, if need be).
        return submitter.in_progress(SourceObject(**source)).as_dict()
    return result
