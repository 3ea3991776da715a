"""Every S3 and Step Functions call of the core raises the project's named error (issue 9, item 12): for an
AWS error answer (a real moto server) and for no answer at all (a real botocore client aimed at a port where
nothing listens). S3 failures are StorageError, Step Functions failures OrchestrationError, EventBridge's
EventNotDelivered (Finalize's Retry retries it), never a raw botocore exception, and the message names the
call."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import boto3
import pytest
from botocore.config import Config

from polyv_retriever import errors, observability
from polyv_retriever.pipeline.cancel import Canceller
from polyv_retriever.pipeline.executions import StateMachine
from polyv_retriever.pipeline.records import RetrievalLayout, S3RecordStore
from polyv_retriever.transfer.s3_multipart import S3Destination, UploadedPart
from tests.fakes import InMemoryRecords

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

TASK_ID = "16661c08b9564c1ea6f4544ccd568e58"
NO_RETRIES = Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=1, read_timeout=1)


def _nothing_listens() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"  # closed again: connections are refused


@pytest.fixture
def dead_s3() -> S3Client:
    return boto3.client("s3", endpoint_url=_nothing_listens(), config=NO_RETRIES)


@pytest.fixture
def dead_sfn() -> Any:
    return boto3.client("stepfunctions", endpoint_url=_nothing_listens(), config=NO_RETRIES)


def _s3_calls(s3: S3Client, bucket: str) -> dict[str, Callable[[], object]]:
    records = S3RecordStore(s3, bucket)
    dest = S3Destination(s3, bucket, "k.mp4")
    part = UploadedPart(1, '"e"', 0, 1)
    return {
        "PutObject": lambda: records.put_json("a.json", {}),
        "GetObject": lambda: records.get_json("a.json"),
        "ListObjectsV2": lambda: records.list_json("x/"),
        "HeadObject": dest.existing,
        "PutObject (empty)": lambda: dest.put_empty({}, "video/mp4"),
        "CreateMultipartUpload": lambda: dest.create({}, "video/mp4"),
        "UploadPart": lambda: dest.upload_part("u", 1, b"x", 0),
        "ListParts": lambda: dest.list_parts("u"),
        "CompleteMultipartUpload": lambda: dest.complete("u", [part], 0),
        "DeleteObject": dest.delete_object,
        "PutObject (journal)": lambda: dest.remember({}),
        "GetObject (journal)": dest.recall,
    }


S3_CALLS = list(_s3_calls(boto3.client("s3", region_name="us-east-1"), "b"))


@pytest.mark.parametrize("call", S3_CALLS)
def test_an_s3_call_without_an_answer_is_a_storage_error(dead_s3: S3Client, call: str) -> None:
    with pytest.raises(errors.StorageError) as caught:
        _s3_calls(dead_s3, "bucket")[call]()
    assert "EndpointConnectionError (no answer from the service)" in str(caught.value)
    assert caught.value.retryable


# HEAD answers a missing bucket with a bare 404, which is also how it says "no such object" (None).
@pytest.mark.parametrize("call", [c for c in S3_CALLS if c != "HeadObject"])
def test_an_s3_error_answer_is_a_storage_error_naming_the_code(s3: S3Client, call: str) -> None:
    missing = f"missing-{uuid.uuid4().hex[:12]}"
    with pytest.raises(errors.StorageError, match="NoSuchBucket"):
        _s3_calls(s3, missing)[call]()


def _sfn_calls(machine: StateMachine) -> dict[str, Callable[[], object]]:
    return {
        "StartExecution": lambda: machine.start(f"{TASK_ID}.1", {"taskId": TASK_ID}),
        "DescribeExecution": lambda: machine.describe(f"{TASK_ID}.1"),
        "StopExecution": lambda: machine.stop(f"{TASK_ID}.1", "Cancelled", "test"),
        "ListExecutions": lambda: machine.list(None, 10, None),
    }


SFN_CALLS = list(_sfn_calls(StateMachine(boto3.client("stepfunctions", region_name="us-east-1"), "arn")))


@pytest.mark.parametrize("call", SFN_CALLS)
def test_a_step_functions_call_without_an_answer_is_an_orchestration_error(dead_sfn: Any, call: str) -> None:
    machine = StateMachine(dead_sfn, "arn:aws:states:us-east-1:123456789012:stateMachine:x")
    with pytest.raises(errors.OrchestrationError, match=f"Step Functions {call} failed: ") as caught:
        _sfn_calls(machine)[call]()
    assert not isinstance(caught.value, errors.StorageError)
    assert "no answer from the service" in str(caught.value)


def test_a_step_functions_error_answer_is_an_orchestration_error_not_an_s3_one() -> None:
    arn = f"arn:aws:states:us-east-1:123456789012:stateMachine:absent-{uuid.uuid4().hex[:8]}"
    machine = StateMachine(boto3.client("stepfunctions"), arn)
    with pytest.raises(errors.OrchestrationError, match="Step Functions StartExecution failed: "):
        machine.start(f"{TASK_ID}.1", {"taskId": TASK_ID})


SUMMARY = {"taskId": TASK_ID, "outcome": "COMPLETE", "counts": {"COPIED": 1}, "bytes": 1}


def test_a_completion_event_without_an_answer_is_event_not_delivered() -> None:
    events = boto3.client("events", endpoint_url=_nothing_listens(), config=NO_RETRIES)
    with pytest.raises(errors.EventNotDelivered, match=r"EventBridge PutEvents .*\(no answer") as caught:
        observability.announce_completion(events, SUMMARY, execution=None, started_at=None)
    assert caught.value.retryable


def test_a_completion_event_refused_by_eventbridge_is_event_not_delivered() -> None:
    events = boto3.client("events")  # the moto server: the bus does not exist
    with pytest.raises(errors.EventNotDelivered, match=r"EventBridge PutEvents \(completion event\) failed"):
        observability.announce_completion(events, SUMMARY, execution=None, started_at=None, bus="absent-bus")


def test_the_cancel_sweep_without_an_answer_is_a_storage_error(dead_s3: S3Client) -> None:
    canceller = Canceller(dead_s3, "bucket", InMemoryRecords(), cast(Any, None))
    with pytest.raises(errors.StorageError, match=r"S3 ListMultipartUploads p/t/ .*no answer"):
        canceller.abort_uploads(RetrievalLayout("p/", "t"))


@pytest.mark.parametrize(
    ("body", "why"), [(b"<html>", "is not JSON"), (b"\xff\xfe", "is not JSON"), (b"[1, 2]", "not an object")]
)
def test_a_record_that_is_not_a_json_object_is_a_named_error(
    s3: S3Client, bucket: str, body: bytes, why: str
) -> None:
    s3.put_object(Bucket=bucket, Key="p/_retrieval/videos/v.json", Body=body)
    records = S3RecordStore(s3, bucket)
    with pytest.raises(errors.CorruptRecord, match=why):
        records.get_json("p/_retrieval/videos/v.json")
    with pytest.raises(errors.CorruptRecord):
        records.list_json("p/_retrieval/videos/")
