"""Tested = deployed: every distribution in sam build's output must have the version the tests ran with.

Run with the test venv's Python after ``sam build``: ``python infra/tools/deployed_versions.py BUILD_DIR``.
Exit 1, with one line per difference, if a function ships a distribution the test venv lacks or has in
another version (the SAM CLI's own pins once gave the tests boto3 1.43 and the functions 1.44), or
a module without the bytecode the runtime's Python would otherwise compile at every cold start.
"""

from __future__ import annotations

import sys
from email.parser import HeaderParser
from importlib import metadata
from pathlib import Path


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def built_distributions(function_dir: Path) -> dict[str, str]:
    """``{name: version}`` of every ``*.dist-info`` in one built function."""
    found = {}
    for info in function_dir.glob("*.dist-info/METADATA"):
        headers = HeaderParser().parsestr(info.read_text(encoding="utf-8"))
        found[_canonical(headers["Name"])] = headers["Version"]
    return found


TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


def runtime_bytecode_tag(template: Path = TEMPLATE) -> str:
    """``cpython-313`` for ``Runtime: python3.13`` in the template's Globals."""
    runtime = next(
        line.split(":", 1)[1].strip() for line in template.read_text().splitlines() if "Runtime:" in line
    )
    return "cpython-" + runtime.removeprefix("python").replace(".", "")


def modules_without_bytecode(function_dir: Path, tag: str) -> list[Path]:
    """Every ``.py`` with no ``__pycache__/NAME.{tag}.pyc`` beside it: Lambda's read-only /var/task would
    have it compiled from source at every cold start (functions/Makefile compiles them all)."""
    return [
        source
        for source in function_dir.rglob("*.py")
        if not (source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc").is_file()
    ]


def differences(build_dir: Path) -> tuple[list[str], int]:
    tested = {_canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    problems, checked = [], 0
    functions = sorted(d for d in build_dir.iterdir() if d.is_dir() and (d / "polyv_retriever").is_dir())
    if not functions:
        problems.append(f"{build_dir}: no built function (run sam build first)")
    tag = runtime_bytecode_tag()
    for function in functions:
        if missing := modules_without_bytecode(function, tag):
            problems.append(
                f"{function.name}: {len(missing)} modules without {tag} bytecode, e.g. {missing[0]}"
            )
        shipped = built_distributions(function)
        if not shipped:
            problems.append(f"{function.name}: ships no distribution at all")
        for name, version in sorted(shipped.items()):
            checked += 1
            if name not in tested:
                problems.append(f"{function.name}: ships {name} {version}, which the tests never ran with")
            elif tested[name] != version:
                problems.append(f"{function.name}: ships {name} {version}, the tests ran {tested[name]}")
    return problems, checked


def main(argv: list[str]) -> int:
    build_dir = Path(argv[1] if len(argv) > 1 else ".aws-sam/build")
    if not build_dir.is_dir():
        print(f"deployed-check: {build_dir} does not exist (run sam build first)", file=sys.stderr)
        return 1
    problems, checked = differences(build_dir)
    for problem in problems:
        print(f"deployed-check: {problem}", file=sys.stderr)
    if problems:
        print("deployed-check: run `make lock` and `make install`, then build again", file=sys.stderr)
        return 1
    print(f"deployed-check: {checked} shipped distributions, each the version the tests ran, all compiled")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
