"""What an operator gets from a retrieval on the local stack: the completion event (captured the way a user's
own rule would capture it), the notice for people, EMF metrics and log lines with their context."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from polyv_retriever.pipeline.polling import transfer_execution_name
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e
MiB = 1024 * 1024
SECRETS = ("emulator-secret", "auth_key", "sign=")


def client(stack: Stack, service: str) -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=stack.info["awsEndpoint"],
        region_name="us-east-1",
        aws_access_key_id="e2e",
        aws_secret_access_key="e2e",
    )


def drain(sqs: Any, queue_url: str, about: str, timeout: float = 20) -> list[str]:
    """Messages from the queue until one mentions ``about`` (others' messages may come first)."""
    bodies: list[str] = []
    deadline = time.monotonic() + timeout
    while not any(about in body for body in bodies) and time.monotonic() < deadline:
        answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in answer.get("Messages", []):
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def json_lines(text: str) -> Iterator[dict[str, Any]]:
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                yield json.loads(line)
            except ValueError:
                continue


@pytest.fixture(scope="module")
def finished(stack: Stack) -> dict[str, Any]:
    """One PARTIAL retrieval (one video copied after a download 5xx, one failed by Polyv), with a user's rule
    capturing the project's events into a queue of their own."""
    events, sqs = client(stack, "events"), client(stack, "sqs")
    queue = sqs.create_queue(QueueName="my-pipeline")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    # The README's example rule, as a user would put it.
    events.put_rule(
        Name="my-pipeline",
        EventPattern=json.dumps({"source": ["polyv-retriever"], "detail-type": ["Retrieval Completed"]}),
    )
    events.put_targets(Rule="my-pipeline", Targets=[{"Id": "queue", "Arn": queue_arn}])

    task_id = stack.task(
        [
            {"vid": "ops-ok", "size": 12 * MiB, "outcome": "SUCCESS", "readyAfter": 800},
            {"vid": "ops-bad", "size": MiB, "outcome": "FAIL", "readyAfter": 400},
        ]
    )
    # One download and one Polyv API call answer 503: retried, logged and counted (Retries, PolyvErrors).
    stack.emulator("POST", "faults", {"dl_5xx": 1, "api_5xx": 1})
    status, _ = stack.api("POST", "/retrievals", {"taskId": task_id, "prefix": "ops/"})
    assert status == 202
    done = stack.wait(task_id)
    events_seen = [json.loads(b) for b in drain(sqs, queue, task_id)]
    return {"taskId": task_id, "done": done, "events": events_seen, "sqs": sqs}


def test_the_completion_event_reaches_a_users_rule_with_what_a_pipeline_needs(
    stack: Stack, finished: dict[str, Any]
) -> None:
    task_id = finished["taskId"]
    mine = [e for e in finished["events"] if e["detail"]["taskId"] == task_id]
    assert len(mine) == 1, finished["events"]
    (event,) = mine
    assert (event["source"], event["detail-type"]) == ("polyv-retriever", "Retrieval Completed")
    detail = event["detail"]
    assert detail["outcome"] == "PARTIAL"
    assert {k: n for k, n in detail["counts"].items() if n} == {"COPIED": 1, "POLYV_FAIL": 1}
    assert detail["bytes"] == 12 * MiB
    assert detail["manifest"] == f"s3://{stack.bucket}/ops/{task_id}/manifest.json"
    assert detail["execution"] == f"{task_id}.1"  # the retrieval's first attempt
    assert 0 < detail["durationSeconds"] < 120
    assert detail == {**detail, **{k: v for k, v in finished["done"]["result"].items() if k in detail}}
    assert not any(secret in json.dumps(event) for secret in SECRETS)


def test_people_get_a_one_line_notice_through_the_templates_rule(
    stack: Stack, finished: dict[str, Any]
) -> None:
    task_id = finished["taskId"]
    notices = [
        json.loads(body)
        for body in drain(finished["sqs"], stack.info["notificationQueueUrl"], task_id)
        if task_id in body
    ]
    assert notices == [
        f"polyv-retriever: retrieval {task_id} finished PARTIAL: 1 copied, 0 already there, 0 failed, "
        f"1 failed on Polyv; {12 * MiB} bytes. Manifest: s3://{stack.bucket}/ops/{task_id}/manifest.json"
    ]


def test_the_functions_emit_emf_metrics_with_low_cardinality_dimensions(
    stack: Stack, finished: dict[str, Any]
) -> None:
    # A retrieval run again: its intact video is SKIPPED (and counted so), not copied again. (A task of its
    # own: the fixture's attempt 1 is what the log test reads.)
    again = stack.task([{"vid": "ops-again", "size": MiB, "outcome": "SUCCESS", "readyAfter": 100}])
    assert stack.api("POST", "/retrievals", {"taskId": again, "prefix": "ops/"})[0] == 202
    stack.wait(again)
    assert stack.api("POST", "/retrievals", {"taskId": again, "rerun": True})[0] == 202
    assert stack.wait(again)["result"]["counts"]["SKIPPED"] == 1
    records = [r for r in json_lines(stack.log.read_text()) if "_aws" in r]
    seen: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        directive = record["_aws"]["CloudWatchMetrics"][0]
        assert directive["Namespace"] == "PolyvRetriever"
        for dimensions in directive["Dimensions"]:
            assert set(dimensions) <= {"service", "function", "Outcome", "ErrorName", "Reason"}
            assert all(len(str(record[d])) < 32 for d in dimensions)  # never a task id or a vid
        for metric in directive["Metrics"]:
            seen.setdefault(metric["Name"], []).append(record)
    expected = {"BytesCopied", "TransferSeconds", "Throughput", "UrlRefreshes", "Videos", "Polls"}
    expected |= {"PollsPerTask", "Retrievals", "RetrievalBytes", "Retries", "PolyvErrors"}
    assert expected <= set(seen)
    outcomes = {r["Outcome"] for r in seen["Videos"]}
    assert {"COPIED", "SKIPPED", "POLYV_FAIL"} <= outcomes
    assert "PolyvUnavailable" in {r["ErrorName"] for r in seen["PolyvErrors"]}
    # The download's part retries are this series (README, Metrics): the Transfer's, by the reason.
    assert ("Transfer", "SourceUnavailable") in {(r["function"], r["Reason"]) for r in seen["Retries"]}
    assert {r["function"] for r in seen["BytesCopied"]} == {"Transfer"}
    assert not any(secret in json.dumps(records) for secret in SECRETS)


def test_every_log_line_of_the_retrievals_invocations_carries_task_vid_and_execution(
    stack: Stack, finished: dict[str, Any]
) -> None:
    task_id = finished["taskId"]
    lines = [r for r in json_lines(stack.log.read_text()) if r.get("taskId") == task_id and "level" in r]
    by_function: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        by_function.setdefault(line["function"], []).append(line)
    assert {"Api", "CheckStatus", "Transfer", "Finalize"} <= set(by_function)
    for function in ("CheckStatus", "Finalize"):
        for line in by_function[function]:
            assert line["execution"] == f"{task_id}.1", line
    for line in by_function["Transfer"]:  # each video's transfer is an execution of its own
        assert line["execution"] == transfer_execution_name(task_id, 1, "ops-ok"), line
    for line in by_function["Transfer"]:
        assert line["vid"] == "ops-ok", line
    # the retried download (sec's backoff policy logs it), with the same keys and no query string
    retry = [line for line in by_function["Transfer"] if line["message"].startswith("retrying ")]
    assert retry
    assert "?" not in retry[0]["retry_url"]


def test_a_failed_retrieval_is_announced_with_its_error_name_but_no_completion_notice(
    stack: Stack, finished: dict[str, Any]
) -> None:
    """FAILED goes to machines as an event; people hear of it from the execution-status rule (AWS only)."""
    sqs = finished["sqs"]
    queue = sqs.get_queue_url(QueueName="my-pipeline")["QueueUrl"]
    task_id = stack.task([{"vid": "ops-creds", "size": MiB, "outcome": "SUCCESS", "readyAfter": 100}])
    stack.emulator("POST", "apps", {"appId": "emulatorApp", "secret": "rotated-on-polyv"})
    try:
        stack.api("POST", "/retrievals", {"taskId": task_id})
        done = stack.wait(task_id)
    finally:
        stack.emulator("POST", "apps", {"appId": "emulatorApp", "secret": "emulator-secret"})
    assert done["status"] == "FAILED"

    events = [json.loads(b) for b in drain(sqs, queue, task_id)]
    (detail,) = [e["detail"] for e in events if e["detail"]["taskId"] == task_id]
    assert detail["outcome"] == "FAILED"
    assert detail["error"] == {"name": "InvalidSignature"}
    assert not any(detail["counts"].values())
    notices = drain(sqs, stack.info["notificationQueueUrl"], task_id, timeout=3)
    assert not [n for n in notices if task_id in n]
