"""X-Ray traces, as the functions send them in Lambda: every segment document is read and searched for
secrets, the way the logs are. The handlers run in a process that looks like Lambda to Powertools and the
X-Ray SDK (LAMBDA_TASK_ROOT, a trace header), sending to a UDP "daemon" this test listens as."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from polyv_retriever.polyv_emulator import EmulatorServer

PARAMETER = "/polyv-retriever/test/trace-credentials"

HANDLERS = textwrap.dedent(
    """
    import json, sys
    from polyv_retriever.local_stack.moto_server import LocalContext
    from polyv_retriever.handlers import check_status, finalize, transfer

    task_id, vid = sys.argv[1], sys.argv[2]
    # CheckStatus starts the video's transfer execution; the test runs that transfer's invocation itself.
    poll = check_status.handler({"taskId": task_id, "prefix": "t/"}, LocalContext("c", 60))
    moved = transfer.handler({"taskId": task_id, "vid": vid, "prefix": "t/"}, LocalContext("t", 60))
    finalize.handler({"taskId": task_id, "prefix": "t/", "poll": poll}, LocalContext("f", 60))
    print(json.dumps(moved["result"]))
    """
)


@pytest.fixture
def daemon() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A UDP listener standing in for the X-Ray daemon; collects every segment document sent to it."""
    documents: list[dict[str, Any]] = []
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def listen() -> None:
        while not stop.is_set():
            try:
                datagram = sock.recv(65535)
            except TimeoutError:
                continue
            _header, _, body = datagram.decode().partition("\n")
            documents.append(json.loads(body))

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    yield f"127.0.0.1:{sock.getsockname()[1]}", documents
    time.sleep(0.3)
    stop.set()
    thread.join()
    sock.close()


def walk(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield document
    for child in document.get("subsegments", []):
        yield from walk(child)


def test_traces_hold_aws_calls_and_annotations_but_no_secret_or_signed_url(
    emulator: EmulatorServer, bucket: str, daemon: tuple[str, list[dict[str, Any]]]
) -> None:
    address, documents = daemon
    boto3.client("ssm").put_parameter(
        Name=PARAMETER,
        Type="SecureString",
        Overwrite=True,
        Value=json.dumps({"appId": emulator.app_id, "appSecret": emulator.secret}),
    )
    emulator.add_video("traced", 6 * 1024 * 1024, ready_after=0)
    task_id = emulator.create_task(["traced"])
    time.sleep(0.01)
    emulator.set_faults(dl_403=1, api_5xx=1)  # a refreshed URL and a retried Polyv call: the risky paths

    machine = boto3.client("stepfunctions").create_state_machine(
        name=f"traced-transfers-{time.monotonic_ns()}",
        definition=json.dumps(
            {"StartAt": "Idle", "States": {"Idle": {"Type": "Wait", "Seconds": 3600, "End": True}}}
        ),
        roleArn="arn:aws:iam::123456789012:role/r",
    )["stateMachineArn"]
    env = {
        **os.environ,
        "TRANSFER_STATE_MACHINE_ARN": machine,
        "LAMBDA_TASK_ROOT": "/var/task",  # what makes Powertools and the X-Ray SDK trace
        "AWS_LAMBDA_FUNCTION_NAME": "TransferFunction",
        "_X_AMZN_TRACE_ID": "Root=1-67a1b2c3-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1",
        "AWS_XRAY_DAEMON_ADDRESS": address,
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "POWERTOOLS_SERVICE_NAME": "polyv-retriever",
        "BUCKET_NAME": bucket,
        "POLYV_CREDENTIALS_PARAMETER": PARAMETER,
        "POLYV_API_BASE_URL": emulator.base_url,
        "POLYV_DOWNLOAD_ALLOW": emulator.base_url,
        "TRANSFER_MIN_PART_MB": "5",
    }
    env.pop("POWERTOOLS_TRACE_DISABLED", None)
    ran = subprocess.run(
        [sys.executable, "-c", HANDLERS, task_id, "traced"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert json.loads(ran.stdout.splitlines()[-1])["urlRefreshes"] == 1
    time.sleep(0.5)  # the last datagrams

    segments = [s for document in documents for s in walk(document)]
    names = {s.get("name") for s in segments}
    # the trace is really there: each handler, and the AWS calls (S3 multipart, SSM, EventBridge) in it
    assert "## handler" in names, names
    operations = {s.get("aws", {}).get("operation") for s in segments if s.get("namespace") == "aws"}
    assert {
        "UploadPart",
        "CompleteMultipartUpload",
        "GetParameter",
        "StartExecution",
        "PutEvents",
    } <= operations
    annotated = [s["annotations"] for s in segments if s.get("annotations", {}).get("taskId")]
    assert annotated
    assert all(a["taskId"] == task_id for a in annotated)
    # only boto3/botocore are patched: the calls to Polyv and to the CDN are not in the trace at all
    assert not [s for s in segments if emulator.base_url.split("//")[1] in json.dumps(s)]

    everything = json.dumps(documents)
    assert emulator.secret not in everything
    assert "auth_key" not in everything
    assert "sign=" not in everything
    assert "appSecret" not in everything
