"""Finalize: write the manifest of every video's outcome and return the attempt's summary. On the failure
path (the attempt as a whole failed or timed out) it first stops the attempt's transfers and aborts their
open uploads, so the manifest lists exactly what landed."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from polyv_retriever import observability
from polyv_retriever.attempts import attempt_name
from polyv_retriever.contracts import FinalizeEvent, dump, load
from polyv_retriever.handlers import runtime
from polyv_retriever.pipeline.manifest import build_manifest, failure_info, write_manifest

logger = runtime.logger


@observability.instrumented("Finalize")
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = load(FinalizeEvent, event)
    failure = failure_info(request.failure)
    if failure is not None:
        runtime.canceller().stop_transfers(
            request.taskId, request.prefix, request.attempt, request.poll, failure
        )
    bucket = runtime.settings().bucket_name
    manifest = build_manifest(
        bucket=bucket,
        task_id=request.taskId,
        prefix=request.prefix,
        attempt=request.attempt,
        poll=request.poll,
        failure=failure,
    )
    summary = write_manifest(runtime.records(), bucket, request.prefix, manifest)
    logger.info("retrieval finished", extra=dump(summary))
    poll = request.poll
    observability.announce_completion(
        runtime.events(),
        dump(summary),
        execution=attempt_name(request.taskId, request.attempt),
        started_at=poll.startedAt if poll else None,
        polls=poll.count if poll else None,
    )
    return dump(summary)
