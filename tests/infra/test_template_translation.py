"""What SAM really deploys and builds, read from SAM's own translator and from the template itself."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from polyv_retriever.local_stack.template import load_template

ROOT = Path(__file__).resolve().parents[2]
SAM_PYTHON = ROOT / ".tools/sam/bin/python"

pytestmark = pytest.mark.infra


@pytest.fixture(scope="module")
def translated() -> dict[str, Any]:
    assert SAM_PYTHON.exists(), "the SAM tool venv is missing: run make install"
    out = subprocess.run(
        [str(SAM_PYTHON), str(ROOT / "infra/tools/translate_template.py"), str(ROOT / "template.yaml")],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1"},
    )
    return dict(json.loads(out.stdout)["Resources"])


def test_the_api_has_only_its_throttled_v1_stage(translated: dict[str, Any]) -> None:
    # Without an OpenApiVersion, SAM's Deployment also names a stage "Stage": a second, unthrottled copy
    # of the API that nobody asked for.
    stages = sorted(
        r["Properties"]["StageName"] for r in translated.values() if r["Type"] == "AWS::ApiGateway::Stage"
    )
    assert stages == ["v1"]
    deployments = [r for r in translated.values() if r["Type"] == "AWS::ApiGateway::Deployment"]
    assert deployments
    assert all("StageName" not in d["Properties"] for d in deployments)


def test_every_function_is_built_from_the_locked_requirements() -> None:
    functions = {
        name: resource
        for name, resource in load_template()["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    assert functions
    not_makefile = [n for n, r in functions.items() if r.get("Metadata", {}).get("BuildMethod") != "makefile"]
    assert not_makefile == [], (
        "these would be built by sam's own resolver, not from functions/requirements.txt"
    )
