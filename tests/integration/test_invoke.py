"""`make invoke`: one handler with a sample event on the local stack, no container."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def invoke(function: str, event: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POLYV_"))}
    return subprocess.run(
        [sys.executable, "-m", "polyv_retriever.local_stack.invoke", function, str(ROOT / event)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_api_handler_answers_the_sample_event() -> None:
    result = invoke("ApiFunction", "events/api_get_retrieval.json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["statusCode"] == 404  # a fresh local stack knows no retrieval
    assert "16661c08b9564c1ea6f4544ccd568e58" in answer["body"]


def test_a_handler_error_is_reported_as_lambda_reports_it() -> None:
    result = invoke("CheckStatusFunction", "events/check_status.json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["errorType"] == "PolyvBusinessError"  # the emulator knows no such task
