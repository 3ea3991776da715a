"""``python -m polyv_retriever.local_stack``: run the local stack until interrupted; print where it all is.

The first line on stdout is one JSON object (endpoints, bucket, state machine ARN) for scripts and tests;
the stack stops on SIGTERM or Ctrl-C, and with --exit-on-stdin-close when stdin closes (so that a parent
process that dies, a test run say, takes the stack along).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from polyv_retriever.local_stack.stack import FAST_POLLING, LocalStack, StackOptions


def _pairs(values: list[str], what: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        name, sep, setting = value.partition("=")
        if not sep:
            raise SystemExit(f"python -m polyv_retriever.local_stack: {what} {value!r} is not NAME=VALUE")
        pairs[name] = setting
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m polyv_retriever.local_stack", description=__doc__)
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="template parameter override (default: fast polling for a demo)",
    )
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="extra environment for the functions"
    )
    parser.add_argument("--function-timeout", action="append", default=[], metavar="LOGICAL_ID=SECONDS")
    parser.add_argument("--emulator-time-scale", type=float, default=60.0)
    parser.add_argument("--exit-on-stdin-close", action="store_true")
    args = parser.parse_args()

    options = StackOptions(
        parameters={**FAST_POLLING, **_pairs(args.param, "--param")},
        function_environment=_pairs(args.env, "--env"),
        function_timeouts={
            k: float(v) for k, v in _pairs(args.function_timeout, "--function-timeout").items()
        },
        emulator_time_scale=args.emulator_time_scale,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.exit_on_stdin_close:

        def stop_when_stdin_closes() -> None:
            sys.stdin.read()
            stop.set()

        threading.Thread(target=stop_when_stdin_closes, daemon=True).start()
    with LocalStack(options) as stack:
        print(json.dumps(stack.describe()), flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
