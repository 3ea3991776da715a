"""The REST API (behind IAM auth): start a retrieval, see where one stands.

    POST /retrievals          {taskId} or {vids, expireDays}, optional prefix  -> 202 (started) / 200 (exists)
    GET  /retrievals/{id}     status, Polyv's view, per-video transfers, the result or the error

Request bodies are pydantic models, so validation and the OpenAPI document (infra/openapi.json, generated
by ``make openapi``) are one thing. Every refusal is a 4xx whose ``message`` names the problem.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, model_validator

from polyv_retriever import errors, observability
from polyv_retriever.handlers import runtime
from polyv_retriever.pipeline.retrievals import RetrievalService

logger = runtime.logger
app = APIGatewayRestResolver(enable_validation=True)


class RetrievalRequest(BaseModel):
    """Either an existing Polyv task (``taskId``) or videos to create one for (``vids`` + ``expireDays``)."""

    model_config = ConfigDict(extra="forbid")

    taskId: str | None = Field(None, description="an existing source-file retrieval task (32 hex digits)")
    vids: list[str] | None = Field(None, description="1-100 Polyv video ids: a task is created for them")
    expireDays: int | None = Field(None, description="with vids: 1-7 days the thawed files stay downloadable")
    prefix: str | None = Field(None, description="S3 key prefix for this retrieval (default 'polyv/')")

    @model_validator(mode="after")
    def _one_source(self) -> RetrievalRequest:
        if (self.taskId is None) == (self.vids is None):
            raise ValueError("give either taskId or vids (with expireDays), not both and not neither")
        if self.vids is not None and self.expireDays is None:
            raise ValueError("expireDays (1-7) is required with vids")
        if self.taskId is not None and self.expireDays is not None:
            raise ValueError("expireDays goes with vids, not with taskId")
        return self


class Retrieval(BaseModel):
    """Where a retrieval stands (see README, "The API")."""

    model_config = ConfigDict(extra="allow")

    retrievalId: str
    taskId: str
    status: str = Field(description="RUNNING | SUCCEEDED | FAILED | TIMED_OUT | ABORTED")
    destination: str


class ErrorBody(BaseModel):
    message: str


@cache
def service() -> RetrievalService:
    settings = runtime.settings()
    return RetrievalService(
        runtime.sfn(),
        settings.state_machine_arn,
        runtime.records(),
        settings.bucket_name,
        runtime.polyv_client,
    )


def _json(status: int, body: dict[str, Any], **headers: str) -> Response[str]:
    return Response(status, "application/json", json.dumps(body, ensure_ascii=False), headers=headers or None)


@app.post(
    "/retrievals",
    summary="Start retrieving a Polyv task's source files into S3",
    responses={
        202: {"description": "started", "content": {"application/json": {"model": Retrieval}}},
        200: {
            "description": "already started for this task",
            "content": {"application/json": {"model": Retrieval}},
        },
        400: {"description": "invalid request", "content": {"application/json": {"model": ErrorBody}}},
        502: {
            "description": "Polyv refused the task creation",
            "content": {"application/json": {"model": ErrorBody}},
        },
    },
)
def start_retrieval(request: Annotated[RetrievalRequest, Body()]) -> Response[str]:
    started, retrieval = service().start(
        task_id=request.taskId, vids=request.vids, expire_days=request.expireDays, prefix=request.prefix
    )
    logger.info("retrieval requested", extra={"taskId": retrieval["taskId"], "started": started})
    return _json(202 if started else 200, retrieval, Location=retrieval["links"]["self"])


@app.get(
    "/retrievals/<retrieval_id>",
    summary="Where a retrieval stands",
    responses={
        200: {"description": "the retrieval", "content": {"application/json": {"model": Retrieval}}},
        404: {"description": "no such retrieval", "content": {"application/json": {"model": ErrorBody}}},
    },
)
def get_retrieval(
    retrieval_id: Annotated[str, Path(description="the retrieval id (= the Polyv taskId)")],
) -> Response[str]:
    return _json(200, service().describe(retrieval_id))


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
