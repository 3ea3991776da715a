"""The whole job on the local stack: API -> the real state machine (moto) -> the real handlers -> S3.

Each test is a retrieval a user could request, checked the way a user would check it: the API's answers,
the execution's outcome, the objects in S3 byte for byte, the manifest.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e
MiB = 1024 * 1024


def video(vid: str, size: int, *, outcome: str = "SUCCESS", ready_after: float = 1500) -> dict[str, object]:
    """``ready_after`` in Polyv seconds; the e2e emulator runs 1,000 Polyv seconds per real second."""
    return {"vid": vid, "size": size, "outcome": outcome, "readyAfter": ready_after}


def test_happy_path_every_video_lands_verified_with_a_manifest(stack: Stack) -> None:
    task_id = stack.task([video("happy-a", 7 * MiB + 11), video("happy-b", 16 * MiB, ready_after=3000)])

    status, started = stack.api("POST", "/retrievals", {"taskId": task_id, "prefix": "e2e/"})
    assert status == 202
    assert started["retrievalId"] == task_id
    done = stack.wait(task_id)

    assert done["status"] == "SUCCEEDED"
    assert done["result"]["outcome"] == "COMPLETE"
    assert done["result"]["counts"] == {
        "COPIED": 2,
        "SKIPPED": 0,
        "FAILED": 0,
        "POLYV_FAIL": 0,
        "INVALID_VID": 0,
        "NOT_COPIED": 0,
    }
    for vid in ("happy-a", "happy-b"):
        key = f"e2e/{task_id}/{vid}.mp4"
        assert stack.object_sha256(key) == stack.served_sha256(vid)
        head = stack.s3.head_object(Bucket=stack.bucket, Key=key, ChecksumMode="ENABLED")
        assert head["Metadata"] == {
            "polyv-vid": vid,
            "polyv-task-id": task_id,
            "source-size": str(head["ContentLength"]),
            "source-etag": head["Metadata"]["source-etag"],
        }
    manifest = stack.manifest(done)
    assert manifest["taskId"] == task_id
    assert manifest["destination"] == f"s3://{stack.bucket}/e2e/{task_id}/"
    assert [(v["vid"], v["outcome"]) for v in manifest["videos"]] == [
        ("happy-a", "COPIED"),
        ("happy-b", "COPIED"),
    ]
    assert manifest["bytes"] == 7 * MiB + 11 + 16 * MiB
    # happy-b has four parts and each Transfer invocation moves two: the state machine looped the transfer.
    assert done["transfers"]["happy-b"]["bytesTransferred"] < 16 * MiB
    assert stack.s3.list_multipart_uploads(Bucket=stack.bucket).get("Uploads") is None


def test_a_video_polyv_fails_is_recorded_while_the_others_land(stack: Stack) -> None:
    task_id = stack.task([video("mixed-ok", 3 * MiB), video("mixed-bad", MiB, outcome="FAIL")])
    stack.api("POST", "/retrievals", {"taskId": task_id})
    done = stack.wait(task_id)

    assert done["status"] == "SUCCEEDED"
    assert done["result"]["outcome"] == "PARTIAL"
    outcomes = {v["vid"]: v["outcome"] for v in stack.manifest(done)["videos"]}
    assert outcomes == {"mixed-ok": "COPIED", "mixed-bad": "POLYV_FAIL"}
    assert stack.object_sha256(f"polyv/{task_id}/mixed-ok.mp4") == stack.served_sha256("mixed-ok")
    assert (
        stack.s3.list_objects_v2(Bucket=stack.bucket, Prefix=f"polyv/{task_id}/mixed-bad").get("KeyCount")
        == 0
    )


def test_an_expired_download_url_is_refreshed_from_polyv(stack: Stack) -> None:
    task_id = stack.task([video("expiring", 3 * MiB, ready_after=500)])
    stack.emulator("POST", "faults", {"dl_403": 1})  # the first download answers 403, as an expired URL does
    stack.api("POST", "/retrievals", {"taskId": task_id})
    done = stack.wait(task_id)

    assert done["status"] == "SUCCEEDED"
    assert done["transfers"]["expiring"]["urlRefreshes"] == 1
    assert stack.object_sha256(f"polyv/{task_id}/expiring.mp4") == stack.served_sha256("expiring")


def test_a_polyv_outage_in_the_middle_of_polling_is_survived(stack: Stack) -> None:
    task_id = stack.task([video("outage", 2 * MiB, ready_after=4000)])
    stack.api("POST", "/retrievals", {"taskId": task_id})
    time.sleep(1.0)  # polling has begun
    # More 5xx than one invocation's own retries absorb: the state machine's Retry has to step in.
    stack.emulator("POST", "faults", {"api_5xx": 7})
    done = stack.wait(task_id, timeout=180)

    assert done["status"] == "SUCCEEDED", done.get("error")
    assert stack.emulator("POST", "faults", {})["api_5xx"] == 0
    assert stack.object_sha256(f"polyv/{task_id}/outage.mp4") == stack.served_sha256("outage")


def test_wrong_credentials_end_the_execution_with_a_readable_cause(stack: Stack) -> None:
    task_id = stack.task([video("creds", MiB)])
    # Polyv now expects another secret than the one in SSM: every signature is wrong.
    stack.emulator("POST", "apps", {"appId": "emulatorApp", "secret": "rotated-on-polyv"})
    try:
        stack.api("POST", "/retrievals", {"taskId": task_id})
        done = stack.wait(task_id)
    finally:
        stack.emulator("POST", "apps", {"appId": "emulatorApp", "secret": "emulator-secret"})

    assert done["status"] == "FAILED"
    assert done["error"] == {"name": "InvalidSignature", "cause": "Polyv error 104: invalid signature"}
    execution = stack.sfn.describe_execution(
        executionArn=f"{stack.info['stateMachineArn']}:{task_id}.1".replace(":stateMachine:", ":execution:")
    )
    assert execution["error"] == "InvalidSignature"
    assert (
        stack.manifest({"result": {"manifest": f"s3://{stack.bucket}/polyv/{task_id}/manifest.json"}})[
            "outcome"
        ]
        == "FAILED"
    )


def test_a_repeated_post_does_not_start_a_second_execution(stack: Stack) -> None:
    task_id = stack.task([video("twice", MiB)])
    first, body1 = stack.api("POST", "/retrievals", {"taskId": task_id})
    second, body2 = stack.api("POST", "/retrievals", {"taskId": task_id})
    assert (first, second) == (202, 200)
    assert body1["retrievalId"] == body2["retrievalId"] == task_id
    executions = stack.sfn.list_executions(stateMachineArn=stack.info["stateMachineArn"])["executions"]
    assert [e["name"] for e in executions].count(f"{task_id}.1") == 1
    assert stack.wait(task_id)["status"] == "SUCCEEDED"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("POST", "/retrievals", "{broken", 400, "the body is not valid JSON"),
        ("POST", "/retrievals", "{}", 400, "give either taskId or vids"),
        ("POST", "/retrievals", '{"taskId": "nope"}', 400, "taskId 'nope' is malformed"),
        ("POST", "/retrievals", '{"vids": [], "expireDays": 1}', 400, "non-empty list"),
        (
            "POST",
            "/retrievals",
            json.dumps({"vids": [f"v{i}" for i in range(1001)], "expireDays": 1}),
            400,
            "1001 vids given",
        ),
        (
            "POST",
            "/retrievals",
            '{"vids": ["a"], "expireDays": 9}',
            400,
            "expireDays must be an integer from 1 to 7",
        ),
        (
            "POST",
            "/retrievals",
            '{"taskId": "0123456789abcdef0123456789abcdef", "x": 1}',
            400,
            "x: Extra inputs",
        ),
        ("GET", "/retrievals/0123456789abcdef0123456789abcdef", None, 404, "no retrieval"),
        ("DELETE", "/retrievals", None, 403, "Missing Authentication Token"),
    ],
)
def test_api_refusals_name_the_problem(
    stack: Stack, method: str, path: str, body: str | None, status: int, message: str
) -> None:
    got, answer = stack.api(method, path, raw=body)
    assert got == status
    assert message in answer["message"]


def test_creating_the_task_through_the_api(stack: Stack) -> None:
    stack.emulator("POST", "videos", [video("made-by-api", 2 * MiB, ready_after=800)])
    status, started = stack.api("POST", "/retrievals", {"vids": ["made-by-api"], "expireDays": 2})
    assert status == 202
    done = stack.wait(started["retrievalId"])
    assert done["result"]["counts"]["COPIED"] == 1


def test_no_secret_in_logs_or_execution_history(stack: Stack) -> None:
    """Runs after the retrievals above (pytest keeps file order): everything they logged and recorded."""
    history = []
    for machine in stack.sfn.list_state_machines()["stateMachines"]:  # the retrievals' and the transfers'
        for execution in stack.sfn.list_executions(stateMachineArn=machine["stateMachineArn"])["executions"]:
            events = stack.sfn.get_execution_history(executionArn=execution["executionArn"])["events"]
            history.append(json.dumps(events, default=str))
    everything = stack.log.read_text() + "".join(history)
    assert len(history) >= 5
    assert "emulator-secret" not in everything
    assert "auth_key" not in everything
    assert "TaskSucceeded" in everything or "TaskStateExited" in everything  # the history was really read
