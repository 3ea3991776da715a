"""The REST API (behind IAM auth): start, run again, cancel, list retrievals and see where one stands.

    POST   /retrievals        {taskId} or {vids, expireDays} (+ prefix, storageClass)  -> 202 / 200 (exists)
                              {vids: > 100}                -> 202 {"retrievals": [...]}, one per Polyv task
                              {taskId, rerun | retryFailed} -> 202, a new attempt
                              header Idempotency-Key: a repeat answers the first request's retrievals
    GET    /retrievals        ?status=RUNNING&limit=N&nextToken=T  -> attempts newest first
    GET    /retrievals/{id}   the latest attempt: status, Polyv's view, per-video transfers, the result,
                              and the other attempts
    DELETE /retrievals/{id}   cancel the running attempt -> 202

Request bodies are pydantic models, so validation and the OpenAPI document (infra/openapi.json, generated
by ``make openapi``) are one thing. Every refusal is a 4xx whose ``message`` names the problem.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, model_validator

from polyv_retriever import errors, observability
from polyv_retriever.contracts import ExecutionStatus, RetrievalOptions, StorageClass
from polyv_retriever.handlers import runtime
from polyv_retriever.pipeline import creation
from polyv_retriever.pipeline.retrievals import RetrievalService
from polyv_retriever.polyv.models import MAX_VIDS_PER_TASK

logger = runtime.logger
app = APIGatewayRestResolver(enable_validation=True)


class RetrievalRequest(BaseModel):
    """Either an existing Polyv task (``taskId``) or videos to create one for (``vids`` + ``expireDays``)."""

    model_config = ConfigDict(extra="forbid")

    taskId: str | None = Field(None, description="an existing source-file retrieval task (32 hex digits)")
    vids: list[str] | None = Field(
        None, description="1-1,000 Polyv video ids: Polyv tasks of at most 100 are created for them"
    )
    expireDays: int | None = Field(None, description="with vids: 1-7 days the thawed files stay downloadable")
    prefix: str | None = Field(None, description="S3 key prefix for this retrieval (default 'polyv/')")
    storageClass: StorageClass | None = Field(None, description="S3 storage class (default: the template's)")
    rerun: bool = Field(False, description="with taskId: a new attempt of a finished retrieval")
    retryFailed: bool = Field(False, description="with taskId: a new attempt of only the videos that failed")

    @model_validator(mode="after")
    def _one_source(self) -> RetrievalRequest:
        if (self.taskId is None) == (self.vids is None):
            raise ValueError("give either taskId or vids (with expireDays), not both and not neither")
        if self.vids is not None and self.expireDays is None:
            raise ValueError("expireDays (1-7) is required with vids")
        if self.taskId is not None and self.expireDays is not None:
            raise ValueError("expireDays goes with vids, not with taskId")
        if (self.rerun or self.retryFailed) and self.taskId is None:
            raise ValueError("rerun and retryFailed go with taskId")
        if self.rerun and self.retryFailed:
            raise ValueError("give rerun or retryFailed, not both")
        if (self.rerun or self.retryFailed) and self.storageClass is not None:
            raise ValueError("a new attempt keeps the retrieval's storageClass")
        return self


class Retrieval(BaseModel):
    """Where a retrieval stands (see README, "The API")."""

    model_config = ConfigDict(extra="allow")

    retrievalId: str
    taskId: str
    status: ExecutionStatus
    attempt: int
    destination: str


class RetrievalList(BaseModel):
    retrievals: list[dict[str, Any]]
    nextToken: str | None = None


class ErrorBody(BaseModel):
    message: str


@cache
def service() -> RetrievalService:
    return RetrievalService(
        runtime.retrieval_machine(),
        runtime.records(),
        runtime.settings().bucket_name,
        runtime.polyv_client,
        runtime.canceller,
        events=runtime.events,
    )


def _json(status: int, body: dict[str, Any], **headers: str) -> Response[str]:
    return Response(status, "application/json", json.dumps(body, ensure_ascii=False), headers=headers or None)


@app.post(
    "/retrievals",
    summary="Start retrieving Polyv source files into S3, or run a retrieval again",
    responses={
        202: {"description": "started", "content": {"application/json": {"model": Retrieval}}},
        200: {
            "description": "already started for this task",
            "content": {"application/json": {"model": Retrieval}},
        },
        400: {"description": "invalid request", "content": {"application/json": {"model": ErrorBody}}},
        409: {
            "description": "conflicts with the retrieval's state",
            "content": {"application/json": {"model": ErrorBody}},
        },
        502: {
            "description": "Polyv refused the task creation",
            "content": {"application/json": {"model": ErrorBody}},
        },
    },
)
def start_retrieval(
    request: Annotated[RetrievalRequest, Body()],
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", description="a repeat answers the first request's result")
    ] = None,
) -> Response[str]:
    if request.vids is not None:
        return _create_from_vids(request, idempotency_key)
    assert request.taskId is not None
    if request.rerun or request.retryFailed:
        return _run_again(request)
    options = RetrievalOptions(storageClass=request.storageClass)
    started, retrieval = service().start(task_id=request.taskId, prefix=request.prefix, options=options)
    logger.info("retrieval requested", extra={"taskId": retrieval["taskId"], "started": started})
    return _json(202 if started else 200, retrieval, Location=retrieval["links"]["self"])


def _run_again(request: RetrievalRequest) -> Response[str]:
    assert request.taskId is not None
    retrieval = service().run_again(
        task_id=request.taskId, prefix=request.prefix, retry_failed=request.retryFailed
    )
    logger.info("retrieval run again", extra={"taskId": retrieval["taskId"], "attempt": retrieval["attempt"]})
    return _json(202, retrieval, Location=retrieval["links"]["self"])


def _create_from_vids(request: RetrievalRequest, idempotency_key: str | None) -> Response[str]:
    """Polyv tasks of at most 100 vids, one retrieval each; made once per identical request (or key)."""
    assert request.vids is not None
    vids, days, prefix = creation.validated(request.vids, request.expireDays, request.prefix)
    options = RetrievalOptions(storageClass=request.storageClass)
    fingerprint = creation.fingerprint(vids, days, prefix, options)

    def create(request: dict[str, str]) -> dict[str, list[str]]:
        def start(task_id: str) -> object:
            return service().start(task_id=task_id, prefix=prefix, options=options)

        return {"taskIds": creation.create_tasks(runtime.polyv_client(), vids, days, start)}

    guarded = runtime.idempotent(create)
    key = {
        "key": f"header:{idempotency_key}" if idempotency_key else f"body:{fingerprint}",
        "fingerprint": fingerprint,
    }
    created = creation.wait_for_other_request(lambda: guarded(request=key), runtime.IdempotencyInProgress)
    retrievals = [service().describe(task_id) for task_id in created["taskIds"]]
    logger.info("retrievals created", extra={"taskIds": created["taskIds"]})
    if len(vids) > MAX_VIDS_PER_TASK:
        return _json(202, {"retrievals": retrievals})
    return _json(202, retrievals[0], Location=retrievals[0]["links"]["self"])


@app.get(
    "/retrievals/<retrieval_id>",
    summary="Where a retrieval stands (its latest attempt, and the others)",
    responses={
        200: {"description": "the retrieval", "content": {"application/json": {"model": Retrieval}}},
        404: {"description": "no such retrieval", "content": {"application/json": {"model": ErrorBody}}},
    },
)
def get_retrieval(
    retrieval_id: Annotated[str, Path(description="the retrieval id (= the Polyv taskId)")],
) -> Response[str]:
    return _json(200, service().describe(retrieval_id))


@app.get(
    "/retrievals",
    summary="Retrieval attempts, newest first",
    responses={
        200: {"description": "a page of attempts", "content": {"application/json": {"model": RetrievalList}}},
        400: {"description": "invalid request", "content": {"application/json": {"model": ErrorBody}}},
    },
)
def list_retrievals(
    status: Annotated[ExecutionStatus | None, Query(description="only attempts in this status")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="at most this many (default 20)")] = 20,
    nextToken: Annotated[
        str | None, Query(min_length=1, max_length=1024, description="the previous page's nextToken")
    ] = None,
) -> Response[str]:
    return _json(200, service().list(status.value if status else None, limit, nextToken))


@app.delete(
    "/retrievals/<retrieval_id>",
    summary="Cancel a running retrieval: its transfers stop, open uploads are aborted, a CANCELLED manifest",
    responses={
        202: {"description": "cancelled", "content": {"application/json": {"model": Retrieval}}},
        404: {"description": "no such retrieval", "content": {"application/json": {"model": ErrorBody}}},
        409: {"description": "already ended", "content": {"application/json": {"model": ErrorBody}}},
    },
)
def cancel_retrieval(
    retrieval_id: Annotated[str, Path(description="the retrieval id (= the Polyv taskId)")],
) -> Response[str]:
    retrieval = service().cancel(retrieval_id)
    logger.info("retrieval cancelled", extra={"taskId": retrieval_id})
    return _json(202, retrieval)


# --- errors: every refusal names its problem ------------------------------------------------------------


@app.exception_handler(RequestValidationError)
def _invalid_request(exc: RequestValidationError) -> Response[str]:
    problems = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            problems.append("the body is not valid JSON")
            continue
        location = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body",))
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        problems.append(f"{location}: {message}" if location else message)
    return _json(400, {"message": "; ".join(problems) or "invalid request"})


@app.exception_handler(errors.InvalidInput)
def _invalid_input(exc: errors.InvalidInput) -> Response[str]:
    return _json(400, {"message": str(exc)})


@app.exception_handler(errors.RetrievalConflict)
def _conflict(exc: errors.RetrievalConflict) -> Response[str]:
    return _json(409, {"message": str(exc)})


@app.exception_handler(errors.RetrievalNotFound)
def _not_found(exc: errors.RetrievalNotFound) -> Response[str]:
    return _json(404, {"message": str(exc)})


@app.exception_handler(errors.PolyvBusinessError)
def _polyv_refused(exc: errors.PolyvBusinessError) -> Response[str]:
    return _json(400, {"message": exc.describe()})


@app.exception_handler(errors.RetrieverError)
def _upstream(exc: errors.RetrieverError) -> Response[str]:
    logger.warning("request failed upstream", extra={"error": exc.name, "detail": str(exc)})
    return _json(503 if exc.retryable else 502, {"message": exc.describe()})


@observability.instrumented("Api")
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # The idempotency record of a request whose invocation dies expires with the invocation.
    runtime.IDEMPOTENCY_CONFIG.register_lambda_context(context)
    return app.resolve(event, context)


def openapi_document() -> str:
    """The API's OpenAPI description, from the same models and routes that validate requests
    (`make openapi` writes it to infra/openapi.json; a test keeps the two in step)."""
    return app.get_openapi_json_schema(
        title="polyv-retriever",
        version="1.0.0",
        summary="Retrieve Polyv source files into your own S3 bucket",
        description="REST API behind IAM auth (SigV4). Retrieval ids are Polyv taskIds.",
    )
