"""``polyv-retriever``: query and create Polyv retrieval tasks, copy one file, run the whole pipeline.

Every failure ends in one line on stderr naming the cause and a distinct exit code:
1 failed, 2 usage or invalid input, 3 credentials/permissions, 4 transient (worth retrying later).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from polyv_retriever import errors
from polyv_retriever.polyv import credentials
from polyv_retriever.polyv.client import PolyvClient

EXIT_FAILED, EXIT_USAGE, EXIT_AUTH, EXIT_TRANSIENT = 1, 2, 3, 4


def exit_code_for(error: errors.RetrieverError) -> int:
    if isinstance(error, errors.InvalidInput | errors.DownloadNotAllowed):
        return EXIT_USAGE
    if isinstance(error, errors.PolyvAuthError):
        return EXIT_AUTH
    if error.retryable:
        return EXIT_TRANSIENT
    return EXIT_FAILED


def _client(args: argparse.Namespace) -> PolyvClient:
    return PolyvClient(credentials.resolve(args.credentials_parameter), base_url=args.api_base_url)


def _millis(value: int | None) -> str:
    if value is None:
        return "-"
    return datetime.fromtimestamp(value / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def cmd_status(args: argparse.Namespace) -> int:
    task = _client(args).get_task(args.task_id)
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
    task_id = _client(args).create_task(args.vids, args.expire_days)
    print(json.dumps({"taskId": task_id}) if args.json else task_id)
    return 0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line, the same shape as every other error of this CLI.
        print(f"polyv-retriever: {message} (see --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


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
    common.add_argument("--json", action="store_true", help="machine-readable output")
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
    copy.set_defaults(run=_lazy("copy", "cmd_copy"))

    run = commands.add_parser(
        "run",
        parents=[common],
        help="the whole pipeline on the local stack (no AWS needed)",
        description="Without credentials (or with --demo): the Polyv emulator and a demo task. With "
        "POLYV_APP_ID/POLYV_APP_SECRET: the real Polyv, --task-id or VID... --expire-days N.",
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
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except errors.RetrieverError as exc:
        print(f"polyv-retriever: {exc.name}: {exc.describe()}", file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        print("polyv-retriever: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
