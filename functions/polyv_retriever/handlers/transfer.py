"""Transfer: one SUCCESS video into S3. Returns status CONTINUE (with a continuation) when time runs low."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict

from polyv_retriever import observability
from polyv_retriever.handlers import runtime
from polyv_retriever.pipeline.video_transfer import transfer_video
from polyv_retriever.transfer.allowlist import DownloadAllowList
from polyv_retriever.transfer.engine import TransferEngine, TransferSettings

logger = runtime.logger


class TransferEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")
    taskId: str
    vid: str
    prefix: str
    continuation: dict[str, Any] | None = None
    execution: str | None = None


@observability.instrumented("Transfer")
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = TransferEvent.model_validate(event)
    result = transfer_video(
        client=runtime.polyv_client(),
        engine=TransferEngine(TransferSettings.from_env()),
        allowlist=DownloadAllowList.from_env(),
        pool=runtime.download_pool(),
        s3=runtime.s3(),
        bucket=runtime.settings().bucket_name,
        records=runtime.records(),
        task_id=request.taskId,
        vid=request.vid,
        prefix=request.prefix,
        continuation=request.continuation,
        time_left=lambda: context.get_remaining_time_in_millis() / 1000,
    )
    observability.record_transfer(result)
    logger.info("transfer", extra={"status": result["status"], **result["result"]})
    # Carried into the next invocation when the state machine loops a continuation (its log context).
    return {**result, "execution": request.execution} if request.execution else result
