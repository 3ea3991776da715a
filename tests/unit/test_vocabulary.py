"""The status vocabularies are spoken through their enums: no part compares against a string of its own."""

from __future__ import annotations

import ast
from pathlib import Path

from polyv_retriever import vocabulary

PACKAGE = Path(vocabulary.__file__).parent
WORDS = {
    member.value
    for enum in (
        vocabulary.ExecutionStatus,
        vocabulary.Outcome,
        vocabulary.VideoOutcome,
        vocabulary.TransferStatus,
        vocabulary.VideoState,
    )
    for member in enum
}


def _literals(tree: ast.AST) -> list[tuple[int, str]]:
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_no_module_spells_a_status_as_a_string_literal() -> None:
    found = [
        f"{path.relative_to(PACKAGE)}:{line}: {value!r}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "vocabulary.py"
        for line, value in _literals(ast.parse(path.read_text()))
        if value in WORDS
    ]
    assert found == []
