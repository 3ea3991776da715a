"""The thin handlers: events in, core called, results shaped — with in-memory fakes of our interfaces."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from polyv_retriever.handlers import api, check_status, finalize, runtime
from polyv_retriever.local_stack.moto_server import LocalContext
from tests.fakes import FakeEvents, FakeLauncher, FakePolyv, FakeStepFunctions, InMemoryRecords

TASK = "0123456789abcdef0123456789abcdef"
SM_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:RetrievalStateMachine"


def test_check_status_returns_the_state_machines_view(
    records: InMemoryRecords, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "polyv_client", lambda: FakePolyv({"a": "SUCCESS", "b": "PROCESS"}))
    launcher = FakeLauncher()
    monkeypatch.setattr(runtime, "transfer_launcher", lambda: launcher)
    monkeypatch.setenv("POLL_FIRST_WAIT_SECONDS", "7")
    monkeypatch.setenv("POLL_MAX_WAIT_SECONDS", "7")
    result = check_status.handler({"taskId": TASK, "prefix": "p/"}, LocalContext("CheckStatus", 60))
    assert result["done"] is False
    assert 5 <= result["waitSeconds"] <= 7  # the configured wait, less up to 20% jitter
    started = result["videos"]["a"].pop("startedAt")
    assert abs(started - time.time()) < 60  # when the dispatcher started it (paces the queue's looks)
    assert result["videos"] == {"a": {"state": "RUNNING", "execution": f"{TASK}.1.a"}}
    assert launcher.started == [f"{TASK}.1.a"]
    assert f"p/{TASK}/_retrieval/status.json" in records.documents


def test_finalize_writes_the_manifest_and_returns_the_summary(
    records: InMemoryRecords, events: FakeEvents
) -> None:
    event = {
        "taskId": TASK,
        "prefix": "p/",
        "attempt": 1,
        "options": {},
        "only": None,
        "poll": {
            "done": True,
            "count": 2,
            "startedAt": 0,
            "waitSeconds": 0,
            "videos": {"a": {"state": "COPIED", "size": 4}},
        },
    }
    summary = finalize.handler(event, LocalContext("Finalize", 60))
    assert summary["outcome"] == "COMPLETE"
    assert records.documents[f"p/{TASK}/manifest.json"]["counts"]["COPIED"] == 1
    assert [e["DetailType"] for e in events.entries] == ["Retrieval Completed"]


# --- the API ---------------------------------------------------------------------------------------------


def call(
    method: str,
    path: str,
    body: Any = None,
    raw: str | None = None,
    headers: dict[str, str] | None = None,
    base64_body: bytes | None = None,
) -> tuple[int, dict[str, Any]]:
    """The API function's answer to a REST proxy event, as API Gateway would pass it."""
    resource = "/retrievals/{retrieval_id}" if path.count("/") == 2 else "/retrievals"
    text = raw if raw is not None else (json.dumps(body) if body is not None else None)
    if base64_body is not None:  # API Gateway's form for a media type it treats as binary
        text = base64.b64encode(base64_body).decode()
    event = {
        "httpMethod": method,
        "path": path,
        "resource": resource,
        "pathParameters": {"retrieval_id": path.rsplit("/", 1)[1]} if resource.endswith("}") else None,
        "headers": {"Content-Type": "application/json"} if headers is None else headers,
        "body": text,
        "isBase64Encoded": base64_body is not None,
        "requestContext": {"requestId": "req-1", "resourcePath": resource, "httpMethod": method},
    }
    answer = api.handler(event, LocalContext("Api", 30))
    return answer["statusCode"], json.loads(answer["body"])


def test_post_starts_one_execution_named_after_the_task(sfn: FakeStepFunctions) -> None:
    status, body = call("POST", "/retrievals", {"taskId": TASK, "prefix": "backup/"})
    assert status == 202
    assert body["retrievalId"] == TASK
    assert body["status"] == "RUNNING"
    assert body["destination"] == f"s3://bkt/backup/{TASK}/"
    assert list(sfn.executions) == [SM_ARN.replace(":stateMachine:", ":execution:") + ":" + TASK + ".1"]
    assert json.loads(next(iter(sfn.executions.values()))["input"]) == {
        "taskId": TASK,
        "prefix": "backup/",
        "attempt": 1,
        "options": {"storageClass": None},
        "only": None,
    }


def test_a_repeated_post_does_not_start_a_second_execution(sfn: FakeStepFunctions) -> None:
    assert call("POST", "/retrievals", {"taskId": TASK})[0] == 202
    status, body = call("POST", "/retrievals", {"taskId": TASK})
    assert status == 200
    assert body["retrievalId"] == TASK
    assert len(sfn.executions) == 1


def test_post_with_vids_creates_the_polyv_task_first(sfn: FakeStepFunctions) -> None:
    status, body = call("POST", "/retrievals", {"vids": ["v1", "v2"], "expireDays": 3})
    assert status == 202
    assert body["taskId"] == "f" * 31 + "1"


def test_post_with_more_than_100_vids_makes_tasks_of_100_and_answers_them_all(sfn: FakeStepFunctions) -> None:
    vids = [f"v{i:04d}" for i in range(250)]
    status, body = call("POST", "/retrievals", {"vids": vids[::-1], "expireDays": 3})
    assert status == 202
    assert [r["taskId"] for r in body["retrievals"]] == ["f" * 31 + str(n) for n in (1, 2, 3)]
    assert len(sfn.executions) == 3


def test_rerun_and_retry_failed_are_numbered_attempts(
    sfn: FakeStepFunctions, records: InMemoryRecords
) -> None:
    call("POST", "/retrievals", {"taskId": TASK})
    assert call("POST", "/retrievals", {"taskId": TASK, "rerun": True})[0] == 409  # attempt 1 still runs
    first = SM_ARN.replace(":stateMachine:", ":execution:") + f":{TASK}.1"
    sfn.executions[first]["status"] = "SUCCEEDED"
    records.put_json(
        f"polyv/{TASK}/manifest.json",
        {
            "taskId": TASK,
            "attempt": 1,
            "outcome": "PARTIAL",
            "finishedAt": "x",
            "destination": "d",
            "counts": {},
            "bytes": 0,
            "videos": [
                {"vid": "a", "outcome": "COPIED"},
                {"vid": "b", "outcome": "FAILED"},
                {"vid": "c", "outcome": "POLYV_FAIL"},
            ],
        },
    )
    status, body = call("POST", "/retrievals", {"taskId": TASK, "retryFailed": True})
    assert status == 202
    assert body["attempt"] == 2
    assert body["only"] == ["b"]
    assert [a["attempt"] for a in body["attempts"]] == [1, 2]
    assert call("GET", f"/retrievals/{TASK}")[1]["attempt"] == 2


@pytest.mark.parametrize(
    ("body", "raw", "message"),
    [
        (None, "{not json", "the body is not valid JSON"),
        ({}, None, "give either taskId or vids"),
        ({"taskId": TASK, "vids": ["a"]}, None, "give either taskId or vids"),
        ({"taskId": "short"}, None, "taskId 'short' is malformed"),
        ({"taskId": 42}, None, "taskId: Input should be a valid string"),
        ({"vids": [], "expireDays": 1}, None, "vids must be a non-empty list"),
        ({"vids": [f"v{i}" for i in range(1001)], "expireDays": 1}, None, "1001 vids given"),
        ({"vids": ["a/b"], "expireDays": 1}, None, "vid 'a/b' is malformed"),
        ({"vids": ["_retrieval"], "expireDays": 1}, None, "collides with the retrieval's own records"),
        ({"taskId": TASK, "storageClass": "GLACIER"}, None, "storageClass: Input should be"),
        ({"vids": ["a"], "expireDays": 1, "rerun": True}, None, "rerun and retryFailed go with taskId"),
        ({"vids": ["a"]}, None, "expireDays (1-7) is required with vids"),
        ({"vids": ["a"], "expireDays": 0}, None, "expireDays must be an integer from 1 to 7"),
        ({"vids": ["a"], "expireDays": 8}, None, "expireDays must be an integer from 1 to 7"),
        ({"taskId": TASK, "color": "red"}, None, "color: Extra inputs are not permitted"),
        ({"taskId": TASK, "prefix": "../x/"}, None, "prefix '../x/' is malformed"),
        ({"taskId": TASK, "prefix": "no-slash"}, None, "prefix 'no-slash' is malformed"),
        # The lifecycle rule's prefix would delete the files after 14 days; a '_' taskId could reach it too.
        ({"taskId": TASK, "prefix": "_polyv-retriever/"}, None, "is under '_polyv-retriever/'"),
        (
            {"vids": ["a"], "expireDays": 1, "prefix": "_polyv-retriever/x/"},
            None,
            "is under '_polyv-retriever/",
        ),
        (
            {"taskId": TASK, "rerun": True, "prefix": "_polyv-retriever/"},
            None,
            "is under '_polyv-retriever/'",
        ),
        ({"taskId": "_polyv-retriever", "prefix": ""}, None, "taskId '_polyv-retriever' is malformed"),
    ],
)
def test_bad_input_is_a_400_naming_the_problem(
    sfn: FakeStepFunctions, body: Any, raw: str | None, message: str
) -> None:
    status, answer = call("POST", "/retrievals", body, raw)
    assert status == 400
    assert message in answer["message"]
    assert sfn.executions == {}


def test_the_refused_prefix_is_the_one_the_buckets_lifecycle_rule_empties() -> None:
    from polyv_retriever.local_stack.template import load_template
    from polyv_retriever.pipeline.records import LIFECYCLE_PREFIX
    from polyv_retriever.transfer.s3_multipart import JOURNAL_PREFIX

    rules = load_template()["Resources"]["DataBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert [r["Prefix"] for r in rules if "ExpirationInDays" in r] == [LIFECYCLE_PREFIX]
    assert JOURNAL_PREFIX.startswith(LIFECYCLE_PREFIX)


MULTIPART = f'--b\r\nContent-Disposition: form-data; name="taskId"\r\n\r\n{TASK}\r\n--b--\r\n'


@pytest.mark.parametrize(
    ("raw", "headers", "message"),
    [
        ("[" * 100_000, None, "the body is nested too deeply"),
        ('{"vids": ["a"], "expireDays": ' + "7" * 5000 + "}", None, "a number of more than 4300 digits"),
        ('{"taskId": NaN}', None, "NaN is not a JSON number"),
        ('{"taskId": "\udcff"}', None, "the body is not UTF-8 text"),  # a lone surrogate: not UTF-8
        ("x", {"Content-Type": "multipart/form-data"}, "'multipart/form-data' is not accepted"),
        ("x", {"Content-Type": "multipart/form-data; boundary="}, "must be application/json"),
        (MULTIPART, {"Content-Type": "multipart/form-data; boundary=b"}, "must be application/json"),
        (f"taskId={TASK}", {"content-type": "application/x-www-form-urlencoded"}, "must be application/json"),
        ("hello", {"Content-Type": "text/plain"}, "'text/plain' is not accepted"),
        ("<taskId/>", {"Content-Type": "application/xml"}, "'application/xml' is not accepted"),
        ("{}", {"Content-Type": "application/json; charset=latin-1"}, "the body must be UTF-8"),
        ("null", None, "the body: Field required"),
        ("[]", None, "the body: Input should be a valid dictionary"),
    ],
)
def test_a_body_that_is_not_one_utf8_json_object_is_a_400_naming_the_problem(
    sfn: FakeStepFunctions, raw: str, headers: dict[str, str] | None, message: str
) -> None:
    status, answer = call("POST", "/retrievals", raw=raw, headers=headers)
    assert (status, list(answer)) == (400, ["message"]), answer  # the API's one error shape
    assert message in answer["message"]
    assert sfn.executions == {}


def test_a_base64_body_that_is_not_utf8_is_a_400(sfn: FakeStepFunctions) -> None:
    body = json.dumps({"taskId": TASK, "prefix": "caf\u00e9/"}).encode("utf-8").replace(b"\\u00e9", b"\xe9")
    assert call("POST", "/retrievals", base64_body=body) == (400, {"message": "the body is not UTF-8 text"})
    assert sfn.executions == {}


@pytest.mark.parametrize(
    "headers",
    [{"Content-Type": "application/json; charset=UTF-8"}, {"content-type": "Application/JSON"}, {}],
)
def test_json_is_accepted_with_or_without_a_charset_or_a_content_type(
    sfn: FakeStepFunctions, headers: dict[str, str]
) -> None:
    assert call("POST", "/retrievals", {"taskId": TASK}, headers=headers)[0] == 202
    assert call("POST", "/retrievals", base64_body=json.dumps({"taskId": TASK}).encode())[0] == 200


def test_get_tells_where_a_retrieval_stands(sfn: FakeStepFunctions, records: InMemoryRecords) -> None:
    call("POST", "/retrievals", {"taskId": TASK})
    records.put_json(f"polyv/{TASK}/_retrieval/status.json", {"counts": {"SUCCESS": 1}, "done": True})
    records.put_json(
        f"polyv/{TASK}/_retrieval/videos/a.json", {"vid": "a", "status": "RUNNING", "bytesTransferred": 99}
    )
    status, body = call("GET", f"/retrievals/{TASK}")
    assert status == 200
    assert body["status"] == "RUNNING"
    assert body["polyv"]["counts"] == {"SUCCESS": 1}
    assert body["transfers"]["a"]["bytesTransferred"] == 99
    assert body["bytesCopied"] == 99


def test_get_unknown_is_404_and_malformed_is_400(sfn: FakeStepFunctions) -> None:
    assert call("GET", f"/retrievals/{TASK}") == (404, {"message": f"no retrieval {TASK}"})
    assert call("GET", "/retrievals/bad!id")[0] == 400


def test_the_committed_openapi_document_is_the_one_the_code_generates() -> None:
    from pathlib import Path

    committed = (Path(__file__).parents[2] / "infra/openapi.json").read_text()
    assert json.loads(committed) == json.loads(api.openapi_document()), "run `make openapi`"
    paths = json.loads(committed)["paths"]
    assert set(paths) == {"/retrievals", "/retrievals/{retrieval_id}"}
    assert set(paths["/retrievals"]) == {"get", "post"}
    assert set(paths["/retrievals/{retrieval_id}"]) == {"get", "delete"}
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}}
    for path, operations in paths.items():
        for method, operation in operations.items():
            answers = operation["responses"]
            where = f"{method.upper()} {path}"
            # What the API answers for bad input, for an upstream outage, and for a request IAM refuses.
            assert "422" not in answers, where
            for status in ("400", "403", "502", "503"):
                assert answers[status]["content"] == error, (where, status)
            assert operation["security"] == [{"sigv4": []}], where
    for method in ("get", "delete"):
        assert {"400", "404"} <= set(paths["/retrievals/{retrieval_id}"][method]["responses"])
    scheme = json.loads(committed)["components"]["securitySchemes"]["sigv4"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "Authorization")
    assert scheme["x-amazon-apigateway-authtype"] == "awsSigv4"
    started = paths["/retrievals"]["post"]["responses"]["202"]["content"]["application/json"]["schema"]
    assert started["anyOf"] == [
        {"$ref": "#/components/schemas/Retrieval"},
        {"$ref": "#/components/schemas/RetrievalGroup"},
    ]
