"""CheckStatus: one step of the retrieval's dispatcher (poll Polyv when due, start transfers of ready videos,
collect ended ones); tells the state machine whether it is done, else how long to wait."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from polyv_retriever import observability
from polyv_retriever.contracts import CheckStatusEvent, dump, load
from polyv_retriever.handlers import runtime
from polyv_retriever.pipeline.polling import PollPolicy, advance

logger = runtime.logger


@observability.instrumented("CheckStatus")
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = load(CheckStatusEvent, event)
    progress = advance(
        runtime.polyv_client(),
        runtime.transfer_launcher(),
        records=runtime.records(),
        event=request,
        policy=PollPolicy.from_env(),
        now=time.time(),
    )
    observability.record_poll()
    logger.info(
        "advanced",
        extra={
            "taskId": request.taskId,
            "counts": progress.counts,
            "poll": progress.count,
            "done": progress.done,
        },
    )
    return dump(progress)
