"""In-memory fakes of the project's own interfaces, for unit tests (never of boto3 or urllib3)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from polyv_retriever.polyv.models import RetrievalTask, TaskVideo, VideoStatus


class FakePolyv:
    """A TaskReader whose task is whatever the test says, counting the calls."""

    def __init__(
        self,
        statuses: dict[str, str] | None = None,
        url: str = "https://video-dl-2.videocc.net/x.mp4?auth_key=k",
    ) -> None:
        self.statuses = statuses or {}
        self.url = url
        self.calls = 0

    def get_task(self, task_id: str) -> RetrievalTask:
        self.calls += 1
        videos = tuple(
            TaskVideo(vid, VideoStatus(status), self.url if status == "SUCCESS" else None, 1, None)
            for vid, status in self.statuses.items()
        )
        return RetrievalTask(task_id, videos)


class InMemoryRecords:
    """A RecordStore in a dict."""

    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {}

    def put_json(self, key: str, document: dict[str, Any]) -> None:
        self.documents[key] = copy.deepcopy(document)

    def get_json(self, key: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.documents.get(key))

    def list_json(self, prefix: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(d) for k, d in sorted(self.documents.items()) if k.startswith(prefix)]


def _client_error(code: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, operation)


class FakeStepFunctions:
    """The two Step Functions calls the API makes, with Step Functions' own name-uniqueness rule."""

    def __init__(self) -> None:
        self.executions: dict[str, dict[str, Any]] = {}

    def start_execution(self, *, stateMachineArn: str, name: str, input: str) -> dict[str, Any]:
        arn = stateMachineArn.replace(":stateMachine:", ":execution:") + ":" + name
        if arn in self.executions:
            raise _client_error("ExecutionAlreadyExists", "StartExecution")
        self.executions[arn] = {
            "executionArn": arn,
            "input": input,
            "status": "RUNNING",
            "startDate": datetime(2026, 11, 25, tzinfo=UTC),
        }
        return {"executionArn": arn}

    def stop_execution(self, *, executionArn: str, error: str, cause: str) -> dict[str, Any]:
        if executionArn not in self.executions:
            raise _client_error("ExecutionDoesNotExist", "StopExecution")
        self.executions[executionArn].update(status="ABORTED", error=error, cause=cause)
        return {}

    def list_executions(
        self, *, stateMachineArn: str, maxResults: int = 100, **kwargs: Any
    ) -> dict[str, Any]:
        rows = [
            {"name": arn.rsplit(":", 1)[1], **e}
            for arn, e in self.executions.items()
            if kwargs.get("statusFilter") in (None, e["status"])
        ]
        return {"executions": rows[::-1][:maxResults]}

    def describe_execution(self, *, executionArn: str) -> dict[str, Any]:
        if executionArn not in self.executions:
            raise _client_error("ExecutionDoesNotExist", "DescribeExecution")
        return dict(self.executions[executionArn])


class FakeExecution:
    def __init__(self, status: str, output: dict[str, Any] | None = None) -> None:
        self.status, self.output = status, output
        self.error: str | None = None
        self.cause: str | None = None


class FakeLauncher:
    """The dispatcher's TransferLauncher: executions by name, with Step Functions' name uniqueness."""

    def __init__(self) -> None:
        self.executions: dict[str, FakeExecution] = {}
        self.started: list[str] = []
        self.start_calls = 0
        self.by_vid: dict[str, str] = {}

    def start(self, name: str, event: Any) -> None:
        self.start_calls += 1
        if name not in self.executions:
            self.executions[name] = FakeExecution("RUNNING")
            self.started.append(name)
        self.by_vid[event.vid] = name

    def describe(self, name: str) -> FakeExecution | None:
        return self.executions.get(name)

    def _by_vid(self, vid: str) -> FakeExecution:
        return self.executions[self.by_vid[vid]]

    def finish(self, vid: str, output: dict[str, Any]) -> None:
        execution = self._by_vid(vid)
        execution.status = "SUCCEEDED"
        execution.output = {"taskId": "t", "vid": vid, "prefix": "p/", **output}
        if output.get("status") == "FAILED":
            execution.output = output

    def end(self, vid: str, status: str) -> None:
        self._by_vid(vid).status = status
