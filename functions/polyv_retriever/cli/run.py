"""``polyv-retriever run``: the whole pipeline on the local stack, watched live, checked at the end.

Demo (no credentials): the Polyv emulator gets a task of several videos (one that Polyv fails, one that
takes longer); the retrieval is requested through the local API; the real state machine and handlers do the
rest. Real: with Polyv credentials (POLYV_APP_ID/POLYV_APP_SECRET, or the SSM parameter named by
``--credentials-parameter``/POLYV_CREDENTIALS_PARAMETER), ``--task-id`` or ``VID... --expire-days N`` talk to
that Polyv (POLYV_API_BASE_URL), still with the local stack standing in for AWS; Polyv is asked first (the
task, or creating it), so wrong credentials fail as they do for ``status``.

Exit 0 only if every object in S3 is verified: byte for byte against what the emulator served (demo), or by
size and S3's full-object CRC (real Polyv), and the manifest accounts for every video.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import urllib3

from polyv_retriever import errors
from polyv_retriever.cli.deployed import follow
from polyv_retriever.cli.view import print_summary
from polyv_retriever.polyv import credentials
from polyv_retriever.polyv.client import PolyvClient
from polyv_retriever.transfer.s3_multipart import S3Destination
from polyv_retriever.vocabulary import LANDED, ExecutionStatus, VideoOutcome

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from polyv_retriever.local_stack.stack import LocalStack

MiB = 1024 * 1024


@dataclass(frozen=True)
class DemoVideo:
    vid: str
    size: int
    outcome: str
    ready_after: float  # Polyv seconds; the demo's emulator runs 60 Polyv seconds per real second


DEMO_VIDEOS = (
    DemoVideo("lecture-01", 6 * MiB + 4321, "SUCCESS", 120),
    DemoVideo("lecture-02", 40 * MiB, "SUCCESS", 180),
    DemoVideo("keynote-4k", 96 * MiB + 1, "SUCCESS", 300),
    DemoVideo("interview-raw", 3 * MiB, "FAIL", 240),
    DemoVideo("archive-2019", 24 * MiB, "SUCCESS", 720),  # the one that takes longer
)

#: The functions' environment for `run` without --verbose: errors only, no EMF records (see observability).
QUIET_FUNCTIONS = {"POWERTOOLS_LOG_LEVEL": "ERROR", "POLYV_RETRIEVER_EMF": "off"}


class LocalApi:
    """The retrievals API on the local stack, spoken over HTTP like any client would."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = urllib3.PoolManager()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        response = self.http.request(
            method,
            self.base_url + path,
            body=json.dumps(body) if body is not None else None,
            headers={"Content-Type": "application/json"},
        )
        return response.status, json.loads(response.data or b"{}")


def _real_credentials(args: argparse.Namespace) -> credentials.Credentials | None:
    """Real Polyv credentials as `status` finds them (environment, else the SSM parameter), or None: demo."""
    if args.demo:
        return None
    name = args.credentials_parameter or os.environ.get("POLYV_CREDENTIALS_PARAMETER")
    return credentials.resolve(name) if name else credentials.from_env()


def cmd_run(args: argparse.Namespace) -> int:
    from polyv_retriever.local_stack.stack import FAST_POLLING, LocalStack, StackOptions

    real = _real_credentials(args)
    if real is None and (args.task_id or args.vids):
        raise errors.InvalidInput(
            "--task-id and VIDs need real Polyv credentials: set POLYV_APP_ID and POLYV_APP_SECRET"
        )
    if real is not None and not (args.task_id or args.vids):
        raise errors.InvalidInput(
            "with real credentials, name the work: --task-id TASK_ID or VID... --expire-days N"
        )
    if args.vids and args.expire_days is None:
        raise errors.InvalidInput("VIDs need --expire-days (1-7)")
    say = _Say(quiet=args.quiet or args.json)
    if not args.verbose:
        # The emulation's own warnings (moto's Step Functions interpreter's, when the stack stops under a
        # running execution) would reach stderr through logging's last-resort handler, which acts only
        # where no handler is found: a null one on the root keeps them for --verbose.
        root = logging.getLogger()
        if not any(isinstance(h, logging.NullHandler) for h in root.handlers):  # once per process
            root.addHandler(logging.NullHandler())
    # Real Polyv is asked first, outside the local stack, exactly as `status`/`create` ask it: wrong
    # credentials or a task Polyv does not know fail here with their own error and hint.
    task_id = _real_task(real, args) if real is not None else None

    # A demo's waits are short; a real task keeps the template's real waits. The download allow-list is the
    # template's parameter, overridden from POLYV_DOWNLOAD_ALLOW as a deployment would override it.
    parameters = dict(FAST_POLLING) if real is None else {}
    if real is not None and os.environ.get("POLYV_DOWNLOAD_ALLOW"):
        parameters["DownloadAllowList"] = os.environ["POLYV_DOWNLOAD_ALLOW"]
    options = StackOptions(
        parameters=parameters,
        polyv_credentials=real,
        polyv_api_base_url=args.api_base_url,
        # The functions' own logs and metrics (CloudWatch's, in AWS) would bury the progress and break
        # --json's one-object promise: --verbose shows them (on stderr), otherwise only their errors.
        function_environment={} if args.verbose else QUIET_FUNCTIONS,
    )
    say("Starting the local stack (moto: S3, SSM, Step Functions; the real handlers; the API front)...")
    with LocalStack(options) as stack:
        api = LocalApi(stack.describe()["apiUrl"])
        status, retrieval = api.call("POST", "/retrievals", {"taskId": task_id or _demo_task(stack, say)})
        if status >= 400:
            raise errors.UnexpectedResponse(
                f"the local API refused the retrieval ({status}): {retrieval.get('error')}: "
                f"{retrieval.get('message')}"
            )
        retrieval_id = retrieval["retrievalId"]
        say(f"POST /retrievals -> {status}; retrieval {retrieval_id}; state machine polling Polyv...")

        final = _watch(api, retrieval_id, args.timeout, show=not say.quiet)
        problems = _verify(stack, final, demo=real is None)
    if args.json:
        print(json.dumps({"ok": not problems, "problems": problems, "retrieval": final}, ensure_ascii=False))
        return 1 if problems else 0
    if not args.quiet:
        print_summary(final)
    for problem in problems:
        print(f"  ✗ {problem}")
    if problems:
        print(f"FAILED: {len(problems)} problem(s)")
        return 1
    print("OK: every object in S3 verified; every video accounted for in the manifest")
    return 0


@dataclass(frozen=True)
class _Say:
    """Informational lines: on stdout, unless --quiet or --json."""

    quiet: bool

    def __call__(self, line: str) -> None:
        if not self.quiet:
            print(line, flush=True)


def _real_task(real: credentials.Credentials, args: argparse.Namespace) -> str:
    client = PolyvClient(real, base_url=args.api_base_url)
    if args.task_id:
        client.get_task(args.task_id)  # a signed query: proves the credentials and that the task exists
        return str(args.task_id)
    return client.create_task(args.vids, args.expire_days)


def _demo_task(stack: LocalStack, say: _Say) -> str:
    emulator = stack.emulator
    assert emulator is not None
    say(f"Polyv emulator on {emulator.base_url}; creating a task of {len(DEMO_VIDEOS)} videos")
    for video in DEMO_VIDEOS:
        emulator.add_video(video.vid, video.size, video.outcome, video.ready_after)
    client = PolyvClient(
        credentials.Credentials(emulator.app_id, emulator.secret), base_url=emulator.base_url
    )
    return client.create_task([v.vid for v in DEMO_VIDEOS], expire_days=1)  # a real, signed create call


def _watch(api: LocalApi, retrieval_id: str, timeout: float, *, show: bool) -> dict[str, Any]:
    def fetch() -> dict[str, Any]:
        status, retrieval = api.call("GET", f"/retrievals/{retrieval_id}")
        if status != 200:
            raise errors.StorageError(f"GET /retrievals/{retrieval_id} answered {status}: {retrieval}")
        return retrieval

    # The local stack ends with this command: nothing goes on after it, unlike a deployed retrieval.
    hint = "the local stack stopped with it; run again with a longer --timeout"
    return follow(fetch, timeout, interval=0.5, quiet=not show, timeout_hint=hint)


def _verify(stack: LocalStack, retrieval: dict[str, Any], *, demo: bool) -> list[str]:
    import boto3

    s3: S3Client = boto3.client("s3")
    problems = []
    if retrieval["status"] != ExecutionStatus.SUCCEEDED:
        error = retrieval.get("error") or {}
        return [f"the execution ended {retrieval['status']}: {error.get('name')}: {error.get('cause')}"]
    manifest_uri = retrieval["result"]["manifest"]
    bucket, _, key = manifest_uri.removeprefix("s3://").partition("/")
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    outcomes = {v["vid"]: v for v in manifest["videos"]}
    polyv_view = {v["vid"]: v["status"] for v in (retrieval.get("polyv") or {}).get("videos", [])}
    for vid, polyv_status in polyv_view.items():
        entry = outcomes.get(vid)
        if entry is None:
            problems.append(f"{vid}: missing from the manifest")
        elif polyv_status == "FAIL" and entry["outcome"] != VideoOutcome.POLYV_FAIL:
            problems.append(f"{vid}: Polyv failed it but the manifest says {entry['outcome']}")
        elif polyv_status == "SUCCESS" and entry["outcome"] not in LANDED:
            problems.append(f"{vid}: {entry['outcome']}: {entry.get('cause')}")
        elif polyv_status == "SUCCESS":
            problems.extend(_verify_object(s3, bucket, entry, stack if demo else None))
    if s3.list_multipart_uploads(Bucket=bucket).get("Uploads"):
        problems.append("a multipart upload was left open")
    return problems


def _verify_object(s3: S3Client, bucket: str, entry: dict[str, Any], stack: LocalStack | None) -> list[str]:
    head = s3.head_object(Bucket=bucket, Key=entry["key"], ChecksumMode="ENABLED")
    if head["ContentLength"] != entry["size"]:
        return [f"{entry['vid']}: {head['ContentLength']} bytes in S3, manifest says {entry['size']}"]
    if not S3Destination.checksum_matches(head.get("ChecksumCRC32"), str(entry.get("s3Checksum"))):
        found, recorded = head.get("ChecksumCRC32"), entry.get("s3Checksum")
        return [f"{entry['vid']}: S3's CRC32 {found} is not the manifest's {recorded}"]
    if stack is not None and stack.emulator is not None:
        expected = stack.emulator.video(entry["vid"]).content().sha256()
        digest = hashlib.sha256()
        for chunk in s3.get_object(Bucket=bucket, Key=entry["key"])["Body"].iter_chunks(MiB):
            digest.update(chunk)
        if digest.hexdigest() != expected:
            return [f"{entry['vid']}: the bytes in S3 differ from what Polyv served"]
    return []
