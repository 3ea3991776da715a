"""Transfer: one SUCCESS video into S3. Returns status CONTINUE (with a continuation) when time runs low."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from polyv_retriever import observability
from polyv_retriever.contracts import TransferEvent, dump, load, to_json
from polyv_retriever.handlers import runtime
from polyv_retriever.pipeline.video_transfer import transfer_video
from polyv_retriever.transfer.allowlist import DownloadAllowList
from polyv_retriever.transfer.engine import TransferEngine, TransferSettings

logger = runtime.logger


@observability.instrumented("Transfer")
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = load(TransferEvent, event)
    result = transfer_video(
        client=runtime.polyv_client(),
        engine=TransferEngine(TransferSettings.from_env()),
        allowlist=DownloadAllowList.from_env(),
        pool=runtime.download_pool(),
        s3=runtime.s3(),
        bucket=runtime.settings().bucket_name,
        records=runtime.records(),
        event=request,
        storage=runtime.storage_defaults(),
        time_left=lambda: context.get_remaining_time_in_millis() / 1000,
    )
    logger.info(
        "transfer",
        extra={
            "vid": request.vid,
            "status": result.status.value,
            **dump(result.result),
        },
    )
    # Not exclude_none: the transfer state machine's Choice reads status, and continuation stays explicit.
    answer = to_json(result)
    observability.record_transfer(answer)
    return answer
