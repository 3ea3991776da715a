"""One SUCCESS video of a task into S3: a fresh URL from Polyv, the transfer engine, a record of the result.

The download URL is fetched here rather than carried through the state machine: it is a bearer credential
(it must not sit in the execution history) and it expires (a Map item that starts an hour later would hold
a dead one). A 403 in the middle of the copy asks Polyv again through the same function.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import urllib3

from polyv_retriever.errors import RetrieverError, VideoNotReady
from polyv_retriever.pipeline.records import RecordStore, RetrievalLayout, extension_of
from polyv_retriever.polyv.models import TaskReader, VideoStatus
from polyv_retriever.transfer.allowlist import DownloadAllowList
from polyv_retriever.transfer.engine import TransferEngine
from polyv_retriever.transfer.resume import Continuation
from polyv_retriever.transfer.s3_multipart import S3Destination
from polyv_retriever.transfer.source import HttpSource

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def transfer_video(
    *,
    client: TaskReader,
    engine: TransferEngine,
    allowlist: DownloadAllowList,
    pool: urllib3.PoolManager,
    s3: S3Client,
    bucket: str,
    records: RecordStore,
    task_id: str,
    vid: str,
    prefix: str,
    continuation: dict[str, Any] | None,
    time_left: Callable[[], float] | None,
) -> dict[str, Any]:
    layout = RetrievalLayout(prefix, task_id)

    def fresh_url() -> str:
        video = client.get_task(task_id).video(vid)
        if video is None or video.status is not VideoStatus.SUCCESS or not video.url:
            status = video.status.value if video else "not in the task"
            raise VideoNotReady(f"video {vid} of task {task_id} is {status}, not SUCCESS")
        return video.url

    record: dict[str, Any] = {"vid": vid, "taskId": task_id, "updatedAt": time.time()}
    progress = _ProgressRecorder(records, layout.video_record_key(vid), record)
    engine = engine.with_progress(progress)
    try:
        source = HttpSource(fresh_url, allowlist, pool)
        key = layout.video_key(vid, extension_of(source.current_url))
        result = engine.copy(
            source,
            S3Destination(s3, bucket, key, engine.settings.checksum_type),
            metadata={"polyv-vid": vid, "polyv-task-id": task_id},
            continuation=Continuation.from_dict(continuation) if continuation else None,
            time_left=time_left,
        )
    except RetrieverError as exc:
        records.put_json(
            layout.video_record_key(vid),
            {**record, "status": "FAILED", "error": exc.name, "message": str(exc)},
        )
        raise
    summary = {
        "key": key,
        "size": result.size,
        "crc32": result.crc32,
        "s3Checksum": result.s3_checksum,
        "bytesTransferred": result.bytes_transferred,
        "seconds": round(result.seconds, 3),
        "parts": result.parts,
        "ranged": result.ranged,
        "urlRefreshes": result.url_refreshes,
    }
    records.put_json(layout.video_record_key(vid), {**record, "status": result.status, **summary})
    return {
        "taskId": task_id,
        "vid": vid,
        "prefix": prefix,
        "status": result.status,
        "continuation": result.continuation.to_dict() if result.continuation else None,
        "result": summary,
    }


class _ProgressRecorder:
    """Writes the video's record while bytes move, at most every few seconds (one small PUT each), so
    ``GET /retrievals/{id}`` shows live progress without reading the execution history."""

    INTERVAL_SECONDS = 2.0

    def __init__(self, records: RecordStore, key: str, record: dict[str, Any]) -> None:
        self._records, self._key, self._record = records, key, record
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
                "status": "RUNNING",
                "bytesTransferred": self._bytes,
                "size": total,
                "bytesPerSecond": round(self._bytes / max(now - self._began, 1e-6)),
                "updatedAt": time.time(),
            }
        self._records.put_json(self._key, snapshot)
