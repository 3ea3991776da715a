"""Stopping a retrieval attempt: its transfer executions, the transfers already running inside Lambda, and
their open multipart uploads; then what had landed is listed in a manifest.

Used by ``DELETE /retrievals/{id}`` (outcome CANCELLED) and by Finalize when an attempt failed or ran out of
time (its transfers must not keep writing after the manifest said what landed).

Step Functions' StopExecution does not stop a Lambda invocation that is already running, so the attempt's
cancel marker is written first: a running transfer reads it between parts and fails, and its own failure
path aborts its upload. The sweep of open uploads below then catches any upload whose invocation is gone.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from polyv_retriever.aws_errors import AWS_ERRORS, s3_error
from polyv_retriever.contracts import ErrorInfo, PollProgress
from polyv_retriever.pipeline.executions import StateMachine
from polyv_retriever.pipeline.polling import transfer_execution_name
from polyv_retriever.pipeline.records import RecordStore, RetrievalLayout
from polyv_retriever.polyv.models import key_safe_vid
from polyv_retriever.transfer.s3_multipart import JOURNAL_PREFIX
from polyv_retriever.vocabulary import VideoState

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class Canceller:
    def __init__(self, s3: S3Client, bucket: str, records: RecordStore, transfers: StateMachine) -> None:
        self.s3, self.bucket, self.records, self.transfers = s3, bucket, records, transfers

    def stop_transfers(
        self, task_id: str, prefix: str, attempt: int, poll: PollProgress | None, reason: ErrorInfo
    ) -> list[str]:
        """Stop every transfer of the attempt; returns the keys of the uploads aborted."""
        layout = RetrievalLayout(prefix, task_id)
        self.records.put_json(
            layout.cancel_marker_key(attempt), {"attempt": attempt, "reason": reason.name, "at": time.time()}
        )
        for name in self._transfer_names(layout, attempt, poll):
            self.transfers.stop(name, reason.name, reason.cause[:200])
        return self.abort_uploads(layout)

    def _transfer_names(self, layout: RetrievalLayout, attempt: int, poll: PollProgress | None) -> list[str]:
        if poll is not None:
            return [
                v.execution for v in poll.videos.values() if v.execution and v.state is VideoState.RUNNING
            ]
        # The API does not see the running ledger: every ready video of the task may have a transfer.
        status = self.records.get_json(layout.status_key) or {}
        vids = [str(v.get("vid")) for v in status.get("videos", []) if v.get("status") == "SUCCESS"]
        return [transfer_execution_name(layout.task_id, attempt, v) for v in vids if key_safe_vid(v) is None]

    def abort_uploads(self, layout: RetrievalLayout) -> list[str]:
        """Abort every open multipart upload under the retrieval's root, and forget its journal."""
        aborted = []
        try:
            paginator = self.s3.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=layout.root):
                for upload in page.get("Uploads", []):
                    key, upload_id = upload["Key"], upload["UploadId"]
                    with contextlib.suppress(ClientError):  # already completed or aborted meanwhile
                        self.s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
                    with contextlib.suppress(ClientError):
                        self.s3.delete_object(Bucket=self.bucket, Key=JOURNAL_PREFIX + key + ".json")
                    aborted.append(key)
        except AWS_ERRORS as exc:
            raise s3_error(f"ListMultipartUploads {layout.root} (aborting its uploads)", exc) from None
        return aborted
