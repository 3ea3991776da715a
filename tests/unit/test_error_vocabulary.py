"""One error vocabulary: the names the state machine retries and catches are the errors the code raises."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from polyv_retriever import errors

ASL = json.loads((Path(__file__).parents[2] / "infra/statemachine/retrieval.asl.json").read_text())
AWS_NAMES = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "States.ALL",
    "States.Timeout",
    "Sandbox.Timedout",
}


def _tasks(states: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = {}
    for name, state in states.items():
        if state["Type"] == "Task":
            found[name] = state
        if state["Type"] == "Map":
            found.update(_tasks(state["ItemProcessor"]["States"]))
    return found


def _retried(state: dict[str, Any]) -> set[str]:
    return {name for retrier in state.get("Retry", []) for name in retrier["ErrorEquals"]}


def _error_classes() -> set[str]:
    names, stack = set(), [errors.RetrieverError]
    while stack:
        cls = stack.pop()
        names.add(cls.__name__)
        stack.extend(cls.__subclasses__())
    return names


def test_every_name_in_the_state_machine_is_an_error_we_raise_or_an_aws_one() -> None:
    for state in _tasks(ASL["States"]).values():
        assert _retried(state) <= _error_classes() | AWS_NAMES


#: Transient errors only the API can raise (it is the one caller of Step Functions): no Task can raise them.
API_ONLY = {"OrchestrationError"}


def test_the_transfer_retries_exactly_the_transient_errors() -> None:
    transfer = _tasks(ASL["States"])["Transfer"]
    assert _retried(transfer) - AWS_NAMES == set(errors.retryable_error_names()) - API_ONLY


def test_every_task_that_writes_to_s3_retries_storage_errors() -> None:
    """Each of these handlers writes a record or the manifest: StorageError is transient for all of them."""
    for name, state in _tasks(ASL["States"]).items():
        assert "StorageError" in _retried(state), name


def test_polling_retries_the_transient_polyv_errors_but_never_auth_or_business_errors() -> None:
    check = _tasks(ASL["States"])["CheckStatus"]
    polyv_transient = {"MalformedResponse", "PolyvTransportError", "PolyvUnavailable", "RateLimited"}
    assert polyv_transient <= _retried(check)
    never = {
        cls.__name__ for cls in (errors.InvalidSignature, errors.PolyvBusinessError, errors.PollLimitExceeded)
    }
    assert not (_retried(check) & never)
    assert not any(e.retryable for e in (errors.InvalidSignature(104, "x"), errors.PollLimitExceeded("x")))


def test_every_task_catches_or_is_final_and_the_execution_has_a_timeout() -> None:
    assert ASL["TimeoutSeconds"] <= 7 * 86400
    tasks = _tasks(ASL["States"])
    assert tasks["CheckStatus"]["Catch"][0]["ErrorEquals"] == ["States.ALL"]
    assert tasks["Transfer"]["Catch"][0]["ErrorEquals"] == ["States.ALL"]
    assert ASL["States"]["TransferVideos"]["MaxConcurrency"] >= 1
