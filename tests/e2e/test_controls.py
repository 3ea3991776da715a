"""Streaming and the operator's controls, end to end on the local stack (the real state machines on moto).

Each test is what an operator would do and check: an early video is in S3 while a late one still thaws;
a cancel stops everything and leaves no upload open; a retry copies only what failed; racing identical
requests make one Polyv task; listing; storage class and tags; a hostile vid from Polyv.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from polyv_retriever.local_stack.template import REGION
from tests.e2e.conftest import Stack
from tests.e2e.test_operations import client, drain, json_lines

pytestmark = pytest.mark.e2e
MiB = 1024 * 1024
CREATE_PATH = "/v3/video/source-file-task/create"


def video(vid: str, size: int, *, outcome: str = "SUCCESS", ready_after: float = 500) -> dict[str, object]:
    """``ready_after`` in Polyv seconds; the e2e emulator runs 1,000 Polyv seconds per real second."""
    return {"vid": vid, "size": size, "outcome": outcome, "readyAfter": ready_after}


def until(check: Any, timeout: float = 60, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def exists(stack: Stack, key: str) -> bool:
    return bool(stack.s3.list_objects_v2(Bucket=stack.bucket, Prefix=key).get("KeyCount"))


def open_uploads(stack: Stack, prefix: str) -> list[str]:
    uploads = stack.s3.list_multipart_uploads(Bucket=stack.bucket, Prefix=prefix).get("Uploads", [])
    return [u["Key"] for u in uploads]


def transfer_executions(stack: Stack, prefix: str) -> list[str]:
    machine = f"arn:aws:states:{REGION}:123456789012:stateMachine:TransferStateMachine"
    names = [e["name"] for e in stack.sfn.list_executions(stateMachineArn=machine)["executions"]]
    return sorted(n for n in names if n.startswith(prefix))


def test_an_early_video_is_in_s3_while_a_late_one_is_still_thawing(stack: Stack) -> None:
    task_id = stack.task([video("early", MiB, ready_after=300), video("late", 2 * MiB, ready_after=15000)])
    assert stack.api("POST", "/retrievals", {"taskId": task_id})[0] == 202

    until(lambda: exists(stack, f"polyv/{task_id}/early.mp4"), 12, "the early video in S3")
    status, now = stack.api("GET", f"/retrievals/{task_id}")
    late = next(v for v in now["polyv"]["videos"] if v["vid"] == "late")
    assert (status, now["status"], late["status"]) == (200, "RUNNING", "PROCESS")
    assert now["transfers"]["early"]["status"] == "COPIED"
    assert not exists(stack, f"polyv/{task_id}/late.mp4")

    done = stack.wait(task_id, timeout=60)
    assert done["result"]["outcome"] == "COMPLETE"
    for vid in ("early", "late"):
        assert stack.object_sha256(f"polyv/{task_id}/{vid}.mp4") == stack.served_sha256(vid)
    assert transfer_executions(stack, task_id) == [f"{task_id}.1.early", f"{task_id}.1.late"]


def test_cancel_in_the_middle_of_a_transfer_stops_it_and_leaves_no_upload_open(stack: Stack) -> None:
    task_id = stack.task(
        [video("cancel-small", MiB, ready_after=100), video("cancel-big", 40 * MiB, ready_after=100)]
    )
    events, sqs = client(stack, "events"), client(stack, "sqs")
    queue = sqs.create_queue(QueueName="cancel-watch")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(  # a user's pipeline that wants to hear of cancelled retrievals
        Name="cancel-watch",
        EventPattern=json.dumps(
            {
                "source": ["polyv-retriever"],
                "detail-type": ["Retrieval Completed"],
                "detail": {"outcome": ["CANCELLED"]},
            }
        ),
    )
    events.put_targets(Rule="cancel-watch", Targets=[{"Id": "queue", "Arn": queue_arn}])
    stack.emulator("POST", "faults", {"dl_rate_bytes_per_second": 1024 * 1024})
    try:
        stack.api("POST", "/retrievals", {"taskId": task_id, "prefix": "cancel/"})
        root = f"cancel/{task_id}/"
        until(lambda: open_uploads(stack, root + "cancel-big"), 20, "the big video's upload")
        until(lambda: exists(stack, root + "cancel-small.mp4"), 20, "the small video in S3")

        status, cancelled = stack.api("DELETE", f"/retrievals/{task_id}")
        assert status == 202
        assert cancelled["status"] == "ABORTED"
        assert cancelled["result"]["outcome"] == "CANCELLED"
        # The transfer that was running notices between parts; nothing stays open, nothing half-written.
        time.sleep(8)
        assert open_uploads(stack, root) == []
        # Every transfer execution ended too. AWS shows a stopped one ABORTED at once; moto ends it (as
        # FAILED) only when its running Lambda invocation returns, which it does at the cancel marker.
        machine = f"arn:aws:states:{REGION}:123456789012:stateMachine:TransferStateMachine"

        def children() -> dict[str, str]:
            executions = stack.sfn.list_executions(stateMachineArn=machine)["executions"]
            return {e["name"]: e["status"] for e in executions if e["name"].startswith(task_id)}

        until(lambda: "RUNNING" not in children().values(), 20, f"the transfers to end: {children()}")
        assert f"{task_id}.1.cancel-big" in children()
        assert not exists(stack, root + "cancel-big.mp4")
        assert (
            stack.s3.list_objects_v2(Bucket=stack.bucket, Prefix="_polyv-retriever/uploads/" + root).get(
                "KeyCount"
            )
            == 0
        )
    finally:
        stack.emulator("POST", "faults", {"dl_rate_bytes_per_second": 0})

    status, after = stack.api("GET", f"/retrievals/{task_id}")
    assert (status, after["status"], after["result"]["outcome"]) == (200, "ABORTED", "CANCELLED")
    manifest = json.loads(stack.s3.get_object(Bucket=stack.bucket, Key=root + "manifest.json")["Body"].read())
    assert {v["vid"]: v["outcome"] for v in manifest["videos"]} == {
        "cancel-small": "COPIED",
        "cancel-big": "NOT_COPIED",
    }
    assert stack.api("DELETE", f"/retrievals/{task_id}")[0] == 409  # already ended

    (detail,) = [
        e["detail"] for e in map(json.loads, drain(sqs, queue, task_id)) if e["detail"]["taskId"] == task_id
    ]
    assert (detail["outcome"], detail["execution"]) == ("CANCELLED", f"{task_id}.1")
    assert {k: n for k, n in detail["counts"].items() if n} == {"COPIED": 1, "NOT_COPIED": 1}
    assert detail["manifest"] == f"s3://{stack.bucket}/{root}manifest.json"
    assert detail["error"] == {"name": "RetrievalCancelled"}
    # Counted like every other end (the Retrievals metric by outcome, from the Api function).
    emf = [r for r in json_lines(stack.log.read_text()) if "_aws" in r and r.get("function") == "Api"]
    assert any(r.get("Outcome") == "CANCELLED" and "Retrievals" in r for r in emf)


def test_retry_failed_copies_only_what_failed(stack: Stack) -> None:
    task_id = stack.task(
        [video("retry-ok", MiB, ready_after=100), video("retry-bad", 16 * MiB, ready_after=4000)]
    )
    stack.api("POST", "/retrievals", {"taskId": task_id})
    until(lambda: exists(stack, f"polyv/{task_id}/retry-ok.mp4"), 15, "the first video")
    first_copy = stack.s3.head_object(Bucket=stack.bucket, Key=f"polyv/{task_id}/retry-ok.mp4")[
        "LastModified"
    ]
    # The second video's source changes in the middle of its copy: it fails on our side (SourceChanged).
    stack.emulator("POST", "faults", {"dl_change_after": 2})
    try:
        done = stack.wait(task_id, timeout=60)
    finally:
        stack.emulator("POST", "faults", {"dl_change_after": -1})
    assert done["result"]["outcome"] == "PARTIAL"
    assert done["result"]["counts"]["FAILED"] == 1

    status, again = stack.api("POST", "/retrievals", {"taskId": task_id, "retryFailed": True})
    assert status == 202
    assert (again["attempt"], again["only"]) == (2, ["retry-bad"])
    done = stack.wait(task_id, timeout=60)
    assert done["attempt"] == 2
    assert [a["attempt"] for a in done["attempts"]] == [1, 2]
    assert done["result"]["outcome"] == "COMPLETE"
    assert transfer_executions(stack, f"{task_id}.2.") == [f"{task_id}.2.retry-bad"]
    assert stack.object_sha256(f"polyv/{task_id}/retry-bad.mp4") == stack.served_sha256("retry-bad")
    # The video that had landed was not touched.
    head = stack.s3.head_object(Bucket=stack.bucket, Key=f"polyv/{task_id}/retry-ok.mp4")
    assert head["LastModified"] == first_copy


def test_two_racing_identical_posts_make_one_polyv_task(stack: Stack) -> None:
    stack.emulator("POST", "videos", [video("race-a", MiB), video("race-b", MiB)])
    before = sum(1 for r in stack.emulator("GET", "requests") if r["path"] == CREATE_PATH)
    answers: list[tuple[int, dict[str, Any]]] = []

    def post(vids: list[str]) -> None:
        answers.append(stack.api("POST", "/retrievals", {"vids": vids, "expireDays": 2}))

    threads = [threading.Thread(target=post, args=(v,)) for v in (["race-a", "race-b"], ["race-b", "race-a"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a[0] for a in answers] == [202, 202]
    assert answers[0][1]["retrievalId"] == answers[1][1]["retrievalId"]
    creates = sum(1 for r in stack.emulator("GET", "requests") if r["path"] == CREATE_PATH)
    assert creates - before == 1

    # Later, the same request again (any order): the same retrieval, still one Polyv task.
    status, repeat = stack.api("POST", "/retrievals", {"vids": ["race-b", "race-a"], "expireDays": 2})
    assert (status, repeat["retrievalId"]) == (202, answers[0][1]["retrievalId"])
    assert sum(1 for r in stack.emulator("GET", "requests") if r["path"] == CREATE_PATH) - before == 1
    assert stack.wait(repeat["retrievalId"])["result"]["outcome"] == "COMPLETE"


def test_an_idempotency_key_is_honoured_and_refuses_another_body(stack: Stack) -> None:
    stack.emulator("POST", "videos", [video("key-a", MiB), video("key-b", MiB)])
    headers = {"Idempotency-Key": f"op-{time.monotonic_ns()}"}
    first = stack.api("POST", "/retrievals", {"vids": ["key-a"], "expireDays": 1}, headers=headers)
    second = stack.api("POST", "/retrievals", {"vids": ["key-a"], "expireDays": 1}, headers=headers)
    assert first[0] == second[0] == 202
    assert first[1]["retrievalId"] == second[1]["retrievalId"]
    other = stack.api("POST", "/retrievals", {"vids": ["key-b"], "expireDays": 1}, headers=headers)
    assert other[0] == 409
    assert "Idempotency-Key" in other[1]["message"]


def test_storage_class_and_tags_and_a_rerun_skips_what_is_intact(stack: Stack) -> None:
    task_id = stack.task([video("cold", 6 * MiB, ready_after=100)])
    stack.api("POST", "/retrievals", {"taskId": task_id, "storageClass": "STANDARD_IA"})
    assert stack.wait(task_id)["result"]["counts"]["COPIED"] == 1
    key = f"polyv/{task_id}/cold.mp4"
    assert stack.s3.head_object(Bucket=stack.bucket, Key=key)["StorageClass"] == "STANDARD_IA"
    tags = {t["Key"]: t["Value"] for t in stack.s3.get_object_tagging(Bucket=stack.bucket, Key=key)["TagSet"]}
    assert tags == {"polyv-vid": "cold", "polyv-task-id": task_id}

    status, again = stack.api("POST", "/retrievals", {"taskId": task_id, "rerun": True})
    assert (status, again["attempt"], again["options"]) == (202, 2, {"storageClass": "STANDARD_IA"})
    done = stack.wait(task_id)
    assert done["result"]["counts"]["SKIPPED"] == 1
    assert done["result"]["attempt"] == 2


def test_list_is_newest_first_filtered_and_paginated(stack: Stack) -> None:
    ids = []
    for n in range(3):
        task_id = stack.task([video(f"list-{n}", MiB, ready_after=100)])
        stack.api("POST", "/retrievals", {"taskId": task_id})
        stack.wait(task_id)
        ids.append(task_id)
    status, page = stack.api("GET", "/retrievals?status=SUCCEEDED&limit=2")
    assert status == 200
    assert [r["retrievalId"] for r in page["retrievals"]] == [ids[2], ids[1]]
    assert page["nextToken"]
    status, rest = stack.api("GET", f"/retrievals?status=SUCCEEDED&limit=2&nextToken={page['nextToken']}")
    assert rest["retrievals"][0]["retrievalId"] == ids[0]
    status, running = stack.api("GET", "/retrievals?status=RUNNING&limit=100")
    assert not set(ids) & {r["retrievalId"] for r in running["retrievals"]}
    assert stack.api("GET", "/retrievals?status=SLEEPING")[0] == 400
    assert stack.api("GET", "/retrievals?limit=0")[0] == 400
    for token in ("garbage", "", "x" * 1025):
        status, refused = stack.api("GET", f"/retrievals?nextToken={token}")
        assert status == 400, (token, refused)
        assert "nextToken" in refused["message"]


@pytest.mark.parametrize("vid", ["../../escape", "_retrieval", "manifest"])
def test_a_hostile_vid_from_polyv_is_a_named_per_video_failure_and_nothing_escapes(
    stack: Stack, vid: str
) -> None:
    task_id = stack.task([video(vid, MiB, ready_after=100), video(f"fine-{len(vid)}", MiB, ready_after=100)])
    stack.api("POST", "/retrievals", {"taskId": task_id, "prefix": "hostile/"})
    done = stack.wait(task_id)
    assert done["status"] == "SUCCEEDED"
    assert done["result"]["outcome"] == "PARTIAL"
    assert done["result"]["counts"]["INVALID_VID"] == 1
    status, _ = stack.api("GET", f"/retrievals/{task_id}")
    assert status == 200
    keys = [o["Key"] for o in stack.s3.list_objects_v2(Bucket=stack.bucket).get("Contents", [])]
    mine = [k for k in keys if task_id in k]
    assert all(k.startswith(f"hostile/{task_id}/") for k in mine), mine
    assert f"hostile/{task_id}/fine-{len(vid)}.mp4" in mine
    manifest = stack.manifest(done)
    assert {v["vid"]: v["outcome"] for v in manifest["videos"]}[vid] == "INVALID_VID"


def test_more_than_100_vids_make_polyv_tasks_of_100_and_one_retrieval_each(stack: Stack) -> None:
    vids = [f"many-{i:03d}" for i in range(150)]
    # Never ready during the test: only the split and the answer are looked at, then both are cancelled.
    stack.emulator("POST", "videos", [video(v, 1024, ready_after=10**9) for v in vids])
    before = len(stack.emulator("GET", "requests"))
    status, body = stack.api("POST", "/retrievals", {"vids": vids[::-1], "expireDays": 1})
    assert status == 202
    retrievals = body["retrievals"]
    assert len(retrievals) == 2
    assert len({r["retrievalId"] for r in retrievals}) == 2
    creates = [r for r in stack.emulator("GET", "requests")[before:] if r["path"] == CREATE_PATH]
    assert [len(r["params"]["vids"].split(",")) for r in creates] == [100, 50]
    assert creates[0]["params"]["vids"].split(",") == sorted(vids)[:100]
    for retrieval in retrievals:
        assert retrieval["status"] == "RUNNING"
        assert stack.api("DELETE", f"/retrievals/{retrieval['retrievalId']}")[0] == 202
