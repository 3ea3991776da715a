"""The Lambda handlers against a moto server (S3, SSM SecureString) and the Polyv emulator, over HTTP.

Each test also reads everything the handlers logged and checks that no secret is in it: not the app
secret, not a signed download URL.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from polyv_retriever import errors
from polyv_retriever.handlers import check_status, finalize, transfer
from polyv_retriever.local_stack.moto_server import LocalContext
from polyv_retriever.pipeline.records import RetrievalLayout
from polyv_retriever.polyv_emulator import EmulatorServer
from polyv_retriever.polyv_emulator.content import VideoContent
from tests.integration.conftest import open_uploads

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PARAMETER = "/polyv-retriever/test/credentials"


@pytest.fixture
def deployed(
    emulator: EmulatorServer, bucket: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[EmulatorServer]:
    """The functions' environment as template.yaml sets it, credentials in SSM as the README says."""
    boto3.client("ssm").put_parameter(
        Name=PARAMETER,
        Type="SecureString",
        Overwrite=True,
        Value=json.dumps({"appId": emulator.app_id, "appSecret": emulator.secret}),
    )
    monkeypatch.setenv("BUCKET_NAME", bucket)
    monkeypatch.setenv("POLYV_CREDENTIALS_PARAMETER", PARAMETER)
    monkeypatch.setenv("POLYV_API_BASE_URL", emulator.base_url)
    monkeypatch.setenv("POLYV_DOWNLOAD_ALLOW", f"*.videocc.net,{emulator.base_url}")
    monkeypatch.setenv("TRANSFER_MIN_PART_MB", "5")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "polyv-retriever")
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()
    yield emulator
    logged = capsys.readouterr()
    everything = logged.out + logged.err
    assert emulator.secret not in everything
    assert "auth_key" not in everything  # signed download URLs are bearer credentials


def ready_task(emulator: EmulatorServer, videos: dict[str, int]) -> str:
    for vid, size in videos.items():
        emulator.add_video(vid, size, ready_after=0)
    task_id = emulator.create_task(list(videos))
    time.sleep(0.01)
    return task_id


def test_check_status_reads_the_secure_string_polls_and_starts_transfers(
    deployed: EmulatorServer, s3: S3Client, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sfn = boto3.client("stepfunctions")
    machine = sfn.create_state_machine(
        name=f"transfers-{time.monotonic_ns()}",
        definition=json.dumps(
            {"StartAt": "Idle", "States": {"Idle": {"Type": "Wait", "Seconds": 3600, "End": True}}}
        ),
        roleArn="arn:aws:iam::123456789012:role/r",
    )["stateMachineArn"]
    monkeypatch.setenv("TRANSFER_STATE_MACHINE_ARN", machine)
    task_id = ready_task(deployed, {"a1": 10, "b1": 10})
    result = check_status.handler({"taskId": task_id, "prefix": "p/"}, LocalContext("c", 60))
    # Both ready at once: each got its transfer execution, named after task, attempt and vid.
    assert result["done"] is False
    assert {v: p["state"] for v, p in result["videos"].items()} == {"a1": "RUNNING", "b1": "RUNNING"}
    names = {e["name"] for e in sfn.list_executions(stateMachineArn=machine)["executions"]}
    assert names == {f"{task_id}.1.a1", f"{task_id}.1.b1"}
    status = json.loads(
        s3.get_object(Bucket=bucket, Key=RetrievalLayout("p/", task_id).status_key)["Body"].read()
    )
    assert status["counts"]["SUCCESS"] == 2
    assert "auth_key" not in json.dumps(status)


def test_wrong_credentials_raise_the_named_error(deployed: EmulatorServer) -> None:
    boto3.client("ssm").put_parameter(
        Name=PARAMETER,
        Type="SecureString",
        Overwrite=True,
        Value=json.dumps({"appId": deployed.app_id, "appSecret": "not-the-secret"}),
    )
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()
    task_id = ready_task(deployed, {"a1": 10})
    with pytest.raises(errors.InvalidSignature) as caught:
        check_status.handler({"taskId": task_id, "prefix": "p/"}, LocalContext("c", 60))
    assert "not-the-secret" not in str(caught.value)


def test_a_missing_parameter_is_named(deployed: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYV_CREDENTIALS_PARAMETER", "/nope/not-there")
    from polyv_retriever.handlers import runtime

    runtime.settings.cache_clear()
    with pytest.raises(errors.InvalidInput, match="/nope/not-there"):
        check_status.handler({"taskId": "0123456789abcdef", "prefix": "p/"}, LocalContext("c", 60))


def test_transfer_streams_the_video_into_s3_and_records_it(
    deployed: EmulatorServer, s3: S3Client, bucket: str
) -> None:
    size = 11 * 1024 * 1024 + 5
    task_id = ready_task(deployed, {"vid01": size})
    result = transfer.handler({"taskId": task_id, "vid": "vid01", "prefix": "p/"}, LocalContext("t", 900))

    key = f"p/{task_id}/vid01.mp4"
    assert result["status"] == "COPIED"
    assert result["result"]["key"] == key
    assert result["continuation"] is None
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["Metadata"]["polyv-vid"] == "vid01"
    assert head["Metadata"]["polyv-task-id"] == task_id
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == VideoContent("vid01", size).sha256()
    record = json.loads(
        s3.get_object(Bucket=bucket, Key=RetrievalLayout("p/", task_id).video_record_key("vid01"))[
            "Body"
        ].read()
    )
    assert record["status"] == "COPIED"
    assert record["size"] == size


def test_transfer_continues_across_invocations_when_time_runs_low(
    deployed: EmulatorServer, s3: S3Client, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRANSFER_MAX_WORKERS", "1")
    monkeypatch.setenv("TRANSFER_TIME_RESERVE_SECONDS", "30")
    size = 12 * 1024 * 1024
    task_id = ready_task(deployed, {"vid02": size})
    event: dict[str, Any] = {"taskId": task_id, "vid": "vid02", "prefix": "p/"}
    invocations = 0
    while True:
        invocations += 1
        event = transfer.handler(event, LocalContext("t", 10))  # 10 s < the 30 s reserve: one part each
        if event["status"] != "CONTINUE":
            break
    assert event["status"] == "COPIED"
    assert invocations == 3
    assert s3.head_object(Bucket=bucket, Key=f"p/{task_id}/vid02.mp4")["ContentLength"] == size


def test_transfer_of_a_video_that_polyv_failed_is_a_named_error(
    deployed: EmulatorServer, bucket: str, s3: S3Client
) -> None:
    deployed.add_video("bad01", 10, outcome="FAIL", ready_after=0)
    task_id = deployed.create_task(["bad01"])
    time.sleep(0.01)
    with pytest.raises(errors.VideoNotReady, match=r"bad01 .* is FAIL"):
        transfer.handler({"taskId": task_id, "vid": "bad01", "prefix": "p/"}, LocalContext("t", 900))
    assert open_uploads(s3, bucket) == []


def test_transfer_refuses_a_download_host_not_on_the_allow_list(
    deployed: EmulatorServer, monkeypatch: pytest.MonkeyPatch, s3: S3Client, bucket: str
) -> None:
    monkeypatch.setenv("POLYV_DOWNLOAD_ALLOW", "*.videocc.net")
    task_id = ready_task(deployed, {"vid03": 100})
    with pytest.raises(errors.DownloadNotAllowed):
        transfer.handler({"taskId": task_id, "vid": "vid03", "prefix": "p/"}, LocalContext("t", 900))
    assert deployed.state.downloads == 0
    assert open_uploads(s3, bucket) == []


def test_finalize_writes_the_manifest_to_s3(deployed: EmulatorServer, s3: S3Client, bucket: str) -> None:
    summary = finalize.handler(
        {
            "taskId": "0123456789abcdef0123456789abcdef",
            "prefix": "p/",
            "poll": {"done": True, "count": 1, "startedAt": 0, "waitSeconds": 0, "polyvFailed": ["x"]},
        },
        LocalContext("f", 60),
    )
    manifest = json.loads(
        s3.get_object(Bucket=bucket, Key="p/0123456789abcdef0123456789abcdef/manifest.json")["Body"].read()
    )
    assert manifest["outcome"] == summary["outcome"] == "PARTIAL"
    assert manifest["videos"] == [{"vid": "x", "outcome": "POLYV_FAIL"}]


def test_an_sse_kms_default_encrypted_bucket_takes_the_upload_and_the_skip(
    deployed: EmulatorServer, s3: S3Client, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ExistingBucketName with a customer-managed key as its default encryption, the key given as KmsKeyArn:
    the object is written under that key, multipart and all, and a second run skips it as intact."""
    from polyv_retriever.handlers import runtime

    key_arn = boto3.client("kms").create_key(Description="bucket key")["KeyMetadata"]["Arn"]
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn}}
            ]
        },
    )
    monkeypatch.setenv("KMS_KEY_ID", key_arn)
    monkeypatch.setenv("STORAGE_CLASS", "GLACIER_IR")
    runtime.settings.cache_clear()
    try:
        task_id = ready_task(deployed, {"kms01": 12 * 1024 * 1024})
        first = transfer.handler({"taskId": task_id, "vid": "kms01", "prefix": "k/"}, LocalContext("t", 900))
        again = transfer.handler({"taskId": task_id, "vid": "kms01", "prefix": "k/"}, LocalContext("t", 900))
    finally:
        runtime.settings.cache_clear()
    assert (first["status"], again["status"]) == ("COPIED", "SKIPPED")
    head = s3.head_object(Bucket=bucket, Key=f"k/{task_id}/kms01.mp4")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == key_arn
    assert head["StorageClass"] == "GLACIER_IR"


def test_a_timed_out_attempt_stops_its_transfers_aborts_their_uploads_and_says_so(
    deployed: EmulatorServer, s3: S3Client, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RecordFailure's path (the attempt's budget ran out while a transfer ran): the transfer execution is
    stopped, its open upload aborted, and the manifest says TIMED_OUT with what had landed."""
    from polyv_retriever.handlers import runtime

    sfn = boto3.client("stepfunctions")
    machine = sfn.create_state_machine(
        name=f"transfers-{time.monotonic_ns()}",
        definition=json.dumps(
            {"StartAt": "Idle", "States": {"Idle": {"Type": "Wait", "Seconds": 3600, "End": True}}}
        ),
        roleArn="arn:aws:iam::123456789012:role/r",
    )["stateMachineArn"]
    monkeypatch.setenv("TRANSFER_STATE_MACHINE_ARN", machine)
    runtime.settings.cache_clear()
    task = "0123456789abcdef0123456789abcde1"
    running = f"{task}.1.slow"
    sfn.start_execution(stateMachineArn=machine, name=running, input="{}")
    s3.create_multipart_upload(Bucket=bucket, Key=f"t/{task}/slow.mp4")
    try:
        summary = finalize.handler(
            {
                "taskId": task,
                "prefix": "t/",
                "attempt": 1,
                "poll": {
                    "done": False,
                    "count": 9,
                    "startedAt": 0,
                    "waitSeconds": 30,
                    "videos": {
                        "fast": {"state": "COPIED", "key": f"t/{task}/fast.mp4", "size": 5},
                        "slow": {"state": "RUNNING", "execution": running},
                    },
                },
                "failure": {"Error": "RetrievalTimedOut", "Cause": '{"errorMessage": "ran 167.0 h"}'},
            },
            LocalContext("f", 60),
        )
    finally:
        runtime.settings.cache_clear()
    assert summary["outcome"] == "TIMED_OUT"
    assert summary["error"] == {"name": "RetrievalTimedOut", "cause": "ran 167.0 h"}
    stopped = sfn.describe_execution(
        executionArn=machine.replace(":stateMachine:", ":execution:") + ":" + running
    )
    assert stopped["status"] == "ABORTED"
    assert open_uploads(s3, bucket) == []
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"t/{task}/manifest.json")["Body"].read())
    assert {v["vid"]: v["outcome"] for v in manifest["videos"]} == {"fast": "COPIED", "slow": "NOT_COPIED"}
    assert manifest["outcome"] == "TIMED_OUT"
