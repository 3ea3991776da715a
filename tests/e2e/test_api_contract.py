"""The API through the local stack's HTTP front, as a client meets it: malformed bodies are 400s in the
API's one error shape, and a schema-driven fuzzer (schemathesis, from infra/openapi.json) finds no 5xx and
no answer the document does not describe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.conftest import Stack

TASK = "0123456789abcdef0123456789abcdef"
MULTIPART = f'--b\r\nContent-Disposition: form-data; name="taskId"\r\n\r\n{TASK}\r\n--b--\r\n'


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"[" * 100_000, "application/json", "nested too deeply"),
        (b'{"taskId": ' + b"1" * 5000 + b"}", "application/json", "more than 4300 digits"),
        (b'{"taskId": "caf\xe9"}', "application/json", "the body is not UTF-8 text"),
        (b"x", "multipart/form-data", "must be application/json"),
        (b"x", "multipart/form-data; boundary=", "must be application/json"),
        (MULTIPART.encode(), "multipart/form-data; boundary=b", "must be application/json"),
        (b"hello", "text/plain", "'text/plain' is not accepted"),
        (b"<taskId/>", "application/xml", "'application/xml' is not accepted"),
    ],
)
def test_a_malformed_body_is_a_400_naming_the_problem_over_http(
    stack: Stack, body: bytes, content_type: str, message: str
) -> None:
    response = stack.http.request(
        "POST", stack.info["apiUrl"] + "/retrievals", body=body, headers={"Content-Type": content_type}
    )
    assert response.status == 400, response.data[:300]
    assert response.headers["Content-Type"] == "application/json"
    answer = json.loads(response.data)
    assert list(answer) == ["message"], answer  # the API's one error shape
    assert message in answer["message"], answer


# --- the fuzzer ------------------------------------------------------------------------------------------

SCHEMA = schemathesis.openapi.from_path(Path(__file__).parents[2] / "infra/openapi.json")
SCHEMA.config.generation.update(
    # Valid and invalid requests; the same ones on every run (a failure is reproducible, CI is stable).
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    deterministic=True,
    # Unsigned requests reach the function (the local front lets them through): a generated Authorization
    # header would only ever meet the front's 403.
    with_security_parameters=False,
    database="none",
)


@SCHEMA.parametrize()
@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_the_api_answers_the_fuzzer_only_as_its_openapi_document_says(
    case: schemathesis.Case, stack: Stack
) -> None:
    case.call_and_validate(
        base_url=stack.info["apiUrl"],
        timeout=30,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            negative_data_rejection,
        ],
    )
