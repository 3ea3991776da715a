"""``python -m polyv_retriever.local_stack.invoke FUNCTION EVENT.json``: one handler, one event, no container.

The handler runs in this process on the local stack (moto's S3, SSM and Step Functions, the Polyv emulator),
with the environment the template gives it, as ``sam local invoke`` would run it in a container. Prints the
handler's result as JSON; a raised error is printed as Lambda reports it (errorType, errorMessage), exit 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from polyv_retriever.local_stack.moto_server import LocalContext
from polyv_retriever.local_stack.stack import BUCKET, FAST_POLLING, LocalStack, StackOptions, _load_handler
from polyv_retriever.local_stack.template import ResolvedTemplate, load_template


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m polyv_retriever.local_stack.invoke", description=__doc__)
    parser.add_argument("function", metavar="FUNCTION", help="the template's logical id, e.g. ApiFunction")
    parser.add_argument("event", metavar="EVENT.json", type=Path, help="e.g. events/api_get_retrieval.json")
    args = parser.parse_args(argv)

    resolved = ResolvedTemplate(load_template(), dict(FAST_POLLING), physical_names={"DataBucket": BUCKET})
    functions = {f.logical_id: f for f in resolved.functions()}
    if args.function not in functions:
        parser.error(
            f"no function {args.function!r} in template.yaml; one of: {', '.join(sorted(functions))}"
        )
    function = functions[args.function]
    event = json.loads(args.event.read_text(encoding="utf-8"))
    with LocalStack(StackOptions(function_environment={"POWERTOOLS_LOG_LEVEL": "WARNING"})):
        handler = _load_handler(function.handler)
        try:
            result = handler(event, LocalContext(function.logical_id, function.timeout, function.memory))
        except Exception as exc:  # reported as Lambda reports an unhandled error
            print(json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}))
            return 1
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
