"""Step Functions as the pipeline uses it: start and describe executions by name, stop them, list them.

Every failure of a call becomes the project's ``OrchestrationError`` (transient: retried by the state
machine, answered 503 by the API), never a raw botocore error, and never reported as an S3 failure; the
translation is the one in :mod:`polyv_retriever.aws_errors`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from polyv_retriever.aws_errors import AWS_ERRORS, error_code, sfn_error
from polyv_retriever.contracts import TransferEvent, dump
from polyv_retriever.errors import InvalidInput

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

_MISSING = ("ExecutionDoesNotExist", "ResourceNotFound")


@dataclass(frozen=True)
class Execution:
    name: str
    status: str
    input: dict[str, Any]
    output: dict[str, Any] | None
    error: str | None
    cause: str | None
    started: datetime
    stopped: datetime | None


class StateMachine:
    """One state machine's executions, addressed by name."""

    def __init__(self, sfn: SFNClient, state_machine_arn: str) -> None:
        self.sfn, self.arn = sfn, state_machine_arn

    def execution_arn(self, name: str) -> str:
        return self.arn.replace(":stateMachine:", ":execution:", 1) + ":" + name

    def start(self, name: str, document: dict[str, Any]) -> bool:
        """Start the named execution; False when one with that name already exists (nothing started)."""
        try:
            self.sfn.start_execution(stateMachineArn=self.arn, name=name, input=json.dumps(document))
        except AWS_ERRORS as exc:
            if error_code(exc) == "ExecutionAlreadyExists":
                return False
            raise sfn_error("StartExecution", exc) from None
        return True

    def describe(self, name: str) -> Execution | None:
        try:
            raw = self.sfn.describe_execution(executionArn=self.execution_arn(name))
        except AWS_ERRORS as exc:
            if error_code(exc) in _MISSING:
                return None
            raise sfn_error("DescribeExecution", exc) from None
        return Execution(
            name=name,
            status=raw["status"],
            input=json.loads(raw.get("input") or "{}"),
            output=json.loads(raw["output"]) if raw.get("output") else None,
            error=raw.get("error"),
            cause=raw.get("cause"),
            started=raw["startDate"],
            stopped=raw.get("stopDate"),
        )

    def stop(self, name: str, error: str, cause: str) -> bool:
        """Stop the named execution if it runs; False when there was nothing to stop."""
        try:
            self.sfn.stop_execution(executionArn=self.execution_arn(name), error=error, cause=cause)
        except AWS_ERRORS as exc:
            if error_code(exc) in _MISSING:
                return False
            raise sfn_error("StopExecution", exc) from None
        return True

    def list(
        self, status: str | None, limit: int, next_token: str | None
    ) -> tuple[list[tuple[str, str, datetime]], str | None]:
        """(name, status, start date) newest first, and the token of the next page."""
        kwargs: dict[str, Any] = {"stateMachineArn": self.arn, "maxResults": limit}
        if status:
            kwargs["statusFilter"] = status
        if next_token:
            kwargs["nextToken"] = next_token
        try:
            page = self.sfn.list_executions(**kwargs)
        except AWS_ERRORS as exc:
            if error_code(exc) == "InvalidToken":
                raise InvalidInput("nextToken is not one this API gave (or it expired)") from None
            raise sfn_error("ListExecutions", exc) from None
        rows = [(e["name"], str(e["status"]), e["startDate"]) for e in page.get("executions", [])]
        rows.sort(key=lambda row: row[2], reverse=True)
        return rows, page.get("nextToken")


class SfnTransferLauncher:
    """The dispatcher's TransferLauncher: transfer executions on the transfer state machine."""

    def __init__(self, machine: StateMachine) -> None:
        self.machine = machine

    def start(self, name: str, event: TransferEvent) -> None:
        self.machine.start(name, dump(event))

    def describe(self, name: str) -> Execution | None:
        return self.machine.describe(name)
