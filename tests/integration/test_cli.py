"""The installed ``polyv-retriever`` console script, run as a user runs it, against the emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from polyv_retriever.polyv_emulator import EmulatorServer

CLI = str(Path(sys.executable).with_name("polyv-retriever"))


def run_cli(
    emulator: EmulatorServer, *args: str, secret: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "POLYV_APP_ID": emulator.app_id,
        "POLYV_APP_SECRET": secret or emulator.secret,
        "POLYV_API_BASE_URL": emulator.base_url,
    }
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def test_status_prints_each_videos_status(emulator: EmulatorServer) -> None:
    emulator.add_video("ready1", 10, ready_after=1)
    emulator.add_video("failed1", 10, outcome="FAIL", ready_after=1)
    emulator.add_video("slow1", 10, ready_after=10**9)
    task_id = emulator.create_task(["ready1", "failed1", "slow1"])
    time.sleep(0.05)

    result = run_cli(emulator, "status", task_id)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"task {task_id}: 3 videos, in progress" in lines[0]
    rows = {line.split()[0]: line.split()[1] for line in lines[2:]}
    assert rows == {"ready1": "SUCCESS", "failed1": "FAIL", "slow1": "PROCESS"}


def test_status_json_prints_the_parsed_task_without_download_urls(emulator: EmulatorServer) -> None:
    emulator.add_video("ready1", 10, ready_after=1)
    task_id = emulator.create_task(["ready1"])
    time.sleep(0.05)

    result = run_cli(emulator, "status", task_id, "--json")

    assert result.returncode == 0, result.stderr
    task = json.loads(result.stdout)
    assert task["taskId"] == task_id
    assert task["counts"]["SUCCESS"] == 1
    assert task["videos"][0]["vid"] == "ready1"
    assert "auth_key" not in result.stdout


def test_create_prints_the_task_id_that_polyv_now_knows(emulator: EmulatorServer) -> None:
    result = run_cli(emulator, "create", "v1", "v2", "--expire-days", "3")
    assert result.returncode == 0, result.stderr
    task_id = result.stdout.strip()
    assert emulator.state.tasks[task_id].vids == ["v1", "v2"]
    assert emulator.state.tasks[task_id].expire_days == 3


@pytest.mark.parametrize(
    ("args", "secret", "code", "message"),
    [
        (
            ["status", "0123456789abcdef0123456789abcdef"],
            "wrong-secret",
            3,
            "InvalidSignature: Polyv error 104",
        ),
        (["status", "0123456789abcdef0123456789abcdef"], None, 1, "PolyvBusinessError: Polyv error 3002"),
        (["status", "not a task"], None, 2, "InvalidInput: taskId 'not a task' is malformed"),
        (["create", "v1", "--expire-days", "9"], None, 2, "expireDays must be an integer from 1 to 7"),
        (["create", "v1"], None, 2, "the following arguments are required: --expire-days"),
        (["frobnicate"], None, 2, "invalid choice: 'frobnicate'"),
    ],
)
def test_errors_are_one_line_on_stderr_with_a_distinct_exit_code(
    emulator: EmulatorServer, args: list[str], secret: str | None, code: int, message: str
) -> None:
    result = run_cli(emulator, *args, secret=secret)
    assert result.returncode == code
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr
    assert "wrong-secret" not in result.stderr


def test_transient_failure_exits_4(emulator: EmulatorServer) -> None:
    emulator.set_faults(api_5xx=100)
    result = run_cli(emulator, "status", "0123456789abcdef0123456789abcdef")
    assert result.returncode == 4
    assert "PolyvUnavailable" in result.stderr
