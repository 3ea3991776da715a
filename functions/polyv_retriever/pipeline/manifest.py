"""The end of a retrieval attempt: every video's outcome in one manifest in S3, and a short summary.

Video outcomes and the attempt's outcome are the enums of ``contracts``. When the attempt as a whole failed
(bad credentials, the poll deadline, its time budget, a cancel), the manifest says so and still lists what
had been copied.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import msgspec

from polyv_retriever.contracts import (
    ErrorInfo,
    FailedSummary,
    Manifest,
    ManifestVideo,
    PollProgress,
    StepFunctionsError,
    Summary,
    dump,
)
from polyv_retriever.errors import RetrievalCancelled, RetrievalTimedOut
from polyv_retriever.pipeline.records import RecordStore, RetrievalLayout
from polyv_retriever.vocabulary import LANDED, Outcome, VideoOutcome, VideoState

_CAUSE_LIMIT = 600
_FAILURE_OUTCOMES = {
    RetrievalTimedOut.__name__: Outcome.TIMED_OUT,
    RetrievalCancelled.__name__: Outcome.CANCELLED,
}


def build_manifest(
    *,
    bucket: str,
    task_id: str,
    prefix: str,
    attempt: int,
    poll: PollProgress | None,
    failure: ErrorInfo | None,
    copied_records: dict[str, ManifestVideo] | None = None,
) -> Manifest:
    """``copied_records``: what the per-video records say landed, for an attempt that ended before its
    ledger came back (a cancel); the ledger wins where both know a video."""
    layout = RetrievalLayout(prefix, task_id)
    videos: dict[str, ManifestVideo] = dict(copied_records or {})
    for vid, video in (poll.videos if poll else {}).items():
        if video.state in (VideoState.COPIED, VideoState.SKIPPED):
            videos[vid] = ManifestVideo(
                vid=vid,
                outcome=VideoOutcome(video.state.value),
                key=video.key,
                size=video.size,
                crc32=video.crc32,
                s3Checksum=video.s3Checksum,
            )
        elif video.state is VideoState.FAILED:
            error = video.error or ErrorInfo(name="Unknown")
            videos[vid] = ManifestVideo(
                vid=vid, outcome=VideoOutcome.FAILED, error=error.name, cause=error.cause
            )
        elif vid not in videos:
            videos[vid] = ManifestVideo(vid=vid, outcome=VideoOutcome.NOT_COPIED)
    for vid in poll.polyvFailed if poll else []:
        videos[vid] = ManifestVideo(vid=vid, outcome=VideoOutcome.POLYV_FAIL)
    for vid in poll.invalid if poll else []:
        videos[vid] = ManifestVideo(
            vid=vid[:200],
            outcome=VideoOutcome.INVALID_VID,
            error="InvalidVid",
            cause="not usable in an S3 key",
        )

    counts = {o: sum(1 for v in videos.values() if v.outcome is o) for o in VideoOutcome}
    if failure:
        outcome = _FAILURE_OUTCOMES.get(failure.name, Outcome.FAILED)
    elif any(counts[o] for o in VideoOutcome if o not in LANDED):
        outcome = Outcome.PARTIAL
    else:
        outcome = Outcome.COMPLETE
    return Manifest(
        taskId=task_id,
        attempt=attempt,
        outcome=outcome,
        finishedAt=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        destination=f"s3://{bucket}/{layout.root}",
        counts=counts,
        bytes=sum(v.size or 0 for v in videos.values() if v.outcome in LANDED),
        videos=sorted(videos.values(), key=lambda v: v.vid),
        error=failure,
    )


def write_manifest(records: RecordStore, bucket: str, prefix: str, manifest: Manifest) -> Summary:
    layout = RetrievalLayout(prefix, manifest.taskId)
    records.put_json(layout.manifest_key, dump(manifest))
    summary = Summary(
        taskId=manifest.taskId,
        attempt=manifest.attempt,
        outcome=manifest.outcome,
        counts=manifest.counts,
        bytes=manifest.bytes,
        manifest=f"s3://{bucket}/{layout.manifest_key}",
        error=manifest.error,
    )
    # The same fields, as the type the failure path's ResultSelector reads (its error always there).
    return FailedSummary(**msgspec.structs.asdict(summary)) if manifest.error else summary


def failure_info(failure: StepFunctionsError | None) -> ErrorInfo | None:
    if failure is None:
        return None
    return ErrorInfo(name=failure.Error, cause=readable_cause(failure.Cause))


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


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None
