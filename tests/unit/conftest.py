"""Unit fixtures: the handlers wired to in-memory fakes of our interfaces."""

from __future__ import annotations

import pytest

from polyv_retriever.contracts import load
from polyv_retriever.handlers import api, runtime
from polyv_retriever.pipeline.executions import StateMachine
from polyv_retriever.pipeline.retrievals import RetrievalService
from tests.fakes import FakeEvents, FakePolyv, FakeStepFunctions, InMemoryRecords

SM_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:RetrievalStateMachine"


@pytest.fixture
def records(monkeypatch: pytest.MonkeyPatch) -> InMemoryRecords:
    store = InMemoryRecords()
    monkeypatch.setattr(runtime, "records", lambda: store)
    monkeypatch.setattr(
        runtime,
        "settings",
        lambda: load(
            runtime.Settings,
            {"BUCKET_NAME": "bkt", "POLYV_CREDENTIALS_PARAMETER": "/p", "STATE_MACHINE_ARN": SM_ARN},
        ),
    )
    return store


@pytest.fixture
def sfn(records: InMemoryRecords, monkeypatch: pytest.MonkeyPatch) -> FakeStepFunctions:
    fake = FakeStepFunctions()
    polyv = FakePolyv()
    polyv.created = []  # type: ignore[attr-defined]

    def create_task(vids: list[str], days: int) -> str:
        polyv.created.append(vids)  # type: ignore[attr-defined]
        return f"{len(polyv.created):x}".rjust(32, "f")  # type: ignore[attr-defined]

    polyv.create_task = create_task  # type: ignore[attr-defined]
    monkeypatch.setattr(runtime, "polyv_client", lambda: polyv)
    service = RetrievalService(
        StateMachine(fake, SM_ARN),  # type: ignore[arg-type]
        records,
        "bkt",
        lambda: polyv,  # type: ignore[arg-type,return-value]
        lambda: pytest.fail("no cancel in these tests"),
    )
    monkeypatch.setattr(api, "service", lambda: service)
    return fake


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> FakeEvents:
    fake = FakeEvents()
    monkeypatch.setattr(runtime, "events", lambda: fake)
    return fake
