"""The state machines and the code read the same shapes and speak the same error names.

For every Task of both definitions: its Payload is the handler's event model, its ResultSelector picks
fields the result model always has and fills the model its ResultPath holds; every path a Choice, Wait,
Pass or Fail state reads exists in the state document's model; every Retry/Catch name is an error the
code raises or one of Step Functions'/Lambda's own, every transient error is retried and no permanent one.
"""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any

import msgspec
import pytest
from msgspec import Struct
from msgspec.structs import FieldInfo

from polyv_retriever import contracts, errors, vocabulary

ASL_DIR = Path(__file__).parents[2] / "infra/statemachine"
RETRIEVAL = json.loads((ASL_DIR / "retrieval.asl.json").read_text())
TRANSFER = json.loads((ASL_DIR / "transfer.asl.json").read_text())
AWS_NAMES = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "States.ALL",
    "States.Timeout",
    "Sandbox.Timedout",
}
#: Which function each Task invokes: (its event model, its result model).
FUNCTIONS: dict[str, tuple[type[Struct], type[Struct]]] = {
    "${CheckStatusFunctionArn}": (contracts.CheckStatusEvent, contracts.PollProgress),
    "${FinalizeFunctionArn}": (contracts.FinalizeEvent, contracts.Summary),
    "${TransferFunctionArn}": (contracts.TransferEvent, contracts.TransferResult),
}
#: Finalize answers a FailedSummary when its event has a failure: what RecordFailure (its Catch path) sends.
FAILURE_PATH = {"RecordFailure": (contracts.FinalizeEvent, contracts.FailedSummary)}


class TransferDocument(contracts.TransferResult, kw_only=True):
    """The transfer execution's data: its input, then a Transfer result, or the Catch's error beside it."""

    status: vocabulary.TransferStatus | None = None  # type: ignore[assignment]
    result: contracts.TransferSummary | None = None  # type: ignore[assignment]
    error: contracts.StepFunctionsError | None = None


MACHINES = [
    pytest.param(RETRIEVAL, contracts.RetrievalStateDocument, id="retrieval"),
    pytest.param(TRANSFER, TransferDocument, id="transfer"),
]


def _fields(model: type[Struct]) -> dict[str, FieldInfo]:
    return {field.encode_name: field for field in msgspec.structs.fields(model)}


def _unwrap(annotation: Any) -> Any:
    """Optional[X] -> X, Annotated[X, Meta(...)] -> X."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _resolve(model: Any, path: str) -> Any:
    """The annotation at a JSONPath like ``$.poll.videos`` in a model; fails the test if it is not there."""
    assert path.startswith("$"), path
    current = model
    for part in [p for p in path[1:].split(".") if p]:
        current = _unwrap(current)
        if typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
            continue
        assert isinstance(current, type), f"{path}: {part} is not in a model"
        assert issubclass(current, Struct), f"{path}: {part} is not in a model"
        fields = _fields(current)
        assert part in fields, f"{path}: {current.__name__} has no field {part}"
        current = fields[part].type
    return current


def _required(model: type[Struct]) -> set[str]:
    return {name for name, field in _fields(model).items() if field.required}


def _always_present(model: type[Struct], name: str) -> bool:
    """The field is always in the JSON the function returns (required, or defaulted and not None)."""
    field = _fields(model)[name]
    return field.required or field.default is not None


def _lambda_tasks(states: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: state
        for name, state in states.items()
        if state["Type"] == "Task" and state["Resource"] == "arn:aws:states:::lambda:invoke"
    }


def _retryable(name: str) -> bool:
    stack: list[type[errors.RetrieverError]] = [errors.RetrieverError]
    while stack:
        cls = stack.pop()
        if cls.__name__ == name:
            return cls.retryable
        stack.extend(cls.__subclasses__())
    raise AssertionError(name)


def _error_classes() -> set[str]:
    names, stack = set(), [errors.RetrieverError]
    while stack:
        cls = stack.pop()
        names.add(cls.__name__)
        stack.extend(cls.__subclasses__())
    return names


@pytest.mark.parametrize(("asl", "document"), MACHINES)
def test_every_task_sends_its_functions_event_and_selects_what_its_result_has(
    asl: dict[str, Any], document: type[Struct]
) -> None:
    tasks = _lambda_tasks(asl["States"])
    assert tasks, "no Lambda task found"
    assert all(
        state["Type"] in ("Task", "Choice", "Wait", "Pass", "Fail", "Succeed")
        for state in asl["States"].values()
    )
    for name, state in tasks.items():
        event_model, result_model = FAILURE_PATH.get(name) or FUNCTIONS[state["Parameters"]["FunctionName"]]
        if state["Parameters"].get("Payload.$") == "$":
            # The whole document is the event: everything the event requires is in the document.
            missing = _required(event_model) - set(_fields(document))
            assert not missing, f"{name}: the state has no {missing} for {event_model.__name__}"
        else:
            payload = {k.removesuffix(".$") for k in state["Parameters"]["Payload"]}
            assert payload <= set(_fields(event_model)), name
            assert _required(event_model) <= payload, name
        selector = state.get("ResultSelector")
        if selector is not None:
            target = _unwrap(_resolve(document, state["ResultPath"]))
            for key, path in selector.items():
                field = path.removeprefix("$.Payload.")
                assert _always_present(result_model, field), (
                    f"{name}: {result_model.__name__}.{field} may be absent"
                )
                assert key.removesuffix(".$") in _fields(target), f"{name}: {target.__name__} has no {key}"
            # Everything the function returns is kept: a field left out would be lost by the next step.
            assert set(_fields(target)) == {k.removesuffix(".$") for k in selector}, name
        elif state.get("OutputPath") == "$.Payload":
            assert result_model in (contracts.Summary, contracts.TransferResult), name


@pytest.mark.parametrize(("asl", "document"), MACHINES)
def test_every_path_a_choice_wait_pass_or_fail_reads_is_in_the_state_document(
    asl: dict[str, Any], document: type[Struct]
) -> None:
    for name, state in asl["States"].items():
        paths = []
        if state["Type"] == "Choice":
            paths += [choice["Variable"] for choice in state["Choices"]]
        if state["Type"] == "Wait":
            paths.append(state["SecondsPath"])
        if state["Type"] == "Pass":
            paths += [v for k, v in state.get("Parameters", {}).items() if k.endswith(".$")]
        if state["Type"] == "Fail" and "ErrorPath" in state:
            if state["ErrorPath"].startswith("$.summary"):
                paths += [state["ErrorPath"], state["CausePath"]]
            else:  # the Catch's own object: Step Functions' names
                assert (
                    _unwrap(_resolve(document, state["ErrorPath"].rsplit(".", 1)[0]))
                    is contracts.StepFunctionsError
                )
        for path in paths:
            _resolve(document, path)
        for catcher in state.get("Catch", []):
            assert _unwrap(_resolve(document, catcher["ResultPath"])) is contracts.StepFunctionsError, name


def test_the_choices_compare_with_the_vocabulary() -> None:
    more = TRANSFER["States"]["MoreToCopy?"]["Choices"][0]
    assert more["StringEquals"] in vocabulary.TransferStatus.__members__
    failed = TRANSFER["States"]["TransferFailed"]["Parameters"]["status"]
    assert failed == vocabulary.TransferStatus.FAILED
    contracts.load(contracts.TransferFailure, {"vid": "v", "status": failed, "error": {"Error": "X"}})


@pytest.mark.parametrize(("asl", "document"), MACHINES)
def test_every_lambda_task_retries_every_transient_error_never_a_permanent_one_and_names_only_known_ones(
    asl: dict[str, Any], document: type[Struct]
) -> None:
    transient = set(errors.retryable_error_names())
    # An error a single handler raises may be retryable without being transient (retried only where raised).
    permanent = {n for n in _error_classes() - transient - {"TransientError"} if not _retryable(n)}
    for name, state in _lambda_tasks(asl["States"]).items():
        retried = {n for retrier in state.get("Retry", []) for n in retrier["ErrorEquals"]}
        caught = {n for catcher in state.get("Catch", []) for n in catcher["ErrorEquals"]}
        assert (retried | caught) <= _error_classes() | AWS_NAMES, name
        assert transient <= retried, f"{name} does not retry {transient - retried}"
        assert not (retried & permanent), name
        assert {"Lambda.ServiceException", "Lambda.TooManyRequestsException"} <= retried, name


@pytest.mark.parametrize(("asl", "document"), MACHINES)
def test_a_throttled_invocation_waits_for_concurrency_instead_of_failing_in_seconds(
    asl: dict[str, Any], document: type[Struct]
) -> None:
    """A throttle means every slot is taken by invocations that run for minutes: three tries within 7 s
    failed the video. Its own retrier (the first one naming it is the one Step Functions uses) waits long."""
    for name, state in _lambda_tasks(asl["States"]).items():
        naming = [r for r in state["Retry"] if "Lambda.TooManyRequestsException" in r["ErrorEquals"]]
        assert len(naming) == 1, name
        (throttle,) = naming
        assert throttle["ErrorEquals"] == ["Lambda.TooManyRequestsException"], name
        assert throttle["JitterStrategy"] == "FULL", name  # throttled together, retried apart
        waits, delay = [], float(throttle["IntervalSeconds"])
        for _ in range(throttle["MaxAttempts"]):
            waits.append(min(delay, throttle.get("MaxDelaySeconds", delay)))
            delay *= throttle["BackoffRate"]
        assert waits[0] >= 30, name
        assert 15 * 60 <= sum(waits) <= 3600, name  # outlasts a Transfer invocation (15 min), not for ever


def test_the_transfer_functions_reserved_concurrency_is_optional_and_off_by_default() -> None:
    from polyv_retriever.local_stack.template import ResolvedTemplate, load_template

    template = load_template()
    transfer = template["Resources"]["TransferFunction"]["Properties"]
    default = ResolvedTemplate(template)
    assert default.resolve(transfer).get("ReservedConcurrentExecutions") is None
    reserved = ResolvedTemplate(template, {"TransferReservedConcurrency": "40"})
    assert reserved.resolve(transfer)["ReservedConcurrentExecutions"] == "40"


def test_the_tasks_that_must_not_lose_a_failure_catch_everything() -> None:
    for asl, name in ((RETRIEVAL, "CheckStatus"), (RETRIEVAL, "RecordFailure"), (TRANSFER, "Transfer")):
        assert asl["States"][name]["Catch"][0]["ErrorEquals"] == ["States.ALL"], name


def test_the_attempt_budget_is_under_the_execution_timeout_and_the_poll_deadline_under_that() -> None:
    """PollDeadlineSeconds larger than the execution's timeout is refused at deploy time (its MaxValue), and
    the attempt records its own timeout (RetrievalTimedOut) before Step Functions would kill it."""
    from polyv_retriever.local_stack.template import ResolvedTemplate, load_template

    template = load_template()
    resolved = ResolvedTemplate(template)
    env = next(f for f in resolved.functions() if f.logical_id == "CheckStatusFunction").environment
    timeout = RETRIEVAL["TimeoutSeconds"]
    budget = int(env["RETRIEVAL_BUDGET_SECONDS"])
    deadline_max = int(template["Parameters"]["PollDeadlineSeconds"]["MaxValue"])
    assert timeout <= 7 * 86400
    assert budget < timeout
    assert deadline_max <= budget - 86400 + 3600  # a day (less the margin) for the last transfers
    assert int(template["Parameters"]["PollDeadlineSeconds"]["Default"]) <= deadline_max
    assert TRANSFER["TimeoutSeconds"] <= timeout
    # The defaults outside the template say the same (they were 4 days when the timeout was 7).
    from polyv_retriever.cli.deployed import EXECUTION_TIMEOUT_SECONDS
    from polyv_retriever.pipeline.polling import PollPolicy

    assert PollPolicy().budget_seconds == budget
    assert timeout == EXECUTION_TIMEOUT_SECONDS
    alarm = template["Resources"]["ExecutionsTimedOutAlarm"]["Properties"]["AlarmDescription"]
    assert f"({timeout // 86400} days)" in alarm


def _statements(resolved: Any, logical_id: str) -> list[dict[str, Any]]:
    policies = resolved.resolve(resolved.resources[logical_id]["Properties"].get("Policies", []))
    return [s for p in policies if isinstance(p, dict) for s in p.get("Statement", [])]


def test_a_kms_key_given_as_parameter_gets_every_writer_what_kms_needs_and_encrypts_the_bucket() -> None:
    from polyv_retriever.local_stack.template import ResolvedTemplate, load_template

    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    with_key = ResolvedTemplate(load_template(), {"KmsKeyArn": key})
    for function in ("CheckStatusFunction", "TransferFunction", "FinalizeFunction", "ApiFunction"):
        granted = {
            action
            for s in _statements(with_key, function)
            if s.get("Resource") == key
            for action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        }
        assert {"kms:GenerateDataKey", "kms:Decrypt"} <= granted, function
    encryption = with_key.bucket_properties()["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert encryption["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}
    transfer_env = next(f for f in with_key.functions() if f.logical_id == "TransferFunction").environment
    assert transfer_env["KMS_KEY_ID"] == key

    without = ResolvedTemplate(load_template())
    assert not any(
        "kms:GenerateDataKey" in str(s.get("Action")) for s in _statements(without, "TransferFunction")
    )
