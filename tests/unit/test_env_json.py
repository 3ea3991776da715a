"""env.json (for `sam local invoke --env-vars env.json`) sets every variable that sam local cannot resolve."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from polyv_retriever.local_stack.template import load_template

ROOT = Path(__file__).resolve().parents[2]


def _unresolvable(value: Any, parameters: dict[str, Any]) -> bool:
    """sam local resolves a Ref to a template parameter (its default), not a resource's name nor an !If."""
    if not isinstance(value, dict):
        return False
    return not (set(value) == {"Ref"} and value["Ref"] in parameters)


def test_every_variable_sam_local_cannot_resolve_is_in_env_json() -> None:
    template = load_template()
    env_json = json.loads((ROOT / "env.json").read_text())
    shared = env_json.get("Parameters", {})
    globals_env = template["Globals"]["Function"].get("Environment", {}).get("Variables", {})
    functions = {n: r for n, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
    assert set(env_json) - {"Parameters"} <= set(functions)
    missing = []
    for name, resource in functions.items():
        variables = {**globals_env, **resource["Properties"].get("Environment", {}).get("Variables", {})}
        for variable, value in variables.items():
            if _unresolvable(value, template["Parameters"]) and variable not in {
                **shared,
                **env_json.get(name, {}),
            }:
                missing.append(f"{name}.{variable}")
    assert missing == []
