"""The end of a retrieval: every video's outcome in one manifest in S3, and a short summary.

Outcomes: COPIED (verified in S3), SKIPPED (already there and intact), FAILED (our transfer failed after its
retries; the error says why), POLYV_FAIL (Polyv could not thaw it). When the whole retrieval failed (bad
credentials, the deadline), the manifest says so and lists what was known.
"""

from __future__ import annotations

import json
import time
from typing import Any

from polyv_retriever.pipeline.records import RecordStore, RetrievalLayout

_CAUSE_LIMIT = 600


def finalize(
    records: RecordStore,
    *,
    bucket: str,
    task_id: str,
    prefix: str,
    poll: dict[str, Any] | None,
    transfers: list[dict[str, Any]] | None,
    failure: dict[str, Any] | None = None,
) -> dict[str, Any]:
    layout = RetrievalLayout(prefix, task_id)
    videos: list[dict[str, Any]] = []
    for item in transfers or []:
        if item.get("status") in ("COPIED", "SKIPPED"):
            result = item.get("result") or {}
            videos.append(
                {
                    "vid": item["vid"],
                    "outcome": item["status"],
                    **_pick(result, "key", "size", "crc32", "s3Checksum"),
                }
            )
        else:
            error = item.get("error") or {}
            videos.append(
                {
                    "vid": item.get("vid"),
                    "outcome": "FAILED",
                    "error": error.get("Error", "Unknown"),
                    "cause": readable_cause(error.get("Cause")),
                }
            )
    videos.extend({"vid": vid, "outcome": "POLYV_FAIL"} for vid in (poll or {}).get("failed", []))

    counts = {
        o: sum(1 for v in videos if v["outcome"] == o) for o in ("COPIED", "SKIPPED", "FAILED", "POLYV_FAIL")
    }
    if failure:
        outcome = "FAILED"
    elif counts["FAILED"] or counts["POLYV_FAIL"]:
        outcome = "PARTIAL"
    else:
        outcome = "COMPLETE"
    manifest: dict[str, Any] = {
        "taskId": task_id,
        "outcome": outcome,
        "finishedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "destination": f"s3://{bucket}/{layout.root}",
        "counts": counts,
        "bytes": sum(v.get("size", 0) for v in videos if v["outcome"] in ("COPIED", "SKIPPED")),
        "videos": sorted(videos, key=lambda v: str(v["vid"])),
    }
    if failure:
        manifest["error"] = {
            "name": failure.get("Error", "Unknown"),
            "cause": readable_cause(failure.get("Cause")),
        }
    records.put_json(layout.manifest_key, manifest)
    summary = {k: manifest[k] for k in ("taskId", "outcome", "counts", "bytes")}
    summary["manifest"] = f"s3://{bucket}/{layout.manifest_key}"
    if failure:
        summary["error"] = manifest["error"]
    return summary


def _pick(source: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: source[k] for k in keys if k in source}


def readable_cause(cause: object) -> str:
    """Step Functions' Cause for a Lambda error is the runtime's JSON; the message is what a person reads."""
    if isinstance(cause, str):
        try:
            parsed = json.loads(cause)
        except ValueError:
            return cause[:_CAUSE_LIMIT]
        if isinstance(parsed, dict) and "errorMessage" in parsed:
            return str(parsed["errorMessage"])[:_CAUSE_LIMIT]
        return cause[:_CAUSE_LIMIT]
    return "" if cause is None else str(cause)[:_CAUSE_LIMIT]
