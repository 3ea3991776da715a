"""The CLI's error contract, each case run as a user runs it (the installed console script, a real moto
server, the emulator, real HTTP): one line on stderr naming the cause and what to do, no traceback, and the
documented exit code -- 1 failed, 2 usage/invalid input, 3 credentials/permissions, 4 transient.
"""

from __future__ import annotations

import json
import os
import pty
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
import urllib3

from polyv_retriever.cli import deployed
from polyv_retriever.polyv_emulator import EmulatorServer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CLI = str(Path(sys.executable).with_name("polyv-retriever"))
MOTO_SERVER = str(Path(sys.executable).with_name("moto_server"))
TASK = "0123456789abcdef0123456789abcdef"
PARAMETER = "/polyv-retriever/contract-test"


def cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def no_aws_no_polyv(tmp_path: Path) -> dict[str, str]:
    """A user's environment with neither Polyv nor AWS configured: no variables, no ~/.aws files."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POLYV_", "AWS_"))}
    env |= {
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    return env


def assert_one_line(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    assert result.returncode == code, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def aws_nobody_answers(tmp_path: Path, endpoint_variable: str = "AWS_ENDPOINT_URL") -> dict[str, str]:
    """AWS configured (keys, one attempt) but its endpoint a port nobody listens on."""
    return no_aws_no_polyv(tmp_path) | {
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "example",
        endpoint_variable: f"http://127.0.0.1:{closed_port()}",
        "AWS_MAX_ATTEMPTS": "1",
    }


@pytest.fixture
def ssm_parameter(moto_endpoint: str, emulator: EmulatorServer) -> str:
    boto3.client("ssm").put_parameter(
        Name=PARAMETER,
        Type="SecureString",
        Overwrite=True,
        Value=json.dumps({"appId": emulator.app_id, "appSecret": emulator.secret}),
    )
    return PARAMETER


class _DeniesEverything(BaseHTTPRequestHandler):
    """Answers every SSM call as SSM answers a caller whose policy does not allow it (JSON protocol, 400)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps(
            {
                "__type": "AccessDeniedException",
                "message": "User: arn:aws:iam::123456789012:user/dev is not authorized to perform: "
                "ssm:GetParameter on resource: arn:aws:ssm:us-east-1:123456789012:parameter"
                f"{PARAMETER} because no identity-based policy allows the ssm:GetParameter action",
            }
        ).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("x-amzn-RequestId", "f2b0c7e4-0000-4000-8000-000000000000")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def denying_ssm() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _DeniesEverything)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def moto_with_iam() -> Iterator[tuple[str, dict[str, str]]]:
    """A moto server that enforces IAM, a parameter in it, and the keys of a user with no policy at all."""
    port = closed_port()
    process = subprocess.Popen(
        [MOTO_SERVER, "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"},  # the three set-up calls below
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib3.request("GET", endpoint + "/moto-api/", timeout=1, retries=False)
                break
            except urllib3.exceptions.HTTPError:
                assert time.monotonic() < deadline, "moto_server did not start"
                assert process.poll() is None, "moto_server did not start"
                time.sleep(0.1)
        admin = {"endpoint_url": endpoint, "region_name": "us-east-1"}
        boto3.client("ssm", **admin).put_parameter(Name=PARAMETER, Type="SecureString", Value="{}")
        boto3.client("iam", **admin).create_user(UserName="no-policy")
        key = boto3.client("iam", **admin).create_access_key(UserName="no-policy")["AccessKey"]
        yield (
            endpoint,
            {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]},
        )
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- version, usage -----------------------------------------------------------------------------------------


def test_version_prints_the_installed_version(tmp_path: Path) -> None:
    result = cli("--version", env=no_aws_no_polyv(tmp_path))
    assert result.returncode == 0
    assert result.stdout.strip() == f"polyv-retriever {metadata.version('polyv-retriever')}"


def test_usage_errors_with_json_are_one_json_object_on_stderr(tmp_path: Path) -> None:
    result = cli("create", "v1", "--json", env=no_aws_no_polyv(tmp_path))
    assert result.returncode == 2
    assert result.stdout == ""
    error = json.loads(result.stderr)
    assert error["error"] == "UsageError"
    assert "the following arguments are required: --expire-days" in error["message"]
    assert error["exitCode"] == 2


def test_errors_with_json_are_one_json_object_on_stderr(emulator: EmulatorServer, tmp_path: Path) -> None:
    env = no_aws_no_polyv(tmp_path) | {
        "POLYV_APP_ID": emulator.app_id,
        "POLYV_APP_SECRET": "wrong-secret",
        "POLYV_API_BASE_URL": emulator.base_url,
    }
    result = cli("status", TASK, "--json", env=env)
    assert result.returncode == 3
    assert result.stdout == ""
    error = json.loads(result.stderr)
    assert error["error"] == "InvalidSignature"
    assert error["exitCode"] == 3
    assert "wrong-secret" not in result.stderr


# --- credentials and permissions ----------------------------------------------------------------------------


def test_no_polyv_credentials_exit_3_saying_how_to_provide_them(tmp_path: Path) -> None:
    result = cli("status", TASK, env=no_aws_no_polyv(tmp_path))
    assert_one_line(
        result, 3, "CredentialsError: no Polyv credentials", "set POLYV_APP_ID and POLYV_APP_SECRET"
    )


def test_status_with_a_parameter_but_no_aws_region_exits_2_naming_the_region(tmp_path: Path) -> None:
    result = cli("status", TASK, "--credentials-parameter", PARAMETER, env=no_aws_no_polyv(tmp_path))
    assert_one_line(
        result, 2, f"SSM parameter {PARAMETER}: no AWS region is configured", "set AWS_DEFAULT_REGION"
    )


def test_no_aws_credentials_exit_3(tmp_path: Path) -> None:
    env = no_aws_no_polyv(tmp_path) | {"AWS_DEFAULT_REGION": "us-east-1"}
    result = cli("status", TASK, "--credentials-parameter", PARAMETER, env=env)
    assert_one_line(result, 3, "no AWS credentials found", "aws configure")


def test_ssm_access_denied_exits_3_naming_the_permission(denying_ssm: str, tmp_path: Path) -> None:
    env = no_aws_no_polyv(tmp_path) | {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "example",
        "AWS_ENDPOINT_URL_SSM": denying_ssm,
    }
    result = cli("status", TASK, "--credentials-parameter", PARAMETER, env=env)
    assert_one_line(result, 3, "AWS refused: AccessDeniedException", "ssm:GetParameter")


def test_ssm_denied_by_iam_policy_evaluation_exits_3(
    moto_with_iam: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    endpoint, keys = moto_with_iam
    env = no_aws_no_polyv(tmp_path) | keys | {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}
    result = cli("status", TASK, "--credentials-parameter", PARAMETER, env=env)
    assert_one_line(result, 3, f"SSM parameter {PARAMETER}: AWS refused", "ssm:GetParameter")


def test_ssm_parameter_that_does_not_exist_exits_2(moto_endpoint: str, tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path)}  # the integration fixture's moto server and keys
    env = {k: v for k, v in env.items() if not k.startswith("POLYV_")}
    result = cli("status", TASK, "--credentials-parameter", "/no/such/parameter", env=env)
    assert_one_line(result, 2, "it does not exist in this account and region")


def test_ssm_unreachable_exits_4(tmp_path: Path) -> None:
    env = aws_nobody_answers(tmp_path, "AWS_ENDPOINT_URL_SSM") | {"AWS_DEFAULT_REGION": "us-east-1"}
    result = cli("status", TASK, "--credentials-parameter", PARAMETER, env=env)
    line = assert_one_line(result, 4, "ParameterStoreUnavailable", "EndpointConnectionError", "try again")
    assert "127.0.0.1" not in line  # the endpoint is not the user's business in an error line


def test_status_reads_the_parameter_and_polyv_answers(
    emulator: EmulatorServer, ssm_parameter: str, tmp_path: Path
) -> None:
    emulator.add_video("v1", 10, ready_after=0)
    task_id = emulator.create_task(["v1"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYV_")}
    env |= {"POLYV_API_BASE_URL": emulator.base_url, "HOME": str(tmp_path)}
    result = cli("status", task_id, "--credentials-parameter", ssm_parameter, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"task {task_id}: 1 videos")


# --- copy ---------------------------------------------------------------------------------------------------


def test_copy_into_a_bucket_that_does_not_exist_exits_2(emulator: EmulatorServer, s3: S3Client) -> None:
    emulator.add_video("v1", 1024, ready_after=0)
    url = emulator.task_videos(emulator.create_task(["v1"]), emulator.base_url.removeprefix("http://"))[0][
        "url"
    ]
    env = {**os.environ, "POLYV_DOWNLOAD_ALLOW": emulator.base_url}
    result = cli("copy", str(url), "s3://no-such-bucket-here/v1.mp4", env=env)
    assert_one_line(result, 2, "NoSuchBucket")


def test_copy_without_aws_credentials_exits_3(emulator: EmulatorServer, tmp_path: Path) -> None:
    emulator.add_video("v1", 1024, ready_after=0)
    url = emulator.task_videos(emulator.create_task(["v1"]), emulator.base_url.removeprefix("http://"))[0][
        "url"
    ]
    env = no_aws_no_polyv(tmp_path) | {
        "AWS_DEFAULT_REGION": "us-east-1",
        "POLYV_DOWNLOAD_ALLOW": emulator.base_url,
    }
    result = cli("copy", str(url), "s3://some-bucket/v1.mp4", env=env)
    assert_one_line(result, 3, "no AWS credentials found", "aws configure")


# --- run ----------------------------------------------------------------------------------------------------


def polyv_env(emulator: EmulatorServer, tmp_path: Path, secret: str) -> dict[str, str]:
    return no_aws_no_polyv(tmp_path) | {
        "POLYV_APP_ID": emulator.app_id,
        "POLYV_APP_SECRET": secret,
        "POLYV_API_BASE_URL": emulator.base_url,
    }


def test_run_with_a_wrong_secret_exits_3_with_the_same_line_as_status(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    emulator.add_video("v1", 10, ready_after=0)
    task_id = emulator.create_task(["v1"])
    env = polyv_env(emulator, tmp_path, "wrong-secret")
    status = assert_one_line(cli("status", task_id, env=env), 3, "InvalidSignature")
    run = assert_one_line(cli("run", "--task-id", task_id, env=env), 3, "InvalidSignature")
    assert run == status
    vids = assert_one_line(cli("run", "v1", "--expire-days", "1", env=env), 3, "InvalidSignature")
    assert vids == status


def test_run_reads_credentials_from_the_parameter_it_is_given(
    emulator: EmulatorServer, ssm_parameter: str, tmp_path: Path
) -> None:
    """The credentials come from SSM (there are none in the environment): Polyv accepts them and then says
    it does not know the task, before any local stack is started."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYV_")}
    env |= {"POLYV_API_BASE_URL": emulator.base_url, "HOME": str(tmp_path)}
    result = cli("run", "--task-id", TASK, "--credentials-parameter", ssm_parameter, "--json", env=env)
    assert result.returncode == 1
    assert result.stdout == ""
    error = json.loads(result.stderr)
    assert error["error"] == "PolyvBusinessError"
    assert error["exitCode"] == 1


# --- output: progress only on a terminal, --quiet, NO_COLOR -------------------------------------------------

_COLOUR = re.compile(r"\x1b\[[0-9;]*(3[0-9]|9[0-7]|38;)[0-9;]*m")


def run_on_a_terminal(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run with stdout and stderr on a pseudo-terminal, as in a user's shell; return (exit code, output)."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal)
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the process is gone
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    return process.wait(timeout=60), output.decode(errors="replace")


@pytest.fixture
def copy_args(emulator: EmulatorServer, bucket: str) -> list[str]:
    emulator.add_video("v1", 24 * 1024 * 1024, ready_after=0)
    url = emulator.task_videos(emulator.create_task(["v1"]), emulator.base_url.removeprefix("http://"))[0][
        "url"
    ]
    emulator.set_faults(dl_rate_bytes_per_second=4 * 1024 * 1024)  # long enough to draw the bar
    return ["copy", str(url), f"s3://{bucket}/v1.mp4"]


def test_progress_only_on_a_terminal_in_colour_unless_no_color(
    emulator: EmulatorServer, copy_args: list[str]
) -> None:
    env = {**os.environ, "POLYV_DOWNLOAD_ALLOW": emulator.base_url, "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    piped = cli(*copy_args, env=env)
    assert piped.returncode == 0, piped.stderr
    assert piped.stderr == ""  # no progress in a pipe
    assert piped.stdout.startswith("copied ")

    code, shown = run_on_a_terminal([CLI, *copy_args], env)
    assert code == 0, shown
    assert "MB" in shown.replace("copied", "")
    assert _COLOUR.search(shown)  # the bar's colours on a terminal

    code, plain = run_on_a_terminal([CLI, *copy_args], env | {"NO_COLOR": "1"})
    assert code == 0, plain
    assert not _COLOUR.search(plain)


def test_quiet_leaves_only_results_and_errors(emulator: EmulatorServer, copy_args: list[str]) -> None:
    env = {**os.environ, "POLYV_DOWNLOAD_ALLOW": emulator.base_url}
    code, shown = run_on_a_terminal([CLI, *copy_args, "--quiet"], env)
    assert code == 0
    assert shown == ""
    result = cli(*copy_args, "--quiet", "--json", env=env)
    assert result.returncode == 0
    assert json.loads(result.stdout)["status"] in ("COPIED", "SKIPPED")


# --- the deployed stack's commands --------------------------------------------------------------------


@pytest.mark.parametrize("url", ["notaurl", "ftp://example.com/v1", "http://example.com/v1"])
def test_get_with_an_api_url_that_cannot_be_the_api_exits_2_naming_it(tmp_path: Path, url: str) -> None:
    env = no_aws_no_polyv(tmp_path) | {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}
    result = cli("get", "0123456789abcdef0123456789abcdef", "--api-url", url, env=env)
    assert_one_line(result, 2, "InvalidInput", repr(url), "https://")


def test_finding_the_stack_without_aws_credentials_exits_3(tmp_path: Path) -> None:
    env = no_aws_no_polyv(tmp_path) | {"AWS_DEFAULT_REGION": "us-east-1"}
    result = cli("list", "--stack-name", "my-retriever", env=env)
    assert_one_line(result, 3, "no AWS credentials found", "aws configure")


def test_finding_the_stack_when_cloudformation_does_not_answer_exits_4(tmp_path: Path) -> None:
    env = aws_nobody_answers(tmp_path) | {"AWS_DEFAULT_REGION": "us-east-1"}
    result = cli("list", "--stack-name", "my-retriever", env=env)
    assert_one_line(result, 4, "cannot find the API", "EndpointConnectionError")


def test_the_stack_and_its_region_come_from_samconfig_as_make_deploy_uses_them(tmp_path: Path) -> None:
    """A user in the checkout who deployed with `make deploy`: the region there is samconfig.toml's."""
    (tmp_path / "samconfig.toml").write_text(
        'version = 0.1\n[default.global.parameters]\nstack_name = "team"\nregion = "us-east-1"\n'
        '[default.deploy.parameters]\nstack_name = "team"\nregion = "eu-west-1"\n'
    )
    env = aws_nobody_answers(tmp_path)
    result = subprocess.run(
        [CLI, "list"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    # no "You must specify a region": it asked CloudFormation (which here does not answer) for stack 'team'
    assert_one_line(result, 4, "stack 'team'")
    # sam deploy's precedence: the deploy section over the global one
    assert deployed.samconfig_setting("region", tmp_path) == "eu-west-1"


def test_retries_are_told_on_stderr_never_stdout_and_json_keeps_its_one_object(tmp_path: Path) -> None:
    """Polyv unreachable: each retry is a plain line on stderr (why it is slow), the result stream stays
    empty; with --json nothing but the error object."""
    env = no_aws_no_polyv(tmp_path) | {"POLYV_APP_ID": "a", "POLYV_APP_SECRET": "b"}
    base = f"http://127.0.0.1:{closed_port()}"
    task = "0123456789abcdef0123456789abcdef"
    result = cli("status", task, "--api-base-url", base, env=env)
    assert result.returncode == 4
    assert result.stdout == ""
    *retries, error = result.stderr.strip().splitlines()
    assert retries
    assert all(line.startswith("polyv-retriever: retrying ") for line in retries)
    assert error.startswith("polyv-retriever: PolyvTransportError: ")
    as_json = cli("status", task, "--json", "--api-base-url", base, env=env)
    assert as_json.stdout == ""
    assert json.loads(as_json.stderr)["exitCode"] == 4  # the whole of stderr is one object


@pytest.mark.parametrize(
    ("args", "named"),
    [(("status", "bad!id"), "taskId 'bad!id'"), (("create", "a/b", "--expire-days", "3"), "vid 'a/b'")],
)
def test_bad_input_is_exit_2_even_before_credentials_are_looked_for(
    tmp_path: Path, args: tuple[str, ...], named: str
) -> None:
    assert_one_line(cli(*args, env=no_aws_no_polyv(tmp_path)), 2, "InvalidInput", named)
