"""Reads ``template.yaml`` and resolves what the local stack needs from it: local cannot drift from deployed.

Only the intrinsics the template uses are understood (Ref, GetAtt, Sub, If, Equals, Not); anything else is
an error here rather than a silent difference.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ACCOUNT = "123456789012"
REGION = "us-east-1"
#: Where the wheel keeps template.yaml and the files it names (setup.py copies them in at build time).
PACKAGED = Path(__file__).resolve().parent / "deployment"


def _deployment_root() -> Path:
    """template.yaml's directory: the installed tool's packaged copy, else the checkout this file is in."""
    if (PACKAGED / "template.yaml").is_file():
        return PACKAGED
    return Path(__file__).resolve().parents[3]


#: Paths in the template (DefinitionUri) are relative to this directory, as they are for sam.
ROOT = _deployment_root()
TEMPLATE = ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !Sub, ...) turned into their long form."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _tag)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        template: dict[str, Any] = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
        return template


@dataclass(frozen=True)
class LocalFunction:
    logical_id: str
    handler: str  # module.path.function
    timeout: int
    memory: int
    environment: dict[str, str]

    @property
    def arn(self) -> str:
        return function_arn(self.logical_id)


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


class ResolvedTemplate:
    """The template with parameters (defaults, then overrides) and physical names filled in."""

    def __init__(
        self,
        template: dict[str, Any],
        parameters: dict[str, str] | None = None,
        physical_names: dict[str, str] | None = None,
    ) -> None:
        self.template = template
        self.parameters = {
            name: str(spec.get("Default", "")) for name, spec in template.get("Parameters", {}).items()
        }
        for name, value in (parameters or {}).items():
            if name not in self.parameters:
                raise ValueError(f"template.yaml has no parameter {name}")
            self.parameters[name] = value
        self.physical_names = physical_names or {}
        self.resources: dict[str, dict[str, Any]] = template["Resources"]

    # --- intrinsic functions ------------------------------------------------------------------------------

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def physical_name(self, logical_id: str) -> str:
        return self.physical_names.get(logical_id, logical_id)

    def _ref(self, name: str) -> Any:
        if name in self.parameters:
            return self.parameters[name]
        if name == "AWS::Region":
            return REGION
        if name == "AWS::AccountId":
            return ACCOUNT
        if name == "AWS::Partition":
            return "aws"
        if name == "AWS::URLSuffix":
            return "amazonaws.com"
        if name == "AWS::NoValue":
            return None
        resource = self.resources.get(name)
        if resource is None:
            raise ValueError(f"Ref to unknown {name}")
        if resource["Type"] == "AWS::Serverless::StateMachine":
            return f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{self.physical_name(name)}"
        return self.physical_name(name)

    def _get_att(self, logical_id: str, attribute: str) -> Any:
        resource = self.resources[logical_id]
        if resource["Type"] == "AWS::Serverless::Function" and attribute == "Arn":
            return function_arn(self.physical_name(logical_id))
        if resource["Type"] == "AWS::S3::Bucket" and attribute == "Arn":
            return f"arn:aws:s3:::{self.physical_name(logical_id)}"
        if attribute == "Name":
            return self.physical_name(logical_id)
        if attribute == "Arn":
            return f"arn:aws:local:{REGION}:{ACCOUNT}:{self.physical_name(logical_id)}"
        raise ValueError(f"GetAtt {logical_id}.{attribute} is not known to the local stack")

    def _sub(self, value: Any) -> str:
        text, variables = (value, {}) if isinstance(value, str) else (value[0], self.resolve(value[1]))

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name:
                return str(self._get_att(*name.split(".", 1)))
            return str(self._ref(name))

        return re.sub(r"\$\{([^}!]+)\}", replace, text)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [r for r in (self.resolve(v) for v in value) if r is not None]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self._ref(arg)
            if key == "Fn::GetAtt":
                return self._get_att(*arg)
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::If":
                return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])
            if key == "Fn::Equals":
                return self.resolve(arg[0]) == self.resolve(arg[1])
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key.startswith("Fn::"):
                raise ValueError(f"{key} is not supported by the local stack")
        return {k: self.resolve(v) for k, v in value.items()}

    # --- what the local stack builds ----------------------------------------------------------------------

    def functions(self) -> list[LocalFunction]:
        defaults = self.template.get("Globals", {}).get("Function", {})
        found = []
        for logical_id, resource in self.resources.items():
            if resource["Type"] != "AWS::Serverless::Function":
                continue
            props = resource["Properties"]
            environment = {
                **self.resolve(defaults.get("Environment", {}).get("Variables", {})),
                **self.resolve(props.get("Environment", {}).get("Variables", {})),
            }
            found.append(
                LocalFunction(
                    logical_id=logical_id,
                    handler=props["Handler"],
                    timeout=int(props.get("Timeout", defaults.get("Timeout", 3))),
                    memory=int(props.get("MemorySize", defaults.get("MemorySize", 128))),
                    environment={k: str(v) for k, v in environment.items()},
                )
            )
        return found

    def state_machine_ids(self) -> list[str]:
        return [k for k, r in self.resources.items() if r["Type"] == "AWS::Serverless::StateMachine"]

    def state_machine(self, logical_id: str = "RetrievalStateMachine") -> tuple[str, str]:
        """(name, definition with DefinitionSubstitutions applied), exactly as SAM would deploy it."""
        props = self.resources[logical_id]["Properties"]
        definition = (ROOT / props["DefinitionUri"]).read_text(encoding="utf-8")
        for name, value in self.resolve(props.get("DefinitionSubstitutions", {})).items():
            definition = definition.replace("${" + name + "}", str(value))
        json.loads(definition)  # it must still be JSON
        return self.physical_name(logical_id), definition

    def api_routes(self, function_id: str = "ApiFunction") -> list[tuple[str, str]]:
        """(method, resource path) of each Api event of the function."""
        events = self.resources[function_id]["Properties"].get("Events", {})
        return [
            (e["Properties"]["Method"].upper(), e["Properties"]["Path"])
            for e in events.values()
            if e["Type"] == "Api"
        ]

    def bucket_properties(self, logical_id: str = "DataBucket") -> dict[str, Any]:
        return dict(self.resolve(self.resources[logical_id].get("Properties", {})))
