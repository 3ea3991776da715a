"""Print the CloudFormation that SAM's own translator makes of template.yaml, as JSON on stdout.

Runs with the SAM tool venv's Python (``.tools/sam/bin/python``), where ``samtranslator`` lives; the tests
read its output to check what SAM really deploys (e.g. that there is no implicit ``Stage`` stage). Local paths
(CodeUri, DefinitionUri) become placeholder S3 URIs: ``sam deploy`` does the same after uploading them.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class _NoManagedPolicies:
    """The translator asks IAM for managed policy ARNs only for policies named by name; there are none."""

    def load(self) -> dict[str, str]:
        return {}


def main(path: str) -> None:
    with open(path, encoding="utf-8") as handle:
        template: dict[str, Any] = yaml_parse(handle.read())
    template.get("Globals", {}).get("Function", {})["CodeUri"] = "s3://placeholder/code.zip"
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        if isinstance(properties.get("CodeUri"), str):
            properties["CodeUri"] = "s3://placeholder/code.zip"
        if isinstance(properties.get("DefinitionUri"), str):
            properties["DefinitionUri"] = "s3://placeholder/definition.json"
    json.dump(transform(template, {}, _NoManagedPolicies()), sys.stdout, default=str)


if __name__ == "__main__":
    main(sys.argv[1])
