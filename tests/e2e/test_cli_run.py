"""``polyv-retriever run``: what `make demo` runs, and the same against a Polyv reached with credentials."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from polyv_retriever.polyv_emulator import EmulatorServer

pytestmark = pytest.mark.e2e
CLI = str(Path(sys.executable).with_name("polyv-retriever"))


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("POLYV_", "AWS_"))}
    return subprocess.run(
        [CLI, "run", *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_demo_runs_end_to_end_and_verifies_every_object() -> None:
    started = time.monotonic()
    result = run()
    elapsed = time.monotonic() - started

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "SUCCEEDED, PARTIAL (4 COPIED, 1 POLYV_FAIL)" in out
    for vid in ("lecture-01", "lecture-02", "keynote-4k", "archive-2019"):
        assert any(vid in line and "COPIED" in line for line in out.splitlines()), vid
    assert any("interview-raw" in line and "FAIL" in line for line in out.splitlines())
    assert out.rstrip().endswith("OK: every object in S3 verified; every video accounted for in the manifest")
    assert result.stderr == ""  # the functions' logs and EMF records are --verbose's
    assert elapsed < 90


def test_run_against_a_polyv_reached_with_credentials(emulator: EmulatorServer) -> None:
    """The real-Polyv path: credentials and API base from the environment, the task named by --task-id; --json
    prints the verdict and the final retrieval as one JSON document and nothing else."""
    emulator.add_video("real-1", 3 * 1024 * 1024, ready_after=0)
    task_id = emulator.create_task(["real-1"])
    result = run(
        "--task-id",
        task_id,
        "--json",
        env={
            "POLYV_APP_ID": emulator.app_id,
            "POLYV_APP_SECRET": emulator.secret,
            "POLYV_API_BASE_URL": emulator.base_url,
            "POLYV_DOWNLOAD_ALLOW": emulator.base_url,
        },
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    verdict = json.loads(result.stdout)
    assert verdict["ok"] is True
    assert verdict["problems"] == []
    assert verdict["retrieval"]["status"] == "SUCCEEDED"
    assert verdict["retrieval"]["result"]["counts"]["COPIED"] == 1
    assert result.stderr == ""
    assert emulator.secret not in result.stdout + result.stderr


def test_a_run_that_times_out_with_json_says_so_in_one_json_object_on_stderr() -> None:
    """Transfers still running while the stack shuts down must not write on stdout or stderr."""
    result = run("--demo", "--json", "--timeout", "4")
    assert result.returncode != 0
    assert result.stdout == ""
    error = json.loads(result.stderr)  # one object, nothing else
    assert error["exitCode"] == result.returncode
    assert "still RUNNING after 4 s" in error["message"]
    assert "run again with a longer --timeout" in error["message"]  # not `get`: the stack is gone


def test_run_without_credentials_cannot_name_a_real_task() -> None:
    result = run("--task-id", "0123456789abcdef0123456789abcdef")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "polyv-retriever: InvalidInput: --task-id and VIDs need real Polyv credentials: set POLYV_APP_ID and "
        "POLYV_APP_SECRET (fix the input and try again)"
    )
