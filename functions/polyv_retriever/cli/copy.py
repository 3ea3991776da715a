"""``polyv-retriever copy URL s3://BUCKET/KEY``: the transfer engine alone, as the Lambda runs it.

The same allow-list (POLYV_DOWNLOAD_ALLOW) and the same S3 endpoint rules (AWS_ENDPOINT_URL) apply. A URL
given on the command line cannot be refreshed: if it expires mid-copy, the copy fails cleanly (nothing is
left in S3) and can be run again with a fresh URL from ``polyv-retriever status``.

Ctrl-C stops the workers after the parts in flight, then aborts the multipart upload and deletes its journal:
nothing is left in the bucket, and the exit code is 130. With ``--keep-on-interrupt`` the upload and its
journal are kept instead, and running the same command again (a fresh URL of the same file will do) resumes
it. The signal only sets a flag that the engine reads between steps, so that it never lands in the middle
of the S3 call that creates or aborts the upload (where it would leave one behind, unknown).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

import urllib3

from polyv_retriever.cli.view import transfer_progress
from polyv_retriever.errors import InvalidInput, TransferInterrupted
from polyv_retriever.transfer.allowlist import DownloadAllowList
from polyv_retriever.transfer.engine import TransferEngine, TransferResult, TransferSettings
from polyv_retriever.transfer.s3_multipart import S3Destination, s3_client
from polyv_retriever.transfer.source import HttpSource
from polyv_retriever.vocabulary import TransferStatus

_S3_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<key>.+)$")
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command stopped by Ctrl-C


@contextlib.contextmanager
def _ctrl_c_sets(flag: threading.Event, keep: bool) -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        if not flag.is_set():
            then = "kept for resuming" if keep else "aborted"
            print(
                f"polyv-retriever: stopping: the parts in flight finish, then the upload is {then}",
                file=sys.stderr,
            )
        flag.set()  # again and again: the clean-up is what the first press asked for

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def cmd_copy(args: argparse.Namespace) -> int:
    match = _S3_URI.match(args.destination)
    if not match:
        raise InvalidInput(f"destination {args.destination!r} is not s3://BUCKET/KEY")
    settings = TransferSettings.from_env()
    source = HttpSource(lambda: str(args.url), DownloadAllowList.from_env(), urllib3.PoolManager(maxsize=64))
    dest = S3Destination(s3_client(), match["bucket"], match["key"], settings.checksum_type)
    metadata = {"polyv-vid": args.vid} if args.vid else {}
    interrupted = threading.Event()

    # The handler stays until the outcome is printed: a late Ctrl-C must not turn a copy that finished into
    # a traceback or an "interrupted" (it is a no-op once the engine is done).
    with _ctrl_c_sets(interrupted, args.keep_on_interrupt):
        try:
            with transfer_progress(match["key"].rsplit("/", 1)[-1], enabled=not args.quiet) as advance:
                result = TransferEngine(settings, on_progress=advance).copy(
                    source, dest, metadata=metadata, cancel=interrupted, keep_on_cancel=args.keep_on_interrupt
                )
        except TransferInterrupted as exc:
            print(
                f"polyv-retriever: interrupted: {exc}; the upload was aborted, nothing is left in S3",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
        return _report(args, dest, result)


def _report(args: argparse.Namespace, dest: S3Destination, result: TransferResult) -> int:
    # CONTINUE from the CLI is only ever an interruption the user asked to keep
    if result.status == TransferStatus.CONTINUE and result.continuation is not None:
        kept = result.continuation
        print(
            f"polyv-retriever: interrupted: kept multipart upload {kept.upload_id} of {dest.uri} and its "
            f"journal ({result.bytes_transferred:,} bytes moved in this run); to resume, run the same "
            "command again (a fresh URL of the same file will do); to give it up, run it again without "
            "--keep-on-interrupt and press Ctrl-C (that aborts the upload and deletes the journal)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if args.json:
        print(json.dumps(result.to_dict()))
    elif not args.quiet:
        rate = result.bytes_transferred / result.seconds / 1e6 if result.seconds else 0.0
        verb = "already there, intact:" if result.status == TransferStatus.SKIPPED else "copied"
        print(
            f"{verb} {result.size:,} bytes to {result.uri} in {result.seconds:.1f} s ({rate:,.1f} MB/s, "
            f"{result.parts} parts, {'ranged' if result.ranged else 'single stream'}); CRC32 {result.crc32}"
        )
    return 0
