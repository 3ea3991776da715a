"""Installed as a tool: a non-editable install of the wheel, into a venv of its own, run from `/`.

Nothing of the checkout is on the path: the template and the state machine definition come from the wheel's
package data, the local stack and the emulator from the installed ``polyv_retriever`` package.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
UV = ROOT / ".tools/uv/bin/uv"


def test_a_wheel_installed_elsewhere_runs_the_demo_from_the_root_directory(tmp_path: Path) -> None:
    assert UV.exists(), "the pinned uv is missing: run make install"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("POLYV_", "AWS_", "PYTHON", "VIRTUAL_ENV"))
    }
    env["UV_PYTHON_DOWNLOADS"] = "never"

    def uv(*args: str) -> None:
        subprocess.run([str(UV), *args], cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)

    uv("build", "--wheel", "--quiet", "--out-dir", str(tmp_path / "dist"))
    (wheel,) = (tmp_path / "dist").glob("polyv_retriever-*.whl")
    tool = tmp_path / "tool"
    uv("venv", "--quiet", "--python", sys.executable, str(tool))
    uv("pip", "install", "--quiet", "--python", str(tool / "bin/python"), f"{wheel}[local]")

    def installed(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(tool / "bin/polyv-retriever"), *args],
            cwd="/",
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    where = subprocess.run(
        [
            str(tool / "bin/python"),
            "-c",
            "from polyv_retriever.local_stack import template; print(template.TEMPLATE)",
        ],
        cwd="/",
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(tool)  # the wheel's copy, not the checkout's

    assert installed("--version").stdout.strip() == f"polyv-retriever {metadata.version('polyv-retriever')}"
    demo = installed("run", "--demo")
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert demo.stdout.rstrip().endswith(
        "OK: every object in S3 verified; every video accounted for in the manifest"
    )
