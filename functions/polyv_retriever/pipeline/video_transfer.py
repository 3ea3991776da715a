"""One SUCCESS video of a task into S3: a fresh URL from Polyv, the transfer engine, a record of the result.

The download URL is fetched here rather than carried through the state machine: it is a bearer credential
(it must not sit in the execution history) and it expires (a Map item that starts an hour later would hold
a dead one). A 403 in the middle of the copy asks Polyv again through the same function.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import msgspec
import urllib3

from polyv_retriever.contracts import RetrievalOptions, TransferEvent, TransferResult, TransferSummary, dump
from polyv_retriever.errors import RetrievalCancelled, RetrieverError, VideoNotReady
from polyv_retriever.pipeline.records import RecordStore, RetrievalLayout, extension_of
from polyv_retriever.polyv.models import TaskReader, VideoStatus, key_safe_vid
from polyv_retriever.transfer.allowlist import DownloadAllowList
from polyv_retriever.transfer.engine import TransferEngine
from polyv_retriever.transfer.resume import Continuation
from polyv_retriever.transfer.s3_multipart import S3Destination
from polyv_retriever.transfer.source import HttpSource
from polyv_retriever.vocabulary import TransferStatus, VideoState

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@dataclass(frozen=True)
class StorageDefaults:
    """How objects are stored unless the request says otherwise (template parameters)."""

    storage_class: str = "STANDARD"
    kms_key_id: str = ""

    def object_args(self, options: RetrievalOptions, vid: str, task_id: str) -> dict[str, str]:
        args = {
            "StorageClass": (options.storageClass or self.storage_class),
            # Tags (not only metadata) so that lifecycle rules and cost reports can select by video or task.
            "Tagging": urlencode({"polyv-vid": vid, "polyv-task-id": task_id}),
        }
        if self.kms_key_id:
            args |= {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_id}
        return args


def transfer_video(
    *,
    client: TaskReader,
    engine: TransferEngine,
    allowlist: DownloadAllowList,
    pool: urllib3.PoolManager,
    s3: S3Client,
    bucket: str,
    records: RecordStore,
    event: TransferEvent,
    storage: StorageDefaults,
    time_left: Callable[[], float] | None,
) -> TransferResult:
    task_id, vid, prefix, continuation = event.taskId, event.vid, event.prefix, event.continuation
    problem = key_safe_vid(vid)
    if problem is not None:
        # The dispatcher never starts one for such a vid; an event from elsewhere is refused the same way.
        raise VideoNotReady(f"vid {vid[:80]!r} cannot be part of an S3 key: {problem}")
    layout = RetrievalLayout(prefix, task_id)
    cancel_key = layout.cancel_marker_key(event.attempt)
    if records.get_json(cancel_key) is not None:
        raise RetrievalCancelled(f"retrieval {task_id} attempt {event.attempt} was cancelled")

    def fresh_url() -> str:
        video = client.get_task(task_id).video(vid)
        if video is None or video.status is not VideoStatus.SUCCESS or not video.url:
            status = video.status.value if video else "not in the task"
            raise VideoNotReady(f"video {vid} of task {task_id} is {status}, not SUCCESS")
        return video.url

    record: dict[str, Any] = {"vid": vid, "taskId": task_id, "updatedAt": time.time()}
    progress = _ProgressRecorder(records, layout.video_record_key(vid), record, cancel_key)
    engine = engine.with_progress(progress)
    try:
        source = HttpSource(fresh_url, allowlist, pool)
        key = layout.video_key(vid, extension_of(source.current_url))
        result = engine.copy(
            source,
            S3Destination(
                s3,
                bucket,
                key,
                engine.settings.checksum_type,
                storage.object_args(event.options, vid, task_id),
            ),
            metadata={"polyv-vid": vid, "polyv-task-id": task_id},
            continuation=Continuation.from_dict(continuation) if continuation else None,
            time_left=time_left,
        )
    except RetrieverError as exc:
        records.put_json(
            layout.video_record_key(vid),
            {**record, "status": VideoState.FAILED, "error": exc.name, "message": str(exc)},
        )
        raise
    summary = TransferSummary(
        key=key,
        size=result.size,
        crc32=result.crc32,
        s3Checksum=result.s3_checksum,
        bytesTransferred=result.bytes_transferred,
        seconds=round(result.seconds, 3),
        parts=result.parts,
        ranged=result.ranged,
        urlRefreshes=result.url_refreshes,
    )
    status = TransferStatus(result.status)
    records.put_json(
        layout.video_record_key(vid),
        {**record, "status": status.value, "attempt": event.attempt, **dump(summary)},
    )
    fields = msgspec.structs.asdict(event)  # shallow: options stays a RetrievalOptions
    fields.pop("continuation")
    return TransferResult(
        **fields,
        continuation=result.continuation.to_dict() if result.continuation else None,
        status=status,
        result=summary,
    )


class _ProgressRecorder:
    """Writes the video's record while bytes move, at most every few seconds (one small PUT each), so
    ``GET /retrievals/{id}`` shows live progress without reading the execution history."""

    INTERVAL_SECONDS = 2.0

    def __init__(self, records: RecordStore, key: str, record: dict[str, Any], cancel_key: str) -> None:
        self._records, self._key, self._record, self._cancel_key = records, key, record, cancel_key
        self._lock = threading.Lock()
        self._bytes = 0
        self._last = time.monotonic()
        self._began = self._last

    def __call__(self, moved: int, total: int) -> None:
        with self._lock:
            self._bytes += moved
            now = time.monotonic()
            if now - self._last < self.INTERVAL_SECONDS:
                return
            self._last = now
            snapshot = {
                **self._record,
                "status": VideoState.RUNNING,
                "bytesTransferred": self._bytes,
                "size": total,
                "bytesPerSecond": round(self._bytes / max(now - self._began, 1e-6)),
                "updatedAt": time.time(),
            }
        self._records.put_json(self._key, snapshot)
        # A cancelled retrieval stops here, between parts: the engine's failure path aborts the upload.
        # (StopExecution does not stop a Lambda invocation that is already running.)
        if self._records.get_json(self._cancel_key) is not None:
            raise RetrievalCancelled("the retrieval was cancelled during this transfer")
