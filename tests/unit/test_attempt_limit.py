"""Attempts are found by name one by one up to MAX_ATTEMPTS: one past it could never be seen again."""

from __future__ import annotations

from polyv_retriever.pipeline.retrievals import MAX_ATTEMPTS
from tests.fakes import FakeStepFunctions
from tests.unit.test_handlers import SM_ARN, TASK, call


def test_a_rerun_at_the_attempt_limit_is_refused_with_409_naming_the_limit(sfn: FakeStepFunctions) -> None:
    call("POST", "/retrievals", {"taskId": TASK})
    execution = SM_ARN.replace(":stateMachine:", ":execution:") + f":{TASK}."
    for attempt in range(1, MAX_ATTEMPTS):
        sfn.executions[execution + str(attempt)]["status"] = "SUCCEEDED"
        assert call("POST", "/retrievals", {"taskId": TASK, "rerun": True})[0] == 202
    sfn.executions[execution + str(MAX_ATTEMPTS)]["status"] = "SUCCEEDED"

    status, body = call("POST", "/retrievals", {"taskId": TASK, "rerun": True})
    assert status == 409
    assert f"the limit is {MAX_ATTEMPTS}" in body["message"]
    assert execution + str(MAX_ATTEMPTS + 1) not in sfn.executions
    # The last attempt allowed is still the one GET shows.
    assert call("GET", f"/retrievals/{TASK}")[1]["attempt"] == MAX_ATTEMPTS
