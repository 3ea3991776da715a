"""The manifest: every video's outcome, the attempt's outcome, readable causes."""

import json

from polyv_retriever.contracts import (
    ErrorInfo,
    Manifest,
    PollProgress,
    RetrievalOptions,
    StepFunctionsError,
    load,
)
from polyv_retriever.pipeline.executions import StateMachine
from polyv_retriever.pipeline.manifest import build_manifest, failure_info, write_manifest
from polyv_retriever.pipeline.records import RetrievalLayout
from polyv_retriever.pipeline.retrievals import RetrievalService
from tests.fakes import FakeStepFunctions, InMemoryRecords

TASK = "0123456789abcdef0123456789abcdef"


def ledger(**videos: dict[str, object]) -> PollProgress:
    return load(PollProgress, {"done": True, "count": 3, "startedAt": 0, "waitSeconds": 0, "videos": videos})


def test_every_video_has_an_outcome_and_the_summary_counts_them() -> None:
    records = InMemoryRecords()
    poll = ledger(
        a={"state": "COPIED", "key": f"p/{TASK}/a.mp4", "size": 10, "crc32": "AAAAAA=="},
        b={"state": "SKIPPED", "key": f"p/{TASK}/b.mp4", "size": 5, "crc32": "AAAAAB=="},
        c={"state": "FAILED", "error": {"name": "SourceChanged", "cause": "the ETag changed"}},
    )
    poll.polyvFailed, poll.invalid = ["d"], ["../e"]
    manifest = build_manifest(bucket="bkt", task_id=TASK, prefix="p/", attempt=1, poll=poll, failure=None)
    summary = write_manifest(records, "bkt", "p/", manifest)

    assert summary.outcome == "PARTIAL"
    assert summary.counts == {
        "COPIED": 1,
        "SKIPPED": 1,
        "FAILED": 1,
        "POLYV_FAIL": 1,
        "INVALID_VID": 1,
        "NOT_COPIED": 0,
    }
    assert summary.bytes == 15
    assert summary.manifest == f"s3://bkt/p/{TASK}/manifest.json"
    stored = records.get_json(RetrievalLayout("p/", TASK).manifest_key)
    assert stored is not None
    load(Manifest, stored)  # what is written is what the contract says
    by_vid = {v["vid"]: v for v in stored["videos"]}
    assert by_vid["a"] == {
        "vid": "a",
        "outcome": "COPIED",
        "key": f"p/{TASK}/a.mp4",
        "size": 10,
        "crc32": "AAAAAA==",
    }
    assert by_vid["c"]["error"] == "SourceChanged"
    assert by_vid["d"]["outcome"] == "POLYV_FAIL"
    assert by_vid["../e"]["outcome"] == "INVALID_VID"


def test_all_copied_is_complete() -> None:
    manifest = build_manifest(
        bucket="bkt",
        task_id=TASK,
        prefix="",
        attempt=1,
        poll=ledger(a={"state": "COPIED", "size": 3}),
        failure=None,
    )
    assert manifest.outcome == "COMPLETE"


def test_a_failed_retrieval_is_recorded_with_its_named_error_and_a_readable_cause() -> None:
    failure = failure_info(
        StepFunctionsError(
            Error="InvalidSignature", Cause=json.dumps({"errorMessage": "Polyv error 104: invalid signature"})
        )
    )
    manifest = build_manifest(bucket="bkt", task_id=TASK, prefix="", attempt=1, poll=None, failure=failure)
    assert manifest.outcome == "FAILED"
    assert manifest.error == ErrorInfo(name="InvalidSignature", cause="Polyv error 104: invalid signature")


def test_a_timed_out_attempt_says_so_and_lists_what_landed_and_what_did_not() -> None:
    poll = ledger(
        a={"state": "COPIED", "size": 3}, b={"state": "RUNNING", "execution": "x"}, c={"state": "QUEUED"}
    )
    failure = ErrorInfo(name="RetrievalTimedOut", cause="ran 167 h")
    manifest = build_manifest(bucket="bkt", task_id=TASK, prefix="", attempt=2, poll=poll, failure=failure)
    assert manifest.outcome == "TIMED_OUT"
    assert manifest.attempt == 2
    assert {v.vid: v.outcome.value for v in manifest.videos} == {
        "a": "COPIED",
        "b": "NOT_COPIED",
        "c": "NOT_COPIED",
    }


def test_a_cancel_lists_what_landed_even_from_a_record_whose_size_is_not_an_int() -> None:
    """The execution is stopped before the records are read: a record in another shape (a size written
    as 5.0 or "5") still gives the manifest its video, not a 500 with no manifest at all."""

    class NoTransfers:
        def stop_transfers(self, *_: object) -> list[str]:
            return []

    for size in (5.0, "5"):
        sfn, records = FakeStepFunctions(), InMemoryRecords()
        arn = "arn:aws:states:us-east-1:123456789012:stateMachine:R"
        service = RetrievalService(StateMachine(sfn, arn), records, "bkt", lambda: None, NoTransfers)
        service.start(task_id=TASK, prefix="p/", options=RetrievalOptions())
        layout = RetrievalLayout("p/", TASK)
        records.put_json(
            layout.video_record_key("v1"),
            {"vid": "v1", "status": "COPIED", "attempt": 1, "key": "k", "size": size},
        )
        service.cancel(TASK)
        manifest = load(Manifest, records.get_json(layout.manifest_key))
        assert manifest.outcome == "CANCELLED"
        assert [(v.vid, v.outcome, v.size) for v in manifest.videos] == [("v1", "COPIED", 5)]
        assert manifest.bytes == 5
