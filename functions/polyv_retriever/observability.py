"""Observability in one place: log context, EMF metrics, X-Ray traces and the retrieval's completion event.

Handlers get all of it from one decorator, ``instrumented``; core code calls the small helpers below
(``metric``, ``carry_context``) and never Powertools directly. Outside a Lambda invocation
(the CLI, unit tests) metrics are not emitted and tracing is off, so the same core stays quiet there.

Why a context variable instead of Powertools' ``append_keys``: the keys must reach every line of an
invocation, the transfer's worker threads included, and on the local stack several invocations share one
process at once; ``append_keys`` is process-wide, so concurrent invocations would stamp each other's lines.
A worker thread sees the invocation's context when it is started through ``carry_context``.

Secrets: nothing here takes a URL, a query string or a credential. Tracing patches only boto3/botocore
(never the HTTP clients that carry Polyv's signed URLs), and the handlers' responses are not captured.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from polyv_retriever.aws_errors import AWS_ERRORS, events_error
from polyv_retriever.errors import EventNotDelivered, RetrieverError
from polyv_retriever.vocabulary import LANDED, TransferStatus

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

SOURCE = "polyv-retriever"
COMPLETED = "Retrieval Completed"
DEFAULT_NAMESPACE = "PolyvRetriever"

# Service name and level from the POWERTOOLS_* variables template.yaml sets; the CLI has none of them.
logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or SOURCE)


def _lambda_tracer() -> Tracer | None:
    """Powertools' Tracer where traces are sent: in a Lambda function (LAMBDA_TASK_ROOT is set). Elsewhere
    (the CLI, the local stack, tests) Powertools would disable it anyway, but creating it there still imports
    the X-Ray SDK, whose recorder outside Lambda builds two botocore clients for centralised sampling:
    ~0.3 CPU s added to every CLI run for nothing. Only AWS SDK calls become subsegments: urllib3 (Polyv's
    API, the CDN's signed URLs) is never patched."""
    if not os.environ.get("LAMBDA_TASK_ROOT"):
        return None
    return Tracer(patch_modules=["boto3", "botocore"])


tracer = _lambda_tracer()

T = TypeVar("T")
Handler = Callable[[dict[str, Any], "LambdaContext"], dict[str, Any]]


@dataclass
class _Invocation:
    keys: dict[str, Any]
    metrics: EphemeralMetrics
    function: str
    lock: threading.Lock = field(default_factory=threading.Lock)


_current: contextvars.ContextVar[_Invocation | None] = contextvars.ContextVar("invocation", default=None)
_cold = True


class _InvocationKeys(logging.Filter):
    """Stamps every record of the logger with the current invocation's keys (task id, vid, execution,
    function, request id), whichever thread logs it."""

    def filter(self, record: logging.LogRecord) -> bool:
        invocation = _current.get()
        if invocation is not None:
            for name, value in invocation.keys.items():
                setattr(record, name, value)
        return True


logger.addFilter(_InvocationKeys())
# The package's standard-library loggers (``logging.getLogger(__name__)`` in the core, e.g. the retry
# policy's) write through the same JSON handler with the same keys, instead of the runtime's plain text.
logger.registered_handler.addFilter(_InvocationKeys())
# urllib3's own log lines carry whole URLs with their query: the CDN's signed auth_key ("Failed to parse
# headers (url=...)" on a malformed answer, every request at DEBUG) and Polyv's sign. In Lambda the
# runtime's root handler would print them, so they stop at urllib3's own (null) handler; our retry lines say
# what failed, without the query.
logging.getLogger("urllib3").propagate = False

#: The functions' JSON lines (what CloudWatch gets); the CLI swaps in plain lines while a command runs.
_FUNCTION_FORMATTER = logger.registered_handler.formatter
_package = logging.getLogger("polyv_retriever")
_package.addHandler(logger.registered_handler)
_package.setLevel(logger.log_level)
_package.propagate = False


def namespace() -> str:
    return os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE


def carry_context(target: Callable[[], T]) -> Callable[[], T]:
    """``target`` run in a copy of the caller's context: a worker thread started with it logs and counts as
    part of the invocation that started it (threads do not inherit context variables)."""
    return functools.partial(contextvars.copy_context().run, target)


def context_keys(event: Any, function: str) -> dict[str, Any]:
    """The keys every log line of an invocation carries, from the event the state machine or API sent."""
    keys: dict[str, Any] = {"function": function}
    if isinstance(event, dict):
        path = event.get("pathParameters") or {}
        task_id = event.get("taskId") or path.get("retrieval_id") or path.get("id")
        for name, value in (
            ("taskId", task_id),
            ("vid", event.get("vid")),
            ("execution", event.get("execution") or _execution_name(event)),
        ):
            if isinstance(value, str) and value:
                keys[name] = value
    return keys


def _execution_name(event: dict[str, Any]) -> str | None:
    """The execution invoking this function, from its event: the retrieval's attempt ``{taskId}.{attempt}``,
    or a video's transfer execution (the names the pipeline gives them, so no ASL has to pass them)."""
    from polyv_retriever.attempts import attempt_name
    from polyv_retriever.pipeline.polling import transfer_execution_name

    task_id, attempt, vid = event.get("taskId"), event.get("attempt", 1), event.get("vid")
    if not isinstance(task_id, str) or not isinstance(attempt, int) or "httpMethod" in event:
        return None
    return (
        transfer_execution_name(task_id, attempt, vid)
        if isinstance(vid, str)
        else attempt_name(task_id, attempt)
    )


def instrumented(function: str) -> Callable[[Handler], Handler]:
    """The decorator stack of every handler: log context, a trace of the invocation (without its response),
    the invocation's metrics flushed as one EMF record, and every project error counted by name."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def annotated(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
            # Inside the "## handler" subsegment: Lambda's own segment cannot take annotations.
            invocation = _current.get()
            for name in ("taskId", "vid", "execution"):
                if tracer is not None and invocation is not None and name in invocation.keys:
                    tracer.put_annotation(name, invocation.keys[name])
            return handler(event, context)

        traced = (
            annotated if tracer is None else tracer.capture_lambda_handler(capture_response=False)(annotated)
        )

        @functools.wraps(handler)
        def wrapper(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
            global _cold  # one flag per process: a cold start is per process
            _follow_environment()
            cold, _cold = _cold, False
            keys = context_keys(event, function)
            keys.update(function_request_id=getattr(context, "aws_request_id", None), cold_start=cold)
            metrics = EphemeralMetrics(namespace=namespace(), service=SOURCE)
            metrics.set_default_dimensions(function=function)
            invocation = _Invocation(keys, metrics, function)
            token = _current.set(invocation)
            try:
                answer: dict[str, Any] = traced(event, context)
                return answer
            except RetrieverError as exc:
                logger.info("invocation failed", extra={"error": exc.name, "retryable": exc.retryable})
                metric("Errors", 1, ErrorName=exc.name)
                raise
            finally:
                with invocation.lock:
                    if metrics.metric_set:
                        _emit(metrics)
                _current.reset(token)

        return wrapper

    return decorate


def metric(name: str, value: float, unit: MetricUnit = MetricUnit.Count, **dimensions: str) -> None:
    """Count or measure something for the current invocation. Dimensions stay low-cardinality (an outcome,
    an error name; never a vid or a task id): each distinct value is a metric billed by CloudWatch.
    A metric with dimensions of its own is emitted at once as its own EMF record."""
    invocation = _current.get()
    if invocation is None:
        return  # the CLI and unit tests: no EMF on stdout
    if dimensions:
        single = EphemeralMetrics(namespace=namespace(), service=SOURCE)
        single.set_default_dimensions(function=invocation.function, **dimensions)
        single.add_metric(name=name, unit=unit, value=value)
        _emit(single)
        return
    with invocation.lock:
        invocation.metrics.add_metric(name=name, unit=unit, value=value)


def _output() -> Any:
    """Where log lines and EMF records go: stdout, where Lambda's log capture finds them, unless the
    function's environment says stderr (the local stack: there stdout is the CLI's own output)."""
    return sys.stderr if os.environ.get("POLYV_RETRIEVER_FUNCTION_OUTPUT") == "stderr" else sys.stdout


@contextlib.contextmanager
def cli_output(*, quiet: bool) -> Iterator[None]:
    """The CLI's terminal, while a command runs: log lines (a retry and why, a warning) on stderr as plain
    lines, never among the results on stdout; with --quiet or --json only errors, so that --json's error
    stays the one object on stderr. (CloudWatch's JSON lines are the functions'.) Restored afterwards: the
    logger is the process's, and a test may run the CLI in-process."""
    handler = logger.registered_handler
    if not isinstance(handler, logging.StreamHandler):
        yield
        return
    saved = handler.stream, handler.formatter, logger.log_level, _package.level
    handler.setStream(sys.stderr)
    handler.setFormatter(logging.Formatter("polyv-retriever: %(message)s"))
    level = "ERROR" if quiet else "WARNING"
    logger.setLevel(level)
    _package.setLevel(level)
    try:
        yield
    finally:
        handler.setStream(saved[0])
        handler.setFormatter(saved[1])
        logger.setLevel(saved[2])
        _package.setLevel(saved[3])


def _follow_environment() -> None:
    """The log level and output as the function's environment says now: this module may be imported
    before the local stack sets them (in Lambda the two moments see the same environment)."""
    level = os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO").upper()
    if logger.log_level != logging.getLevelName(level):
        logger.setLevel(level)
        _package.setLevel(level)
    handler = logger.registered_handler
    if (
        _output() is sys.stderr
        and isinstance(handler, logging.StreamHandler)
        and handler.stream is not sys.stderr
    ):
        handler.setStream(sys.stderr)  # otherwise the stdout it was created with, as Lambda expects
    if handler.formatter is not _FUNCTION_FORMATTER:  # `run` hosts functions inside the CLI's output
        handler.setFormatter(_FUNCTION_FORMATTER)


def _emit(metrics: EphemeralMetrics) -> None:
    """One EMF record, where log lines go; none where the environment turns them off
    (POLYV_RETRIEVER_EMF=off: `polyv-retriever run` without --verbose, whose terminal is for people)."""
    if os.environ.get("POLYV_RETRIEVER_EMF") != "off":
        print(json.dumps(metrics.serialize_metric_set(), separators=(",", ":")), file=_output(), flush=True)
    metrics.clear_metrics()


def record_transfer(result: dict[str, Any]) -> None:
    """The Transfer handler's result -> bytes moved, seconds, throughput, URL refreshes."""
    summary = result.get("result") or {}
    moved, seconds = int(summary.get("bytesTransferred") or 0), float(summary.get("seconds") or 0)
    metric("BytesCopied", moved, MetricUnit.Bytes)
    metric("TransferSeconds", seconds, MetricUnit.Seconds)
    if moved and seconds > 0:
        metric("Throughput", moved / seconds / 1e6, MetricUnit.MegabytesPerSecond)
    metric("UrlRefreshes", int(summary.get("urlRefreshes") or 0))
    if result.get("status") in (TransferStatus.COPIED, TransferStatus.SKIPPED):
        metric("Videos", 1, Outcome=str(result["status"]))


def record_poll() -> None:
    metric("Polls", 1)


# --- the end of a retrieval -----------------------------------------------------------------------------


def completion_detail(
    summary: dict[str, Any], *, execution: str | None, started_at: float | None, now: float
) -> dict[str, Any]:
    """The event's detail: what a machine downstream needs, nothing it should not see (no URLs)."""
    detail: dict[str, Any] = {
        "taskId": summary["taskId"],
        "attempt": summary.get("attempt", 1),
        "execution": execution,
        "outcome": summary["outcome"],
        "counts": summary.get("counts", {}),
        "bytes": summary.get("bytes", 0),
        "manifest": summary.get("manifest"),
        "durationSeconds": round(now - started_at, 3) if started_at else None,
    }
    if summary.get("error"):
        detail["error"] = {"name": summary["error"].get("name")}
    return detail


def announce_completion(
    events: Any,
    summary: dict[str, Any],
    *,
    execution: str | None,
    started_at: float | None,
    polls: int | None = None,
    bus: str | None = None,
) -> dict[str, Any]:
    """The one place a finished retrieval is announced: the EventBridge event (``source`` polyv-retriever,
    ``detail-type`` Retrieval Completed) that users' rules and the template's notification rule match,
    and the retrieval's metrics. Raises EventNotDelivered (retried by the state machine) if the event was not
    accepted: a silent loss would leave a downstream pipeline waiting forever."""
    detail = completion_detail(summary, execution=execution, started_at=started_at, now=time.time())
    entry = {
        "Source": SOURCE,
        "DetailType": COMPLETED,
        "Detail": json.dumps(detail, ensure_ascii=False),
        "EventBusName": bus or os.environ.get("EVENT_BUS_NAME") or "default",
    }
    try:
        answer = events.put_events(Entries=[entry])
    except AWS_ERRORS as exc:  # no answer, or an error answer: the same retried error as a refused entry
        raise events_error("PutEvents (completion event)", exc) from exc
    if answer.get("FailedEntryCount"):
        failed = answer["Entries"][0]
        raise EventNotDelivered(
            f"EventBridge did not accept the completion event: {failed.get('ErrorCode')} "
            f"{failed.get('ErrorMessage')}"
        )
    counts = detail["counts"]
    for outcome, number in counts.items():  # COPIED and SKIPPED are counted as each transfer ends
        if number and outcome not in LANDED:
            metric("Videos", number, Outcome=str(outcome))
    metric("Retrievals", 1, Outcome=str(detail["outcome"]))
    metric("RetrievalBytes", detail["bytes"], MetricUnit.Bytes)
    if polls:
        metric("PollsPerTask", polls)
    logger.info("retrieval announced", extra={"outcome": detail["outcome"], "counts": counts})
    return detail
