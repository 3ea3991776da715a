"""CheckStatus: poll the Polyv task once; tell the state machine all terminal? else how long to wait."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict

from polyv_retriever import observability
from polyv_retriever.handlers import runtime
from polyv_retriever.pipeline.polling import PollPolicy, poll_task
from polyv_retriever.pipeline.records import RetrievalLayout

logger = runtime.logger


class CheckStatusEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")
    taskId: str
    prefix: str
    poll: dict[str, Any] | None = None


@observability.instrumented("CheckStatus")
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = CheckStatusEvent.model_validate(event)
    result = poll_task(
        runtime.polyv_client(),
        records=runtime.records(),
        layout=RetrievalLayout(request.prefix, request.taskId),
        previous=request.poll,
        policy=PollPolicy.from_env(),
        now=time.time(),
    )
    observability.record_poll()
    logger.info(
        "polled", extra={"taskId": request.taskId, "counts": result["counts"], "poll": result["count"]}
    )
    return result
