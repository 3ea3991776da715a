"""The manifest: every video's outcome, the retrieval's outcome, readable causes."""

import json

from polyv_retriever.pipeline.manifest import finalize
from polyv_retriever.pipeline.records import RetrievalLayout
from tests.fakes import InMemoryRecords

TASK = "0123456789abcdef0123456789abcdef"


def test_every_video_has_an_outcome_and_the_summary_counts_them() -> None:
    records = InMemoryRecords()
    transfers = [
        {
            "vid": "a",
            "status": "COPIED",
            "result": {"key": f"p/{TASK}/a.mp4", "size": 10, "crc32": "AAAAAA=="},
        },
        {
            "vid": "b",
            "status": "SKIPPED",
            "result": {"key": f"p/{TASK}/b.mp4", "size": 5, "crc32": "AAAAAB=="},
        },
        {
            "vid": "c",
            "status": "FAILED",
            "error": {
                "Error": "SourceChanged",
                "Cause": json.dumps({"errorType": "SourceChanged", "errorMessage": "the ETag changed"}),
            },
        },
    ]
    summary = finalize(
        records, bucket="bkt", task_id=TASK, prefix="p/", poll={"failed": ["d"]}, transfers=transfers
    )

    assert summary["outcome"] == "PARTIAL"
    assert summary["counts"] == {"COPIED": 1, "SKIPPED": 1, "FAILED": 1, "POLYV_FAIL": 1}
    assert summary["bytes"] == 15
    assert summary["manifest"] == f"s3://bkt/p/{TASK}/manifest.json"
    manifest = records.get_json(RetrievalLayout("p/", TASK).manifest_key)
    assert manifest is not None
    by_vid = {v["vid"]: v for v in manifest["videos"]}
    assert by_vid["a"] == {
        "vid": "a",
        "outcome": "COPIED",
        "key": f"p/{TASK}/a.mp4",
        "size": 10,
        "crc32": "AAAAAA==",
    }
    assert by_vid["c"]["error"] == "SourceChanged"
    assert by_vid["c"]["cause"] == "the ETag changed"  # the message, not the runtime's JSON
    assert by_vid["d"]["outcome"] == "POLYV_FAIL"


def test_all_copied_is_complete() -> None:
    summary = finalize(
        InMemoryRecords(),
        bucket="bkt",
        task_id=TASK,
        prefix="",
        poll={"failed": []},
        transfers=[{"vid": "a", "status": "COPIED", "result": {"size": 3}}],
    )
    assert summary["outcome"] == "COMPLETE"


def test_a_failed_retrieval_is_recorded_with_its_named_error() -> None:
    records = InMemoryRecords()
    failure = {
        "Error": "InvalidSignature",
        "Cause": json.dumps({"errorMessage": "Polyv error 104: invalid signature"}),
    }
    summary = finalize(
        records, bucket="bkt", task_id=TASK, prefix="", poll=None, transfers=None, failure=failure
    )
    assert summary["outcome"] == "FAILED"
    assert summary["error"] == {"name": "InvalidSignature", "cause": "Polyv error 104: invalid signature"}
    assert records.get_json(f"{TASK}/manifest.json")["error"]["name"] == "InvalidSignature"  # type: ignore[index]
