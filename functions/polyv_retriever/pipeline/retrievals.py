"""Retrievals as the API sees them: start, run again, cancel, describe and list.

A retrieval is a Polyv task (its id is the taskId); each run of it is an *attempt*, one execution of the
retrieval state machine named ``{taskId}.{attempt}`` (attempts count from 1). Step Functions keeps names
unique, so two requests racing to start the same attempt make one execution, and each new attempt has a
name of its own (no 90-day wait to run a task again).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from polyv_retriever import observability
from polyv_retriever.attempts import attempt_name, parse_attempt_name
from polyv_retriever.contracts import (
    ContractError,
    ErrorInfo,
    ExecutionInput,
    Manifest,
    ManifestVideo,
    RetrievalOptions,
    dump,
    load,
    to_json,
)
from polyv_retriever.errors import RetrievalConflict, RetrievalNotFound
from polyv_retriever.pipeline.cancel import Canceller
from polyv_retriever.pipeline.executions import Execution, StateMachine
from polyv_retriever.pipeline.manifest import build_manifest, iso, readable_cause, write_manifest
from polyv_retriever.pipeline.records import RecordStore, RetrievalLayout, validate_prefix
from polyv_retriever.polyv.client import PolyvClient
from polyv_retriever.polyv.models import validate_task_id
from polyv_retriever.vocabulary import (
    ENDED_UNSUCCESSFULLY,
    LANDED,
    RETRIED_BY_RETRY_FAILED,
    ExecutionStatus,
    VideoOutcome,
    VideoState,
)

#: Attempts are looked up one by one (``{taskId}.1``, ``.2``, ...): a bound keeps a GET cheap.
MAX_ATTEMPTS = 50


def _bytes_in_s3(record: dict[str, Any]) -> int:
    """A finished video counts whole; a running one by what its transfer has moved so far."""
    done = record.get("status") in (VideoState.COPIED, VideoState.SKIPPED)
    return int(record.get("size", 0) if done else record.get("bytesTransferred", 0))


class RetrievalService:
    def __init__(
        self,
        retrievals: StateMachine,
        records: RecordStore,
        bucket: str,
        polyv: Callable[[], PolyvClient],
        canceller: Callable[[], Canceller],
        *,
        events: Callable[[], Any] | None = None,
    ) -> None:
        self.retrievals, self.records, self.bucket = retrievals, records, bucket
        # factories: credentials, the canceller and EventBridge are only needed by some routes
        self._polyv = polyv
        self._canceller = canceller
        self._events = events

    # --- attempts -----------------------------------------------------------------------------------------

    def attempts(self, task_id: str) -> list[Execution]:
        found = []
        for attempt in range(1, MAX_ATTEMPTS + 1):
            execution = self.retrievals.describe(attempt_name(task_id, attempt))
            if execution is None:
                break
            found.append(execution)
        return found

    def _latest(self, task_id: str) -> tuple[int, Execution]:
        attempts = self.attempts(validate_task_id(task_id))
        if not attempts:
            raise RetrievalNotFound(f"no retrieval {task_id}")
        return len(attempts), attempts[-1]

    def _start_attempt(self, document: ExecutionInput) -> bool:
        return self.retrievals.start(attempt_name(document.taskId, document.attempt), to_json(document))

    # --- the routes' logic -------------------------------------------------------------------------------

    def start(
        self, *, task_id: str, prefix: str | None, options: RetrievalOptions
    ) -> tuple[bool, dict[str, Any]]:
        """Start attempt 1 of the task, or answer the retrieval that exists. (started?, the retrieval)"""
        task_id = validate_task_id(task_id)
        document = ExecutionInput(taskId=task_id, prefix=validate_prefix(prefix), attempt=1, options=options)
        if self.attempts(task_id):
            return False, self.describe(task_id)
        return self._start_attempt(document), self.describe(task_id)

    def run_again(self, *, task_id: str, prefix: str | None, retry_failed: bool) -> dict[str, Any]:
        """A new attempt of a finished retrieval: every video (intact ones are skipped by the transfer) or,
        with ``retry_failed``, only the videos that failed on our side in the latest attempt."""
        # A malformed request is refused as such, whatever the retrieval's state.
        new_prefix = None if prefix is None else validate_prefix(prefix)
        number, latest = self._latest(task_id)
        if not ExecutionStatus(latest.status).terminal:
            raise RetrievalConflict(f"retrieval {task_id} attempt {number} is still {latest.status}")
        if number >= MAX_ATTEMPTS:
            # An attempt past the bound would run but never be found again by GET, list's links or cancel.
            raise RetrievalConflict(
                f"retrieval {task_id} has had {number} attempts, the limit is {MAX_ATTEMPTS}",
                hint="start a new retrieval task for these videos (POST /retrievals with vids)",
            )
        previous = load(ExecutionInput, latest.input)
        only = None
        if retry_failed:
            manifest = self._manifest(previous.prefix, task_id)
            if manifest is None or manifest.attempt != number:
                raise RetrievalConflict(f"attempt {number} of {task_id} left no manifest: use rerun")
            only = sorted(v.vid for v in manifest.videos if v.outcome in RETRIED_BY_RETRY_FAILED)
            if not only:
                raise RetrievalConflict(f"no video of {task_id} failed on our side in attempt {number}")
        document = ExecutionInput(
            taskId=task_id,
            prefix=previous.prefix if new_prefix is None else new_prefix,
            attempt=number + 1,
            options=previous.options,
            only=only,
        )
        self._start_attempt(document)
        return self.describe(task_id)

    def cancel(self, retrieval_id: str) -> dict[str, Any]:
        """Stop the running attempt, its transfers and their uploads; a CANCELLED manifest lists what had
        landed."""
        number, latest = self._latest(retrieval_id)
        if ExecutionStatus(latest.status).terminal:
            raise RetrievalConflict(
                f"retrieval {retrieval_id} attempt {number} already ended: {latest.status}"
            )
        document = load(ExecutionInput, latest.input)
        reason = ErrorInfo(name="RetrievalCancelled", cause="cancelled by DELETE /retrievals/{id}")
        self.retrievals.stop(latest.name, reason.name, reason.cause)
        self._canceller().stop_transfers(document.taskId, document.prefix, number, None, reason)
        layout = RetrievalLayout(document.prefix, document.taskId)
        landed = {}
        for record in self.records.list_json(layout.video_records_prefix):
            if record.get("status") in LANDED and record.get("attempt", number) == number:
                # A record is S3 data, untyped: checked, but the execution is already stopped, so what
                # converts without loss is taken rather than leave the attempt with no manifest.
                landed[str(record["vid"])] = load(
                    ManifestVideo,
                    {
                        "vid": str(record["vid"]),
                        "outcome": record["status"],
                        **{k: record[k] for k in ("key", "size", "crc32", "s3Checksum") if k in record},
                    },
                    lax=True,
                )
        manifest = build_manifest(
            bucket=self.bucket,
            task_id=document.taskId,
            prefix=document.prefix,
            attempt=number,
            poll=None,
            failure=reason,
            copied_records=landed,
        )
        status = self.records.get_json(layout.status_key) or {}
        for video in status.get("videos", []):
            vid = str(video.get("vid"))
            if vid not in landed and (document.only is None or vid in document.only):
                manifest.videos.append(ManifestVideo(vid=vid[:200], outcome=VideoOutcome.NOT_COPIED))
        manifest.videos.sort(key=lambda v: v.vid)
        manifest.counts = {o: sum(1 for v in manifest.videos if v.outcome is o) for o in VideoOutcome}
        summary = write_manifest(self.records, self.bucket, document.prefix, manifest)
        if self._events is not None:
            # A stopped execution never reaches Finalize: the cancel is announced here, as Finalize announces
            # every other end (the event for users' pipelines, the Retrievals/Videos metrics).
            observability.announce_completion(
                self._events(),
                dump(summary),
                execution=latest.name,
                started_at=latest.started.timestamp(),
            )
        return self.describe(retrieval_id)

    def describe(self, retrieval_id: str) -> dict[str, Any]:
        task_id = validate_task_id(retrieval_id)
        attempts = self.attempts(task_id)
        if not attempts:
            raise RetrievalNotFound(f"no retrieval {task_id}")
        execution = attempts[-1]
        document = load(ExecutionInput, execution.input)
        layout = RetrievalLayout(document.prefix, task_id)
        transfers = {}
        for doc in self.records.list_json(layout.video_records_prefix):
            if isinstance(doc.get("vid"), str):
                transfers[doc["vid"]] = doc
        body: dict[str, Any] = {
            "retrievalId": task_id,
            "taskId": task_id,
            "attempt": len(attempts),
            "status": execution.status,
            "startedAt": iso(execution.started),
            "stoppedAt": iso(execution.stopped),
            "destination": f"s3://{self.bucket}/{layout.root}",
            "options": dump(document.options),
            "polyv": self.records.get_json(layout.status_key),
            "transfers": transfers,
            "bytesCopied": sum(_bytes_in_s3(d) for d in transfers.values()),
            "attempts": [
                {"attempt": n, "status": e.status, "startedAt": iso(e.started), "stoppedAt": iso(e.stopped)}
                for n, e in enumerate(attempts, start=1)
            ],
            "links": {"self": f"/retrievals/{task_id}"},
        }
        if document.only is not None:
            body["only"] = document.only
        if execution.output:
            body["result"] = execution.output
        elif ExecutionStatus(execution.status).terminal:
            manifest = self._manifest(document.prefix, task_id)
            if manifest is not None and manifest.attempt == len(attempts):
                body["result"] = {
                    "outcome": manifest.outcome.value,
                    "counts": {k.value: v for k, v in manifest.counts.items()},
                    "bytes": manifest.bytes,
                    "manifest": f"s3://{self.bucket}/{layout.manifest_key}",
                }
        if execution.status in ENDED_UNSUCCESSFULLY:
            body["error"] = {"name": execution.error, "cause": readable_cause(execution.cause)}
        return body

    def list(self, status: str | None, limit: int, next_token: str | None) -> dict[str, Any]:
        """Attempts newest first, one entry per attempt (the retrieval id and its number)."""
        rows, token = self.retrievals.list(status, limit, next_token)
        retrievals = []
        for name, state, started in rows:
            parsed = parse_attempt_name(name)
            if parsed is None:
                continue
            retrievals.append(
                {
                    "retrievalId": parsed[0],
                    "attempt": parsed[1],
                    "status": state,
                    "startedAt": iso(started),
                    "links": {"self": f"/retrievals/{parsed[0]}"},
                }
            )
        return {"retrievals": retrievals, "nextToken": token}

    def _manifest(self, prefix: str, task_id: str) -> Manifest | None:
        document = self.records.get_json(RetrievalLayout(prefix, task_id).manifest_key)
        if document is None:
            return None
        try:
            return load(Manifest, document)
        except ContractError:
            return None  # a manifest of the first version (no attempt): nothing to retry from
