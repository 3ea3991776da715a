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

import base64
import binascii
import json
import sys
from functools import cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import APIKey
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, model_validator

from polyv_retriever import errors, observability
from polyv_retriever.contracts import RetrievalOptions
from polyv_retriever.handlers import idempotency, runtime
from polyv_retriever.pipeline import creation
from polyv_retriever.pipeline.retrievals import RetrievalService
from polyv_retriever.polyv.models import MAX_VIDS_PER_TASK
from polyv_retriever.vocabulary import ExecutionStatus, StorageClass

logger = runtime.logger
app = APIGatewayRestResolver(enable_validation=True)


class ApiError(BaseModel):
    """Every 4xx/5xx body of the API: the one shape its refusals answer and its OpenAPI document names."""

    message: str = Field(description="what is wrong, naming the field or the retrieval")


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


class RetrievalGroup(BaseModel):
    """The answer to more than 100 vids: one retrieval per Polyv task of at most 100."""

    retrievals: list[Retrieval]


def _error(description: str) -> OpenAPIResponse:
    return {"description": description, "content": {"application/json": {"model": ApiError}}}


def _answers(specific: dict[int, OpenAPIResponse]) -> dict[int, OpenAPIResponse]:
    """An operation's documented answers: its own, and those every operation can give (each one body)."""
    return {
        **specific,
        400: specific.get(400, _error("the request is malformed: the message names the problem")),
        403: _error("API Gateway's IAM auth refused the request: unsigned, badly signed or not permitted"),
        502: _error("a service behind the API failed in a way a retry does not fix"),
        503: _error("a service behind the API (S3, Step Functions, SSM, Polyv) is unavailable: retry"),
    }


#: IAM auth (SigV4), in the form API Gateway's OpenAPI import understands; every operation requires it.
SIGV4 = "sigv4"
_SECURITY: list[dict[str, list[str]]] = [{SIGV4: []}]


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
    security=_SECURITY,
    responses=_answers(
        {
            202: {
                "description": "started: the retrieval, or for more than 100 vids one per Polyv task",
                "content": {"application/json": {"model": Retrieval | RetrievalGroup}},
            },
            200: {
                "description": "already started for this task",
                "content": {"application/json": {"model": Retrieval}},
            },
            400: _error(
                "invalid request, or Polyv refused the task's creation: the message names the problem"
            ),
            409: _error(
                "conflicts with the retrieval's state, or an Idempotency-Key reused with another body"
            ),
        }
    ),
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

    guarded = idempotency.idempotent(create)
    key = {
        "key": f"header:{idempotency_key}" if idempotency_key else f"body:{fingerprint}",
        "fingerprint": fingerprint,
    }
    created = creation.wait_for_other_request(lambda: guarded(request=key), idempotency.IdempotencyInProgress)
    retrievals = [service().describe(task_id) for task_id in created["taskIds"]]
    logger.info("retrievals created", extra={"taskIds": created["taskIds"]})
    if len(vids) > MAX_VIDS_PER_TASK:
        return _json(202, {"retrievals": retrievals})
    return _json(202, retrievals[0], Location=retrievals[0]["links"]["self"])


@app.get(
    "/retrievals/<retrieval_id>",
    summary="Where a retrieval stands (its latest attempt, and the others)",
    security=_SECURITY,
    responses=_answers(
        {
            200: {"description": "the retrieval", "content": {"application/json": {"model": Retrieval}}},
            400: _error("the id is not a taskId (Polyv's are 32 hex digits)"),
            404: _error("no such retrieval"),
        }
    ),
)
def get_retrieval(
    retrieval_id: Annotated[str, Path(description="the retrieval id (= the Polyv taskId)")],
) -> Response[str]:
    return _json(200, service().describe(retrieval_id))


@app.get(
    "/retrievals",
    summary="Retrieval attempts, newest first",
    security=_SECURITY,
    responses=_answers(
        {
            200: {
                "description": "a page of attempts",
                "content": {"application/json": {"model": RetrievalList}},
            }
        }
    ),
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
    security=_SECURITY,
    responses=_answers(
        {
            202: {"description": "cancelled", "content": {"application/json": {"model": Retrieval}}},
            400: _error("the id is not a taskId (Polyv's are 32 hex digits)"),
            404: _error("no such retrieval"),
            409: _error("already ended"),
        }
    ),
)
def cancel_retrieval(
    retrieval_id: Annotated[str, Path(description="the retrieval id (= the Polyv taskId)")],
) -> Response[str]:
    retrieval = service().cancel(retrieval_id)
    logger.info("retrieval cancelled", extra={"taskId": retrieval_id})
    return _json(202, retrieval)


# --- errors: every refusal names its problem ------------------------------------------------------------


def _refusal(status: int, message: str) -> Response[str]:
    return _json(status, ApiError(message=message).model_dump())


@app.exception_handler(RequestValidationError)
def _invalid_request(exc: RequestValidationError) -> Response[str]:
    problems = []
    for error in exc.errors():
        where = [str(part) for part in error.get("loc", ())]
        # A field is named by its path; a problem of the body as a whole (missing, not an object) says so.
        location = (".".join(where[1:]) or "the body") if where[:1] == ["body"] else ".".join(where)
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        problems.append(f"{location}: {message}" if location else message)
    return _refusal(400, "; ".join(problems) or "invalid request")


@app.exception_handler(errors.InvalidInput)
def _invalid_input(exc: errors.InvalidInput) -> Response[str]:
    return _refusal(400, str(exc))


@app.exception_handler(errors.RetrievalConflict)
def _conflict(exc: errors.RetrievalConflict) -> Response[str]:
    return _refusal(409, str(exc))


@app.exception_handler(errors.RetrievalNotFound)
def _not_found(exc: errors.RetrievalNotFound) -> Response[str]:
    return _refusal(404, str(exc))


@app.exception_handler(errors.PolyvBusinessError)
def _polyv_refused(exc: errors.PolyvBusinessError) -> Response[str]:
    return _refusal(400, exc.describe())


@app.exception_handler(errors.RetrieverError)
def _upstream(exc: errors.RetrieverError) -> Response[str]:
    logger.warning("request failed upstream", extra={"error": exc.name, "detail": str(exc)})
    return _refusal(503 if exc.retryable else 502, exc.describe())


# --- the body, read before the router sees it --------------------------------------------------------------


class BadBody(ValueError):
    """A request body that is not one strict UTF-8 JSON document (the message names what is wrong)."""


def _content_type(headers: dict[str, str] | None) -> str | None:
    # Header names are case-insensitive; API Gateway passes them as the client sent them.
    for name, value in (headers or {}).items():
        if name.lower() == "content-type":
            return value
    return None


def _check_media_type(content_type: str | None) -> None:
    if content_type is None:
        return  # no Content-Type: the body is read as JSON, as Powertools and API Gateway do
    media_type, *parameters = (part.strip() for part in content_type.split(";"))
    if media_type.lower() != "application/json":
        raise BadBody(f"Content-Type {content_type!r} is not accepted: the body must be application/json")
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise BadBody(f"Content-Type {content_type!r}: the body must be UTF-8")


def _reject_constant(name: str) -> Any:
    # Python's json reads NaN and Infinity; JSON (RFC 8259) has no such numbers.
    raise BadBody(f"the body is not valid JSON: {name} is not a JSON number")


def _json_text(event: dict[str, Any]) -> str | None:
    """The body as the text of one JSON document; BadBody naming the problem for anything else.

    Powertools would parse the body itself, by content type: a multipart body without a boundary, nesting
    deeper than the interpreter's recursion limit and an integer of more than 4,300 digits each escape it
    as an exception (a 502 from API Gateway), other media types get its own 415 shape. So the body is
    checked here, by the same parser, with those failures caught; the router then parses a known-good text.
    """
    body = event.get("body")
    if body is None or body == "":
        return None
    _check_media_type(_content_type(event.get("headers")))
    try:
        # Base64 when API Gateway treats the media type as binary; strict UTF-8 either way (a str body may
        # carry lone surrogates from a non-UTF-8 request, which encode() refuses).
        data = base64.b64decode(body, validate=True) if event.get("isBase64Encoded") else body.encode()
        text = data.decode("utf-8")
    except (binascii.Error, UnicodeError):
        raise BadBody("the body is not UTF-8 text") from None
    try:
        json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise BadBody(f"the body is not valid JSON: {exc.msg} at character {exc.pos}") from None
    except RecursionError:
        raise BadBody(
            "the body is nested too deeply: no request of this API nests more than a few levels"
        ) from None
    except BadBody:
        raise
    except ValueError:  # the only other one: an integer longer than the interpreter converts
        limit = sys.get_int_max_str_digits()
        raise BadBody(
            f"the body has a number of more than {limit} digits: no field of this API takes one"
        ) from None
    return text


def _checked_event(event: dict[str, Any]) -> dict[str, Any]:
    """The event with its body as checked text, marked application/json, for the router to parse."""
    text = _json_text(event)
    if text is None:
        return event
    headers = {k: v for k, v in (event.get("headers") or {}).items() if k.lower() != "content-type"}
    multi = {k: v for k, v in (event.get("multiValueHeaders") or {}).items() if k.lower() != "content-type"}
    return {
        **event,
        "body": text,
        "isBase64Encoded": False,
        "headers": {**headers, "Content-Type": "application/json"},
        "multiValueHeaders": {**multi, "Content-Type": ["application/json"]},
    }


@observability.instrumented("Api")
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # The idempotency record of a request whose invocation dies expires with the invocation.
    idempotency.IDEMPOTENCY_CONFIG.register_lambda_context(context)
    try:
        checked = _checked_event(event)
    except BadBody as exc:
        # Outside the router: the same one error shape its exception handlers answer.
        return {
            "statusCode": 400,
            "multiValueHeaders": {"Content-Type": ["application/json"]},
            "body": json.dumps(ApiError(message=str(exc)).model_dump(), ensure_ascii=False),
            "isBase64Encoded": False,
        }
    return app.resolve(checked, context)


def openapi_document() -> str:
    """The API's OpenAPI description, from the same models and routes that validate requests
    (`make openapi` writes it to infra/openapi.json; a test keeps the two in step)."""
    document = json.loads(
        app.get_openapi_json_schema(
            title="polyv-retriever",
            version="1.0.0",
            summary="Retrieve Polyv source files into your own S3 bucket",
            description="REST API behind IAM auth (SigV4). Retrieval ids are Polyv taskIds.",
            security_schemes={
                SIGV4: APIKey.model_validate(
                    {
                        "name": "Authorization",
                        "in": "header",
                        "description": "AWS Signature Version 4 (IAM), e.g. awscurl --service execute-api",
                        "openapi_extensions": {"x-amazon-apigateway-authtype": "awsSigv4"},
                    }
                )
            },
        )
    )
    # Powertools documents its own 422 on every validated operation; this API answers 400 (the error
    # handlers above), so its 422 and the schemas only its validation errors use are taken out.
    for operation in (op for path in document["paths"].values() for op in path.values()):
        del operation["responses"]["422"]
    schemas = document["components"]["schemas"]
    for unused in ("HTTPValidationError", "ResponseValidationError", "ValidationError"):
        del schemas[unused]
    return json.dumps(document, indent=2, ensure_ascii=False)
