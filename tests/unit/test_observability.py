"""The observability module: what an operator reads in the logs, the metrics and the completion event."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from polyv_retriever import errors, observability
from polyv_retriever.handlers import finalize, runtime
from polyv_retriever.local_stack.moto_server import LocalContext
from polyv_retriever.observability import carry_context, instrumented, logger, metric
from tests.fakes import FakeEvents, InMemoryRecords

TASK = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def lines() -> Iterator[list[dict[str, Any]]]:
    """Every record of the project's logger, formatted as it is in CloudWatch (JSON)."""
    captured: list[dict[str, Any]] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(json.loads(logger.registered_formatter.format(record)))

    handler = Collect()
    std = logging.getLogger(logger.name)
    std.addHandler(handler)
    yield captured
    std.removeHandler(handler)


def emf_records(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"_aws"' in line]


def emf_values(out: str) -> dict[str, tuple[float, dict[str, Any]]]:
    """metric name -> (its value, the record it came in) for every EMF record printed."""
    found = {}
    for record in emf_records(out):
        for declared in record["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
            value = record[declared["Name"]]
            found[declared["Name"]] = (sum(value) if isinstance(value, list) else value, record)
    return found


def test_every_line_of_an_invocation_carries_its_keys_worker_threads_included(
    lines: list[dict[str, Any]],
) -> None:
    @instrumented("Transfer")
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        logger.info("in the handler")
        worker = threading.Thread(target=carry_context(lambda: logger.info("in a worker")))
        worker.start()
        worker.join()
        return {}

    handler({"taskId": TASK, "vid": "v-1", "execution": "exec-1"}, LocalContext("Transfer", 10))

    assert [line["message"] for line in lines] == ["in the handler", "in a worker"]
    for line in lines:
        assert (line["taskId"], line["vid"], line["execution"], line["function"]) == (
            TASK,
            "v-1",
            "exec-1",
            "Transfer",
        )


def test_concurrent_invocations_in_one_process_do_not_stamp_each_others_lines(
    lines: list[dict[str, Any]],
) -> None:
    """The local stack runs several invocations in one process at once; each line keeps its own vid."""
    barrier = threading.Barrier(2)

    @instrumented("Transfer")
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        barrier.wait()  # both invocations are inside the handler before either logs
        logger.info("working", extra={"mine": event["vid"]})
        return {}

    threads = [
        threading.Thread(target=handler, args=({"taskId": TASK, "vid": vid}, LocalContext("T", 5)))
        for vid in ("a", "b")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(line["vid"] for line in lines) == ["a", "b"]
    assert all(line["vid"] == line["mine"] for line in lines)


def test_an_invocations_metrics_are_one_emf_record_with_low_cardinality_dimensions(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "TestSpace")

    @instrumented("Transfer")
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        observability.record_transfer(
            {
                "status": "COPIED",
                "result": {"bytesTransferred": 50_000_000, "seconds": 2.0, "urlRefreshes": 1},
            }
        )
        return {}

    handler({"taskId": TASK, "vid": "v-1"}, LocalContext("Transfer", 10))
    out = capsys.readouterr().out
    values = emf_values(out)
    assert values["BytesCopied"][0] == 50_000_000
    assert values["Throughput"][0] == 25.0
    assert values["UrlRefreshes"][0] == 1
    assert values["Videos"][0] == 1
    assert values["Videos"][1]["Outcome"] == "COPIED"
    # one record for the invocation's own metrics, one for the metric with a dimension of its own
    assert len(emf_records(out)) == 2
    for record in emf_records(out):
        directive = record["_aws"]["CloudWatchMetrics"][0]
        assert directive["Namespace"] == "TestSpace"
        dimensions = set(directive["Dimensions"][0])
        assert dimensions <= {"service", "function", "Outcome", "ErrorName", "Reason"}
        assert TASK not in json.dumps(directive)


def test_an_error_leaving_a_handler_is_counted_by_name_and_logged(
    capsys: pytest.CaptureFixture[str], lines: list[dict[str, Any]]
) -> None:
    @instrumented("CheckStatus")
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise errors.InvalidSignature(104, "invalid signature")

    with pytest.raises(errors.InvalidSignature):
        handler({"taskId": TASK}, LocalContext("CheckStatus", 10))
    counted, record = emf_values(capsys.readouterr().out)["Errors"]
    assert (counted, record["ErrorName"], record["function"]) == (1, "InvalidSignature", "CheckStatus")
    assert lines[-1]["error"] == "InvalidSignature"


def test_outside_an_invocation_nothing_is_emitted(capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI runs the same core: it must not print EMF records among its output."""
    metric("BytesCopied", 1)
    metric("Videos", 1, Outcome="COPIED")
    assert capsys.readouterr().out == ""


def test_finalize_announces_the_retrieval_once_with_what_a_pipeline_needs(
    records: InMemoryRecords, events: FakeEvents, capsys: pytest.CaptureFixture[str]
) -> None:
    event = {
        "taskId": TASK,
        "prefix": "p/",
        "attempt": 2,
        "options": {},
        "only": None,
        "poll": {
            "done": True,
            "count": 7,
            "startedAt": 1.0,
            "waitSeconds": 0,
            "polyvFailed": ["bad"],
            "videos": {
                "a": {"state": "COPIED", "size": 4, "key": f"p/{TASK}/a.mp4"},
            },
        },
    }
    finalize.handler(event, LocalContext("Finalize", 60))

    (entry,) = events.entries
    assert (entry["Source"], entry["DetailType"], entry["EventBusName"]) == (
        "polyv-retriever",
        "Retrieval Completed",
        "default",
    )
    detail = json.loads(entry["Detail"])
    assert detail["taskId"] == TASK
    assert detail["outcome"] == "PARTIAL"
    assert {k: v for k, v in detail["counts"].items() if v} == {"COPIED": 1, "POLYV_FAIL": 1}
    assert detail["attempt"] == 2
    assert detail["bytes"] == 4
    assert detail["manifest"] == f"s3://bkt/p/{TASK}/manifest.json"
    assert detail["execution"] == f"{TASK}.2"
    assert detail["durationSeconds"] > 0
    metrics = emf_values(capsys.readouterr().out)
    assert metrics["PollsPerTask"][0] == 7
    assert (metrics["Retrievals"][1]["Outcome"], metrics["Videos"][1]["Outcome"]) == ("PARTIAL", "POLYV_FAIL")


def test_an_event_eventbridge_refuses_is_a_named_retryable_error(
    records: InMemoryRecords, events: FakeEvents, monkeypatch: pytest.MonkeyPatch
) -> None:
    events.refuse = True
    monkeypatch.setenv("EVENT_BUS_NAME", "team-bus")
    with pytest.raises(errors.EventNotDelivered, match="InternalException"):
        finalize.handler({"taskId": TASK, "prefix": "p/", "transfers": []}, LocalContext("Finalize", 60))
    assert errors.EventNotDelivered("x").retryable
    assert runtime.events() is events


def test_the_cores_standard_loggers_write_json_lines_with_the_same_keys() -> None:
    """e.g. the retry policy's ``logging.getLogger(__name__)``: the same JSON handler, the same context."""
    stream = io.StringIO()
    previous = logger.registered_handler.setStream(stream)  # type: ignore[attr-defined]

    @instrumented("Transfer")
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        worker = threading.Thread(
            target=carry_context(lambda: logging.getLogger("polyv_retriever.retry").warning("retrying x"))
        )
        worker.start()
        worker.join()
        return {}

    try:
        handler({"taskId": TASK, "vid": "v-2", "execution": "e-2"}, LocalContext("Transfer", 10))
    finally:
        logger.registered_handler.setStream(previous)  # type: ignore[attr-defined]
    (line,) = [json.loads(text) for text in stream.getvalue().splitlines() if "retrying x" in text]
    assert (line["level"], line["taskId"], line["vid"], line["execution"]) == ("WARNING", TASK, "v-2", "e-2")


@pytest.mark.parametrize("in_lambda", [False, True])
def test_the_xray_sdk_is_loaded_only_where_traces_are_sent(in_lambda: bool) -> None:
    """Outside Lambda (the CLI, the local stack) tracing is off and the X-Ray SDK is not even imported: its
    recorder builds two botocore clients at import, a third of a CPU second on every `copy`."""
    env = {k: v for k, v in os.environ.items() if k != "LAMBDA_TASK_ROOT"}
    if in_lambda:
        env["LAMBDA_TASK_ROOT"] = "/var/task"
    probe = (
        "import sys; import polyv_retriever.cli.main, polyv_retriever.handlers.transfer as t; "
        "print('aws_xray_sdk.core' in sys.modules, t.observability.tracer is not None)"
    )
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(in_lambda), str(in_lambda)]
