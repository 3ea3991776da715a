"""The tested = deployed check (infra/tools/deployed_versions.py), run as `make deployed-check` runs it."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def fake_build(tmp_path: Path, dists: dict[str, str]) -> Path:
    function = tmp_path / "build" / "TransferFunction"
    (function / "polyv_retriever").mkdir(parents=True)
    for name, version in dists.items():
        info = function / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return tmp_path / "build"


def check(build: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "infra/tools/deployed_versions.py"), str(build)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_same_versions_pass(tmp_path: Path) -> None:
    build = fake_build(
        tmp_path, {"boto3": metadata.version("boto3"), "pydantic": metadata.version("pydantic")}
    )
    result = check(build)
    assert result.returncode == 0, result.stderr
    assert "2 shipped distributions" in result.stdout


def test_another_version_fails_naming_both(tmp_path: Path) -> None:
    result = check(fake_build(tmp_path, {"boto3": metadata.version("boto3"), "Pydantic": "1.0.0"}))
    assert result.returncode == 1
    assert (
        f"TransferFunction: ships pydantic 1.0.0, the tests ran {metadata.version('pydantic')}"
        in result.stderr
    )


def test_a_distribution_the_tests_never_had_fails(tmp_path: Path) -> None:
    result = check(fake_build(tmp_path, {"leftpad-for-lambda": "0.1"}))
    assert result.returncode == 1
    assert "ships leftpad-for-lambda 0.1, which the tests never ran with" in result.stderr


def test_no_build_fails(tmp_path: Path) -> None:
    assert check(tmp_path / "missing").returncode == 1
    (tmp_path / "empty").mkdir()
    assert "no built function" in check(tmp_path / "empty").stderr


def test_a_module_shipped_without_the_runtimes_bytecode_fails(tmp_path: Path) -> None:
    """Lambda cannot write __pycache__ in /var/task: a module without its .pyc is compiled at every cold
    start. The check names the bytecode the template's runtime needs (cpython-313 for python3.13)."""
    build = fake_build(tmp_path, {"boto3": metadata.version("boto3")})
    package = build / "TransferFunction" / "polyv_retriever"
    (package / "engine.py").write_text("x = 1\n")
    result = check(build)
    assert result.returncode == 1
    assert "1 modules without cpython-313 bytecode" in result.stderr
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "engine.cpython-313.pyc").write_bytes(b"")
    assert check(build).returncode == 0
