"""polyv-retriever: query and create Polyv retrieval tasks, copy one file, run the whole pipeline.

Every failure ends in one line on stderr naming the cause and what to do (one JSON object
{"error", "message", "exitCode"} with --json), never a traceback, and a distinct exit code:
1 failed, 2 usage or invalid input, 3 credentials/permissions, 4 transient (worth retrying later).
Progress is drawn only on a terminal; --quiet leaves only results and errors; NO_COLOR is honoured.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

from polyv_retriever import errors, observability
from polyv_retriever.aws_errors import AWS_CREDENTIALS_HINT
from polyv_retriever.cli import deployed
from polyv_retriever.polyv import credentials
from polyv_retriever.polyv.client import PolyvClient
from polyv_retriever.polyv.models import validate_expire_days, validate_task_id, validate_vids

EXIT_FAILED, EXIT_USAGE, EXIT_AUTH, EXIT_TRANSIENT = 1, 2, 3, 4
#: An AWS error code that says the input names something that is not there: fix the input, not retry.
AWS_MISSING_CODES = frozenset(
    {"NoSuchBucket", "InvalidBucketName", "ParameterNotFound", "StateMachineDoesNotExist"}
)


class UsageError(Exception):
    """The command line itself is wrong (argparse's complaint)."""


def _aws_cause(error: BaseException) -> BotoCoreError | ClientError | None:
    """The AWS SDK error a named error was translated from (kept as its context), if any."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, BotoCoreError | ClientError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _aws_exit_code(cause: BotoCoreError | ClientError) -> int | None:
    if isinstance(cause, NoCredentialsError | PartialCredentialsError):
        return EXIT_AUTH
    if isinstance(cause, NoRegionError):
        return EXIT_USAGE
    if credentials.aws_access_refused(cause):
        return EXIT_AUTH
    code = cause.response.get("Error", {}).get("Code") if isinstance(cause, ClientError) else None
    if code in AWS_MISSING_CODES:
        return EXIT_USAGE
    return None


def exit_code_for(error: Exception) -> int:
    """The documented exit code. A retryable name (StorageError) translated from an AWS answer that no
    retry can change (no such bucket, access denied) takes that answer's code."""
    if isinstance(error, UsageError | errors.InvalidInput | errors.DownloadNotAllowed):
        return EXIT_USAGE
    if isinstance(error, errors.PolyvAuthError | errors.CredentialsError):
        return EXIT_AUTH
    cause = _aws_cause(error)
    if cause is not None:
        code = _aws_exit_code(cause)
        if code is not None:
            return code
        if isinstance(error, BotoCoreError | ClientError):  # not translated: no answer or a 5xx is transient
            return EXIT_TRANSIENT if _aws_transient(error) else EXIT_FAILED
    if isinstance(error, errors.RetrieverError) and error.retryable:
        return EXIT_TRANSIENT
    return EXIT_FAILED


def _aws_transient(error: BotoCoreError | ClientError) -> bool:
    if isinstance(error, ClientError):
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return status >= 500 or status == 429
    return True


def describe(error: Exception) -> tuple[str, str]:
    """(name, the one line a user reads: what happened, then what to do)."""
    if isinstance(error, errors.RetrieverError):
        return error.name, error.describe()
    if isinstance(error, UsageError):
        return "UsageError", f"{error} (see --help)"
    if isinstance(error, BotoCoreError | ClientError):
        if isinstance(error, ClientError):
            detail = error.response.get("Error", {})
            text = f"AWS refused: {detail.get('Code')}: {detail.get('Message')}"
        else:  # the SDK's own text can hold an endpoint URL; the class names the cause
            text = f"AWS request failed: {type(error).__name__}"
        if isinstance(error, NoCredentialsError | PartialCredentialsError):
            text += f" ({AWS_CREDENTIALS_HINT})"
        elif isinstance(error, NoRegionError):
            text += " (set AWS_DEFAULT_REGION, or a region in your AWS profile)"
        return "AwsError", text
    # A bug of ours: say so in one line rather than a traceback a user cannot act on.
    return "InternalError", (
        f"unexpected {type(error).__name__} (please report it; POLYV_RETRIEVER_DEBUG=1 shows the traceback)"
    )


def report(error: Exception, *, as_json: bool) -> int:
    code = exit_code_for(error)
    name, text = describe(error)
    if as_json:
        print(
            json.dumps({"error": name, "message": text, "exitCode": code}, ensure_ascii=False),
            file=sys.stderr,
        )
    else:
        print(f"polyv-retriever: {name}: {text}", file=sys.stderr)
    return code


def _client(args: argparse.Namespace) -> PolyvClient:
    return PolyvClient(credentials.resolve(args.credentials_parameter), base_url=args.api_base_url)


def _millis(value: int | None) -> str:
    if value is None:
        return "-"
    return datetime.fromtimestamp(value / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def cmd_status(args: argparse.Namespace) -> int:
    task_id = validate_task_id(args.task_id)  # bad input is exit 2 before credentials are looked for
    task = _client(args).get_task(task_id)
    if args.json:
        print(json.dumps(task.public(), ensure_ascii=False))
        return 0
    counts = ", ".join(f"{n} {status}" for status, n in task.counts().items() if n)
    state = "finished" if task.all_terminal else "in progress"
    print(f"task {task.task_id}: {len(task.videos)} videos, {state} ({counts or 'none'})")
    width = max((len(v.vid) for v in task.videos), default=3)
    print(f"{'vid':<{width}}  {'status':<8}  {'created (UTC)':<19}  ready (UTC)")
    for video in task.videos:
        print(
            f"{video.vid:<{width}}  {video.status.value:<8}  {_millis(video.create_time_ms):<19}  "
            f"{_millis(video.success_time_ms)}"
        )
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    vids, days = validate_vids(args.vids), validate_expire_days(args.expire_days)
    task_id = _client(args).create_task(vids, days)
    print(json.dumps({"taskId": task_id}) if args.json else task_id)
    return 0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # Reported by main() like every other error of this CLI (one line, or JSON with --json).
        raise UsageError(message)


class _Version(argparse.Action):
    """argparse's ``version`` action, with the version looked up only when asked for: importlib.metadata
    and its scan of the installed distributions cost every command ~20 ms of CPU otherwise."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from importlib import metadata

        print(f"{parser.prog} {metadata.version('polyv-retriever')}")  # on stdout, as argparse's own
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="polyv-retriever", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    common = _Parser(add_help=False)
    common.add_argument(
        "--credentials-parameter",
        help="SSM SecureString with {appId, appSecret} (default: env POLYV_CREDENTIALS_PARAMETER);\n"
        "POLYV_APP_ID + POLYV_APP_SECRET in the environment take precedence",
    )
    common.add_argument(
        "--api-base-url", help="Polyv API base (default: env POLYV_API_BASE_URL or https://api.polyv.net)"
    )
    common.add_argument(
        "--json", action="store_true", help="machine-readable output (errors: JSON on stderr)"
    )
    common.add_argument("--quiet", "-q", action="store_true", help="only results and errors: no progress")
    parser.add_argument("--version", action=_Version, help="show the version and exit")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    status = commands.add_parser("status", parents=[common], help="show a retrieval task's videos")
    status.add_argument("task_id", metavar="TASK_ID")
    status.set_defaults(run=cmd_status)

    create = commands.add_parser("create", parents=[common], help="create a retrieval task, print its taskId")
    create.add_argument("vids", metavar="VID", nargs="+")
    create.add_argument("--expire-days", type=int, required=True, help="1-7: how long the thawed files stay")
    create.set_defaults(run=cmd_create)

    copy = commands.add_parser("copy", help="copy one download URL into S3 (the transfer engine alone)")
    copy.add_argument("url", metavar="URL")
    copy.add_argument("destination", metavar="s3://BUCKET/KEY")
    copy.add_argument("--vid", help="record this Polyv vid in the object's metadata")
    copy.add_argument("--json", action="store_true", help="print the result as one line of JSON")
    copy.add_argument(
        "--keep-on-interrupt",
        action="store_true",
        help="on Ctrl-C keep the multipart upload (and its journal) so that running again resumes it;\n"
        "without it, Ctrl-C aborts the upload and leaves nothing in S3",
    )
    copy.add_argument("--quiet", "-q", action="store_true", help="no progress bar, no summary line")
    copy.set_defaults(run=_lazy("copy", "cmd_copy"))

    run = commands.add_parser(
        "run",
        parents=[common],
        help="the whole pipeline on the local stack (no AWS needed)",
        description="Without credentials (or with --demo): the Polyv emulator and a demo task. With "
        "POLYV_APP_ID/POLYV_APP_SECRET or --credentials-parameter: the real Polyv, --task-id or VID... "
        "--expire-days N.",
    )
    run.add_argument("vids", metavar="VID", nargs="*")
    run.add_argument("--task-id", help="an existing Polyv retrieval task")
    run.add_argument("--expire-days", type=int, help="with VIDs: 1-7")
    run.add_argument("--demo", action="store_true", help="use the emulator even if credentials are set")
    run.add_argument("--verbose", action="store_true", help="show the functions' logs")
    run.add_argument(
        "--timeout", type=float, default=3 * 86400, help="give up watching after this many seconds"
    )
    run.set_defaults(run=_lazy("run", "cmd_run"))

    deployed.add_parsers(commands, _Parser)  # submit, get, list, cancel: the deployed stack's API
    return parser


def _lazy(module: str, function: str) -> Callable[[argparse.Namespace], int]:
    """Import a command's module only when it runs: `run` pulls in the local stack (moto)."""

    def command(args: argparse.Namespace) -> int:
        import importlib

        handler: Callable[[argparse.Namespace], int] = getattr(
            importlib.import_module(f"polyv_retriever.cli.{module}"), function
        )
        return handler(args)

    return command


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv  # known before parsing, so that a usage error is JSON too
    try:
        args = build_parser().parse_args(argv)
        run: Callable[[argparse.Namespace], int] = args.run
        with observability.cli_output(
            quiet=bool(getattr(args, "quiet", False) or getattr(args, "json", False))
        ):
            return run(args)
    except KeyboardInterrupt:
        print("polyv-retriever: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the one place where every failure becomes the documented line
        if os.environ.get("POLYV_RETRIEVER_DEBUG") and not isinstance(exc, UsageError):
            raise  # a developer asked for the traceback
        return report(exc, as_json=as_json)


if __name__ == "__main__":
    sys.exit(main())
