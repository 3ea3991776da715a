"""Finalize: write the manifest of every video's outcome and return the execution's summary."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict

from polyv_retriever import observability
from polyv_retriever.handlers import runtime
from polyv_retriever.pipeline.manifest import finalize

logger = runtime.logger


class FinalizeEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")
    taskId: str
    prefix: str
    poll: dict[str, Any] | None = None
    transfers: list[dict[str, Any]] | None = None
    failure: dict[str, Any] | None = None
    execution: str | None = None
    startedAt: str | None = None  # the execution's start ($$.Execution.StartTime)


@observability.instrumented("Finalize")
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = FinalizeEvent.model_validate(event)
    summary = finalize(
        runtime.records(),
        bucket=runtime.settings().bucket_name,
        task_id=request.taskId,
        prefix=request.prefix,
        poll=request.poll,
        transfers=request.transfers,
        failure=request.failure,
    )
    logger.info("retrieval finished", extra=summary)
    observability.announce_completion(
        runtime.events(),
        summary,
        execution=request.execution,
        started_at=_epoch(request.startedAt) or (request.poll or {}).get("startedAt"),
        polls=(request.poll or {}).get("count"),
    )
    return summary


def _epoch(timestamp: str | None) -> float | None:
    return datetime.fromisoformat(timestamp).timestamp() if timestamp else None
