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

    def describe_execution(self, *, executionArn: str) -> dict[str, Any]:
        if executionArn not in self.executions:
            raise _client_error("ExecutionDoesNotExist", "DescribeExecution")
        return dict(self.executions[executionArn])


class FakeEvents:
    """EventBridge PutEvents as Finalize calls it; ``refuse`` makes it answer with a failed entry."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.refuse = False

    def put_events(self, *, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        if self.refuse:
            return {
                "FailedEntryCount": 1,
                "Entries": [{"ErrorCode": "InternalException", "ErrorMessage": "try again"}],
            }
        self.entries.extend(copy.deepcopy(Entries))
        return {"FailedEntryCount": 0, "Entries": [{"EventId": str(len(self.entries))}]}
