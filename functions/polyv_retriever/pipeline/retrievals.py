"""Retrievals as the API sees them: start one execution per Polyv task, and tell where one stands.

The execution is named after the taskId, so a repeated POST for the same task finds the execution that
already exists instead of starting a second one (Step Functions keeps names unique per state machine).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from polyv_retriever.aws_errors import AWS_ERRORS, error_code, sfn_error
from polyv_retriever.errors import RetrievalNotFound
from polyv_retriever.pipeline.manifest import readable_cause
from polyv_retriever.pipeline.records import RecordStore, RetrievalLayout, validate_prefix
from polyv_retriever.polyv.client import PolyvClient
from polyv_retriever.polyv.models import validate_expire_days, validate_task_id, validate_vids

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient


def _bytes_in_s3(record: dict[str, Any]) -> int:
    """A finished video counts whole; a running one by what its transfer has moved so far."""
    done = record.get("status") in ("COPIED", "SKIPPED")
    return int(record.get("size", 0) if done else record.get("bytesTransferred", 0))


class RetrievalService:
    def __init__(
        self,
        sfn: SFNClient,
        state_machine_arn: str,
        records: RecordStore,
        bucket: str,
        polyv: Callable[[], PolyvClient],
    ) -> None:
        self.sfn, self.state_machine_arn, self.records, self.bucket = sfn, state_machine_arn, records, bucket
        self._polyv = polyv  # a factory: reading credentials is only needed when a task is created

    def execution_arn(self, retrieval_id: str) -> str:
        return self.state_machine_arn.replace(":stateMachine:", ":execution:", 1) + ":" + retrieval_id

    def start(
        self,
        *,
        task_id: str | None = None,
        vids: list[str] | None = None,
        expire_days: int | None = None,
        prefix: str | None = None,
    ) -> tuple[bool, dict[str, Any]]:
        """Returns (started a new execution?, the retrieval)."""
        prefix = validate_prefix(prefix)
        if vids is not None:
            vids, days = validate_vids(vids), validate_expire_days(expire_days)
            task_id = self._polyv().create_task(vids, days)
        task_id = validate_task_id(task_id)
        try:
            return False, self.describe(task_id)
        except RetrievalNotFound:
            pass
        try:
            # Two POSTs racing past the lookup still make one execution: names are unique per state
            # machine, and a repeat with the same input while it runs is answered with the same execution.
            self.sfn.start_execution(
                stateMachineArn=self.state_machine_arn,
                name=task_id,
                input=json.dumps({"taskId": task_id, "prefix": prefix}),
            )
        except AWS_ERRORS as exc:
            if error_code(exc) != "ExecutionAlreadyExists":
                raise sfn_error("StartExecution", exc) from None
            return False, self.describe(task_id)
        return True, self.describe(task_id)

    def describe(self, retrieval_id: str) -> dict[str, Any]:
        task_id = validate_task_id(retrieval_id)
        try:
            execution = self.sfn.describe_execution(executionArn=self.execution_arn(task_id))
        except AWS_ERRORS as exc:
            if error_code(exc) in ("ExecutionDoesNotExist", "ResourceNotFound"):
                raise RetrievalNotFound(f"no retrieval {task_id}") from None
            raise sfn_error("DescribeExecution", exc) from None
        prefix = json.loads(execution.get("input") or "{}").get("prefix", "")
        layout = RetrievalLayout(prefix, task_id)
        transfers = {doc["vid"]: doc for doc in self.records.list_json(layout.video_records_prefix)}
        body: dict[str, Any] = {
            "retrievalId": task_id,
            "taskId": task_id,
            "status": execution["status"],
            "startedAt": execution["startDate"].isoformat(),
            "stoppedAt": execution["stopDate"].isoformat() if execution.get("stopDate") else None,
            "destination": f"s3://{self.bucket}/{layout.root}",
            "polyv": self.records.get_json(layout.status_key),
            "transfers": transfers,
            "bytesCopied": sum(_bytes_in_s3(d) for d in transfers.values()),
            "links": {"self": f"/retrievals/{task_id}"},
        }
        if execution.get("output"):
            body["result"] = json.loads(execution["output"])
        if execution["status"] in ("FAILED", "TIMED_OUT", "ABORTED"):
            body["error"] = {"name": execution.get("error"), "cause": readable_cause(execution.get("cause"))}
        return body
