"""``polyv-retriever submit / get --wait`` against the local stack's API, SigV4-signed as against AWS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from polyv_retriever.local_stack.stack import AWS_KEY_ID, AWS_SECRET
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e
CLI = str(Path(sys.executable).with_name("polyv-retriever"))
MiB = 1024 * 1024


def cli(
    stack: Stack, *args: str, secret: str = AWS_SECRET, url_from_env: bool = False
) -> subprocess.CompletedProcess[str]:
    """The console script as a user runs it: credentials from the usual chain (here the environment)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POLYV_", "AWS_"))}
    env.update(AWS_ACCESS_KEY_ID=AWS_KEY_ID, AWS_SECRET_ACCESS_KEY=secret, AWS_REGION="us-east-1")
    where = [] if url_from_env else ["--api-url", stack.info["apiUrl"]]
    if url_from_env:
        env["POLYV_RETRIEVER_API_URL"] = stack.info["apiUrl"]
    return subprocess.run(
        [CLI, *args, *where], env=env, capture_output=True, text=True, timeout=180, check=False
    )


def test_submit_then_get_wait_follows_each_video_to_the_end(stack: Stack) -> None:
    task_id = stack.task(
        [
            {"vid": "cli-a", "size": 6 * MiB, "outcome": "SUCCESS", "readyAfter": 600},
            {"vid": "cli-b", "size": 2 * MiB, "outcome": "SUCCESS", "readyAfter": 6000},
        ]
    )
    submitted = cli(stack, "submit", "--task-id", task_id, "--prefix", "cli/", "--json")
    assert submitted.returncode == 0, submitted.stderr
    assert json.loads(submitted.stdout)["retrievalId"] == task_id

    followed = cli(stack, "get", task_id, "--wait", "--interval", "0.3", url_from_env=True)

    assert followed.returncode == 0, followed.stdout + followed.stderr
    # off a terminal the live table (run's view) is not drawn: the final per-video table is
    rows = {line.split()[1]: line for line in followed.stdout.splitlines() if line.startswith("│ cli-")}
    assert set(rows) == {"cli-a", "cli-b"}
    assert all("SUCCESS" in row and "COPIED" in row for row in rows.values())
    assert f"retrieval {task_id}: SUCCEEDED, COMPLETE (2 COPIED)" in followed.stdout
    assert stack.object_sha256(f"cli/{task_id}/cli-a.mp4") == stack.served_sha256("cli-a")

    again = cli(stack, "submit", "--task-id", task_id)
    assert again.returncode == 0
    assert f"retrieval {task_id} already exists: SUCCEEDED" in again.stdout


def test_get_wait_on_a_partial_retrieval_exits_1_saying_how_it_ended(stack: Stack) -> None:
    task_id = stack.task(
        [
            {"vid": "cli-ok", "size": MiB, "outcome": "SUCCESS", "readyAfter": 300},
            {"vid": "cli-fail", "size": MiB, "outcome": "FAIL", "readyAfter": 300},
        ]
    )
    assert cli(stack, "submit", "--task-id", task_id).returncode == 0
    followed = cli(stack, "get", task_id, "--wait", "--interval", "0.3", "--json")
    assert followed.returncode == 1
    assert (
        json.loads(followed.stdout)["result"]["outcome"] == "PARTIAL"
    )  # --json: stdout is that one document
    assert followed.stderr.strip() == f"polyv-retriever: retrieval {task_id} ended SUCCEEDED, PARTIAL"


def test_a_wrong_secret_is_refused_by_the_apis_signature_check(stack: Stack) -> None:
    refused = cli(stack, "get", "0123456789abcdef0123456789abcdef", secret="not-the-secret")
    assert refused.returncode == 3
    assert refused.stderr.startswith("polyv-retriever: ApiAccessDenied: GET /retrievals/")
    assert "signature we calculated does not match" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["get", "0123456789abcdef0123456789abcdef"], 1, "RetrievalNotFound: GET /retrievals/"),
        (["submit", "v1", "--expire-days", "9"], 2, "expireDays must be an integer from 1 to 7"),
        (["submit"], 2, "name the work: --task-id TASK_ID, or VID... with --expire-days N"),
    ],
)
def test_refusals_are_one_line_with_the_contracts_exit_code(
    stack: Stack, args: list[str], code: int, says: str
) -> None:
    result = cli(stack, *args)
    assert result.returncode == code, result.stderr
    assert says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_list_shows_the_newest_first_and_cancel_stops_a_running_retrieval(stack: Stack) -> None:
    slow = stack.task([{"vid": "cli-slow", "size": MiB, "outcome": "SUCCESS", "readyAfter": 10**7}])
    assert cli(stack, "submit", "--task-id", slow).returncode == 0

    listed = cli(stack, "list", "--status", "RUNNING", "--json")
    assert listed.returncode == 0, listed.stderr
    running = [r["retrievalId"] for r in json.loads(listed.stdout)["retrievals"]]
    assert running[0] == slow

    # By the attempt's execution name, as the notice for a stopped or failed execution prints it.
    cancelled = cli(stack, "cancel", f"{slow}.1")
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"retrieval {slow}: cancel requested (202)" in cancelled.stdout
    followed = cli(stack, "get", f"{slow}.1", "--wait", "--interval", "0.3")
    assert followed.returncode == 1
    assert f"retrieval {slow} ended ABORTED" in followed.stderr
    assert f"retrieval {slow}: ABORTED, CANCELLED" in followed.stdout


def test_submit_rerun_starts_attempt_2_and_get_shows_either_attempt_by_name(stack: Stack) -> None:
    task_id = stack.task([{"vid": "cli-again", "size": MiB, "outcome": "SUCCESS", "readyAfter": 100}])
    assert cli(stack, "submit", "--task-id", task_id).returncode == 0
    assert cli(stack, "get", task_id, "--wait", "--interval", "0.3").returncode == 0

    rerun = cli(stack, "submit", "--task-id", task_id, "--rerun")
    assert rerun.returncode == 0, rerun.stderr
    assert f"retrieval {task_id} started: RUNNING" in rerun.stdout
    assert "(attempt 2)" in rerun.stdout
    second = cli(stack, "get", f"{task_id}.2", "--wait", "--interval", "0.3")
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"retrieval {task_id}: SUCCEEDED, COMPLETE (1 SKIPPED)" in second.stdout  # intact: not copied

    first = cli(stack, "get", f"{task_id}.1")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(f"retrieval {task_id} attempt 1: SUCCEEDED, started ")
    assert "the latest is attempt 2: SUCCEEDED" in first.stdout
    assert cli(stack, "get", f"{task_id}.3").returncode == 1  # no such attempt: RetrievalNotFound
    refused = cli(stack, "cancel", f"{task_id}.1")
    assert refused.returncode != 0
    assert f"attempt 1 of {task_id} already ended" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
