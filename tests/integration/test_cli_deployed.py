"""The deployed-stack CLI's plumbing: where it finds the API (CloudFormation on a moto server,
samconfig.toml), how it signs, pages and cancels (against a real HTTP server checking every signature)."""

from __future__ import annotations

import argparse
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from polyv_retriever.cli import deployed
from polyv_retriever.cli.main import main
from polyv_retriever.errors import InvalidInput
from polyv_retriever.local_stack.api_gateway import signature_problem

TASKS = [f"{i:032x}" for i in range(1, 6)]


class FakeApi:
    """The API's routes as the brief fixes them, behind a signature check with the environment's keys."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []
        self.answer_status: int | None = None
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                api.serve(self)

            do_DELETE = do_POST = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def serve(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        keys = {os.environ["AWS_ACCESS_KEY_ID"]: os.environ["AWS_SECRET_ACCESS_KEY"]}
        if "Authorization" not in request.headers:
            return self.reply(request, 403, {"message": "Missing Authentication Token"})
        refused = signature_problem(request, body, keys)
        if refused:
            return self.reply(request, 403, refused)
        url = urlsplit(request.path)
        query = parse_qs(url.query)
        self.requests.append((request.command, url.path, query))
        if self.answer_status:
            return self.reply(request, self.answer_status, {"error": "X", "message": "as told"})
        if request.command == "GET" and url.path == "/v1/retrievals":
            start = int(query.get("nextToken", ["0"])[0])
            limit = min(2, int(query["limit"][0]))
            page = [{"retrievalId": t, "status": "RUNNING", "bytesCopied": 5} for t in TASKS[start:][:limit]]
            token = str(start + limit) if start + limit < len(TASKS) else None
            return self.reply(request, 200, {"retrievals": page, "nextToken": token})
        if request.command == "DELETE":
            return self.reply(request, 202, {"retrievalId": url.path.rsplit("/", 1)[1], "status": "RUNNING"})
        return self.reply(request, 404, {"message": "no route"})

    @staticmethod
    def reply(request: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)


@pytest.fixture
def api() -> Iterator[FakeApi]:
    fake = FakeApi()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def test_list_follows_next_tokens_up_to_the_limit(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--api-url", api.url, "--limit", "4", "--status", "RUNNING", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["retrievals"]
    assert [r["retrievalId"] for r in listed] == TASKS[:4]
    # pages of at most 2 (the server's choice): asked for 4, then the 2 still wanted after token 2
    asked = [(q["limit"], q.get("nextToken"), q["status"]) for _, _, q in api.requests]
    assert asked == [(["4"], None, ["RUNNING"]), (["2"], ["2"], ["RUNNING"])]


def test_list_prints_a_table(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--api-url", api.url]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split() == ["retrieval", "status", "started", "(UTC)", "outcome", "bytes"]
    assert [row.split()[0] for row in rows[1:]] == TASKS


def test_cancel_sends_a_signed_delete(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cancel", TASKS[0], "--api-url", api.url]) == 0
    assert api.requests == [("DELETE", f"/v1/retrievals/{TASKS[0]}", {})]
    assert f"retrieval {TASKS[0]}: cancel requested (202)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("status", "code", "name"),
    [(503, 4, "ApiUnavailable"), (429, 4, "ApiUnavailable"), (409, 2, "InvalidInput")],
)
def test_refusals_map_to_the_clis_exit_codes(
    api: FakeApi, capsys: pytest.CaptureFixture[str], status: int, code: int, name: str
) -> None:
    api.answer_status = status
    assert main(["cancel", TASKS[0], "--api-url", api.url]) == code
    err = capsys.readouterr().err
    assert err.startswith(
        f"polyv-retriever: {name}: DELETE /retrievals/{TASKS[0]} answered {status}: as told"
    )


def test_an_unreachable_api_is_transient(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["get", TASKS[0], "--api-url", "http://127.0.0.1:9/v1"]) == 4
    assert "ApiUnavailable: GET /retrievals/" in capsys.readouterr().err


def namespace(**values: Any) -> argparse.Namespace:
    return argparse.Namespace(**{"api_url": None, "stack_name": None, "region": "us-east-1", **values})


def test_the_api_url_comes_from_the_flag_then_the_environment_then_the_stack(tmp_path: Path) -> None:
    cloudformation = boto3.client("cloudformation", region_name="us-east-1")
    cloudformation.create_stack(
        StackName="my-retriever",
        TemplateBody=json.dumps(
            {
                "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {"ApiUrl": {"Value": "https://abc123.execute-api.eu-west-1.amazonaws.com/v1"}},
            }
        ),
    )
    from_stack = deployed.resolve_api_url(namespace(stack_name="my-retriever"), env={})
    assert from_stack == "https://abc123.execute-api.eu-west-1.amazonaws.com/v1"
    assert (
        deployed.resolve_api_url(namespace(), env={"POLYV_RETRIEVER_API_URL": "http://e/v1"}) == "http://e/v1"
    )
    flag = namespace(api_url="http://f/v1", stack_name="my-retriever")
    assert deployed.resolve_api_url(flag, env={"POLYV_RETRIEVER_API_URL": "http://e/v1"}) == "http://f/v1"
    # an execute-api URL names the region to sign for
    assert deployed.DeployedApi(from_stack).region == "eu-west-1"


def test_the_default_stack_name_is_samconfigs_and_a_missing_stack_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "samconfig.toml").write_text(
        'version = 0.1\n[default.global.parameters]\nstack_name = "team-retriever"\n'
    )
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert deployed.samconfig_stack_name() == "team-retriever"
    with pytest.raises(InvalidInput, match="stack 'team-retriever'") as refused:
        deployed.resolve_api_url(namespace(), env={})
    assert "--api-url" in refused.value.describe()
    assert "POLYV_RETRIEVER_API_URL" in refused.value.describe()
