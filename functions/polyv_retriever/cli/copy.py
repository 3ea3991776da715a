"""``polyv-retriever copy URL s3://BUCKET/KEY``: the transfer engine alone, as the Lambda runs it.

The same allow-list (POLYV_DOWNLOAD_ALLOW) and the same S3 endpoint rules (AWS_ENDPOINT_URL) apply. A URL
given on the command line cannot be refreshed: if it expires mid-copy, the copy fails cleanly (nothing is
left in S3) and can be run again with a fresh URL from ``polyv-retriever status``.
"""

from __future__ import annotations

import argparse
import json
import re

import urllib3

from polyv_retriever.cli.view import transfer_progress
from polyv_retriever.errors import InvalidInput
from polyv_retriever.transfer.allowlist import DownloadAllowList
from polyv_retriever.transfer.engine import TransferEngine, TransferSettings
from polyv_retriever.transfer.s3_multipart import S3Destination, s3_client
from polyv_retriever.transfer.source import HttpSource

_S3_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<key>.+)$")


def cmd_copy(args: argparse.Namespace) -> int:
    match = _S3_URI.match(args.destination)
    if not match:
        raise InvalidInput(f"destination {args.destination!r} is not s3://BUCKET/KEY")
    settings = TransferSettings.from_env()
    source = HttpSource(lambda: str(args.url), DownloadAllowList.from_env(), urllib3.PoolManager(maxsize=64))
    dest = S3Destination(s3_client(), match["bucket"], match["key"], settings.checksum_type)
    metadata = {"polyv-vid": args.vid} if args.vid else {}

    with transfer_progress(enabled=not args.quiet) as bar:
        task = bar.add_task(match["key"].rsplit("/", 1)[-1], total=None)

        def advance(moved: int, total: int) -> None:
            bar.update(task, advance=moved, total=total)

        result = TransferEngine(settings, on_progress=advance).copy(source, dest, metadata=metadata)

    if args.json:
        print(json.dumps(result.to_dict()))
    elif not args.quiet:
        rate = result.bytes_transferred / result.seconds / 1e6 if result.seconds else 0.0
        verb = "already there, intact:" if result.status == "SKIPPED" else "copied"
        print(
            f"{verb} {result.size:,} bytes to {result.uri} in {result.seconds:.1f} s ({rate:,.1f} MB/s, "
            f"{result.parts} parts, {'ranged' if result.ranged else 'single stream'}); CRC32 {result.crc32}"
        )
    return 0
