"""The EventBridge schedule → one poll tick over every active batch."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from batchdrop import SERVICE, runtime
from batchdrop.settings import Settings

logger = Logger(service=SERVICE)
tracer = Tracer()
metrics = Metrics()

settings = Settings.from_env()
poller = runtime.poller(settings, metrics)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
@event_source(data_class=EventBridgeEvent)
def lambda_handler(event: EventBridgeEvent, context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(tick=event.get_id)
    summary = poller.tick(time_left=lambda: context.get_remaining_time_in_millis() / 1000)
    return summary.as_dict()
