"""The sample events in events/ (what `sam local invoke -e` takes) stay accepted by their handlers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from polyv_retriever.contracts import load
from polyv_retriever.handlers.check_status import CheckStatusEvent
from polyv_retriever.handlers.finalize import FinalizeEvent
from polyv_retriever.handlers.transfer import TransferEvent
from tests.fakes import FakeStepFunctions

EVENTS = Path(__file__).parents[2] / "events"


def read(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / name).read_text()))


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("check_status.json", CheckStatusEvent),
        ("transfer.json", TransferEvent),
        ("transfer_continuation.json", TransferEvent),
        ("finalize.json", FinalizeEvent),
    ],
)
def test_function_events_parse(name: str, model: type[Any]) -> None:
    load(model, read(name))


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("api_post_retrievals.json", 202),
        ("api_post_retrievals_vids.json", 202),
        ("api_get_retrieval.json", 404),
        ("api_delete_retrieval.json", 404),
        ("api_list_retrievals.json", 200),
    ],
)
def test_api_events_reach_their_routes(name: str, status: int, sfn: FakeStepFunctions) -> None:
    from polyv_retriever.handlers import api
    from polyv_retriever.local_stack.moto_server import LocalContext

    answer = api.handler(read(name), LocalContext("ApiFunction", 30))
    assert answer["statusCode"] == status, answer["body"]


def test_every_event_file_is_covered() -> None:
    assert {p.name for p in EVENTS.glob("*.json")} == {
        "check_status.json",
        "transfer.json",
        "transfer_continuation.json",
        "finalize.json",
        "api_post_retrievals.json",
        "api_post_retrievals_vids.json",
        "api_get_retrieval.json",
        "api_delete_retrieval.json",
        "api_list_retrievals.json",
    }
