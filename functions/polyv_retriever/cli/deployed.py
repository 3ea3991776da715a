"""``polyv-retriever submit | get | list | cancel``: talk to the deployed stack's API, as any client would.

Requests are SigV4-signed for ``execute-api`` with botocore's signer, from the usual AWS credential chain
(environment, ~/.aws profiles and SSO, instance or container roles). The API's base URL comes from
``--api-url``, else ``POLYV_RETRIEVER_API_URL``, else the ``ApiUrl`` output of the CloudFormation stack
(``--stack-name``, default: the ``stack_name`` in samconfig.toml, else ``polyv-retriever``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from polyv_retriever import errors
from polyv_retriever.vocabulary import ExecutionStatus, Outcome, StorageClass

DEFAULT_STACK = "polyv-retriever"
_EXECUTE_API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?$")
#: Statuses after which a retrieval no longer changes.
FINISHED = tuple(s for s in ExecutionStatus if s.terminal)
#: The retrieval state machine's TimeoutSeconds: an attempt cannot run longer (a unit test keeps them equal).
EXECUTION_TIMEOUT_SECONDS = 7 * 86400


# --- the client -------------------------------------------------------------------------------------------


class DeployedApi:
    """The retrievals API over HTTPS, every request signed; answers are JSON, refusals become named errors."""

    def __init__(self, base_url: str, region: str | None = None) -> None:
        import boto3
        import urllib3

        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        local = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost")  # the local stack
        if not parts.hostname or not (parts.scheme == "https" or local):
            raise errors.InvalidInput(
                f"the API URL {self.base_url!r} is not an https:// URL with a host",
                hint="pass the stack's ApiUrl output, e.g. https://ID.execute-api.REGION.amazonaws.com/v1",
            )
        session = boto3.Session()
        host = parts.hostname
        match = _EXECUTE_API_HOST.match(host)
        self.region = region or (match["region"] if match else None) or session.region_name or "us-east-1"
        credentials = session.get_credentials()
        if credentials is None:
            raise ApiAccessDenied(
                "no AWS credentials found (environment, ~/.aws profile or SSO, or an instance role)",
                hint="configure credentials, e.g. `aws configure` or AWS_PROFILE",
            )
        self._credentials = credentials
        self._http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=10, read=60))

    def signed_headers(
        self, method: str, url: str, body: bytes | None, extra: dict[str, str] | None = None
    ) -> dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        headers = {**_content_type(body), **(extra or {})}
        request = AWSRequest(method=method, url=url, data=body or b"", headers=headers)
        SigV4Auth(self._credentials.get_frozen_credentials(), "execute-api", self.region).add_auth(request)
        return dict(request.headers.items())

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        query: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        import urllib3

        url = self.base_url + path
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        data = json.dumps(body).encode() if body is not None else None
        try:
            response = self._http.request(
                method, url, body=data, headers=self.signed_headers(method, url, data, headers)
            )
        except urllib3.exceptions.HTTPError as exc:
            raise ApiUnavailable(
                f"{method} {path}: cannot reach {self.base_url} ({type(exc).__name__})"
            ) from None
        try:
            answer = json.loads(response.data or b"{}")
        except ValueError:
            answer = {"message": response.data[:200].decode("utf-8", "replace")}
        if response.status >= 400:
            raise _refusal(method, path, response.status, answer)
        return response.status, answer if isinstance(answer, dict) else {"value": answer}


def _content_type(body: bytes | None) -> dict[str, str]:
    return {"Content-Type": "application/json"} if body is not None else {}


class ApiAccessDenied(errors.CredentialsError):
    """The API refused the caller: no credentials, a bad signature, or no permission to invoke it."""

    hint = "check the AWS credentials and that they may call execute-api:Invoke on this API"


class ApiUnavailable(errors.RetrieverError):
    """The API could not be reached or answered 5xx/429; worth trying again later."""

    retryable = True
    hint = "try again later; the stack's dashboard and alarms show what failed"


def _refusal(method: str, path: str, status: int, answer: dict[str, Any]) -> errors.RetrieverError:
    message = str(answer.get("message") or answer.get("Message") or answer)
    what = f"{method} {path} answered {status}: {message}"
    if status in (401, 403):
        return ApiAccessDenied(what)
    if status == 404:
        return errors.RetrievalNotFound(what)
    if status == 429 or status >= 500:
        return ApiUnavailable(what)
    return errors.InvalidInput(what, hint="")


# --- where the API is ---------------------------------------------------------------------------------------


def samconfig_setting(name: str, start: Path | None = None) -> str | None:
    """``name`` (``stack_name``, ``region``) from the nearest samconfig.toml (this directory or a parent), as
    ``sam deploy`` reads it: its deploy section first, then the global one."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        config = directory / "samconfig.toml"
        if config.is_file():
            data = tomllib.loads(config.read_text(encoding="utf-8"))
            for section in ("deploy", "global"):
                value = data.get("default", {}).get(section, {}).get("parameters", {}).get(name)
                if value:
                    return str(value)
            return None
    return None


def samconfig_stack_name(start: Path | None = None) -> str | None:
    return samconfig_setting("stack_name", start)


def resolve_api_url(args: argparse.Namespace, env: dict[str, str] | None = None) -> str:
    env = dict(os.environ) if env is None else env
    if args.api_url:
        return str(args.api_url)
    if env.get("POLYV_RETRIEVER_API_URL"):
        return env["POLYV_RETRIEVER_API_URL"]
    # The stack and its region as `make deploy` deployed them (samconfig.toml), unless named.
    stack = args.stack_name or samconfig_stack_name() or DEFAULT_STACK
    region = args.region or (None if args.stack_name else samconfig_setting("region"))
    import boto3
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
    )

    from polyv_retriever.aws_errors import AWS_CREDENTIALS_HINT
    from polyv_retriever.polyv import credentials

    where = "pass --api-url, set POLYV_RETRIEVER_API_URL, or name the deployed stack with --stack-name"
    try:
        described = boto3.client("cloudformation", region_name=region).describe_stacks(StackName=stack)
    except ClientError as exc:
        message = f"cannot find the API: stack {stack!r}: {exc.response.get('Error', {}).get('Message')}"
        if credentials.aws_access_refused(exc):
            raise ApiAccessDenied(
                message, hint="these AWS credentials need cloudformation:DescribeStacks"
            ) from None
        raise errors.InvalidInput(message, hint=where) from None
    except (NoCredentialsError, PartialCredentialsError):
        raise ApiAccessDenied(
            f"cannot find the API: stack {stack!r}: no AWS credentials found", hint=AWS_CREDENTIALS_HINT
        ) from None
    except NoRegionError:
        raise errors.InvalidInput(
            f"cannot find the API: stack {stack!r}: no AWS region",
            hint="pass --region or set AWS_DEFAULT_REGION",
        ) from None
    except BotoCoreError as exc:  # no answer from CloudFormation: worth trying again
        raise ApiUnavailable(f"cannot find the API: stack {stack!r}: {type(exc).__name__}") from None
    for output in described["Stacks"][0].get("Outputs", []):
        if output.get("OutputKey") == "ApiUrl":
            return str(output["OutputValue"])
    raise errors.InvalidInput(f"stack {stack!r} has no ApiUrl output: is it a polyv-retriever stack?")


def _api(args: argparse.Namespace) -> DeployedApi:
    return DeployedApi(resolve_api_url(args), region=args.region)


# --- the commands -----------------------------------------------------------------------------------------


def cmd_submit(args: argparse.Namespace) -> int:
    if bool(args.task_id) == bool(args.vids):
        raise errors.InvalidInput("name the work: --task-id TASK_ID, or VID... with --expire-days N")
    if args.vids and args.expire_days is None:
        raise errors.InvalidInput("VIDs need --expire-days (1-7)")
    if args.task_id and args.expire_days is not None:
        raise errors.InvalidInput("--expire-days goes with VIDs, not with --task-id")
    if (args.rerun or args.retry_failed) and not args.task_id:
        raise errors.InvalidInput("--rerun and --retry-failed go with --task-id")
    if args.rerun and args.retry_failed:
        raise errors.InvalidInput("--rerun runs every video again, --retry-failed only the failed: not both")
    if args.idempotency_key is not None and not args.vids:
        raise errors.InvalidInput("--idempotency-key goes with VIDs (a request that creates a Polyv task)")
    body: dict[str, Any] = (
        {"taskId": args.task_id} if args.task_id else {"vids": args.vids, "expireDays": args.expire_days}
    )
    # The API validates the values (and names what is wrong); the CLI only passes what was given.
    for field, value in (
        ("prefix", args.prefix),
        ("storageClass", args.storage_class),
        ("rerun", args.rerun or None),
        ("retryFailed", args.retry_failed or None),
    ):
        if value is not None:
            body[field] = value
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else None
    status, answer = _api(args).call("POST", "/retrievals", body, headers=headers)
    if args.json:
        print(json.dumps(answer, ensure_ascii=False))
        return 0
    for retrieval in answer.get("retrievals", [answer]):
        verb = "started" if status == 202 else "already exists"
        where = retrieval["destination"]
        print(
            f"retrieval {retrieval['retrievalId']} {verb}: {retrieval['status']} -> {where} "
            f"(attempt {retrieval.get('attempt', 1)})"
        )
    return 0


def split_attempt(retrieval_id: str) -> tuple[str, int | None]:
    """``TASK`` or an attempt's execution name ``TASK.N`` (what the notices and the console show) ->
    (the retrieval id the API knows, the attempt asked for or None)."""
    from polyv_retriever.attempts import parse_attempt_name

    parsed = parse_attempt_name(retrieval_id)
    return parsed if parsed is not None else (retrieval_id, None)


def _attempt_entry(retrieval: dict[str, Any], attempt: int) -> dict[str, Any]:
    for entry in retrieval.get("attempts", []):
        if entry.get("attempt") == attempt:
            return dict(entry)
    raise errors.RetrievalNotFound(
        f"retrieval {retrieval['retrievalId']} has no attempt {attempt} (it has {retrieval['attempt']})"
    )


def cmd_get(args: argparse.Namespace) -> int:
    api = _api(args)
    task_id, attempt = split_attempt(args.retrieval_id)

    def fetch() -> dict[str, Any]:
        return api.call("GET", f"/retrievals/{task_id}")[1]

    retrieval = fetch()
    if attempt is not None and attempt != retrieval["attempt"]:
        return _show_earlier_attempt(retrieval, _attempt_entry(retrieval, attempt), args)
    if args.wait:
        retrieval = follow(fetch, args.timeout, interval=args.interval, quiet=args.json)
    if args.json:
        print(json.dumps(retrieval, ensure_ascii=False))
    else:
        from polyv_retriever.cli.view import print_summary

        print_summary(retrieval)
    return finished_exit_code(retrieval) if args.wait else 0


def _show_earlier_attempt(retrieval: dict[str, Any], entry: dict[str, Any], args: argparse.Namespace) -> int:
    """The API details the latest attempt only; an earlier one (always ended) is its status and times."""
    task_id = retrieval["retrievalId"]
    if args.json:
        print(json.dumps({"retrievalId": task_id, **entry}, ensure_ascii=False))
    else:
        print(
            f"retrieval {task_id} attempt {entry['attempt']}: {entry['status']}, "
            f"started {entry['startedAt']}, stopped {entry.get('stoppedAt') or '-'}; "
            f"the latest is attempt {retrieval['attempt']}: {retrieval['status']} "
            f"(polyv-retriever get {task_id})"
        )
    return 0 if not args.wait or entry["status"] == ExecutionStatus.SUCCEEDED else 1


def follow(
    fetch: Callable[[], dict[str, Any]],
    timeout: float,
    *,
    interval: float = 5.0,
    quiet: bool = False,
    timeout_hint: str = "it goes on without us: `polyv-retriever get ID --wait` again later",
) -> dict[str, Any]:
    """Poll a retrieval until it finishes, showing each video's progress live (the view ``run`` uses);
    ``quiet`` shows nothing (``--json`` keeps stdout for the one JSON document)."""
    from contextlib import nullcontext

    from polyv_retriever.cli.view import ProgressView

    deadline = time.monotonic() + timeout
    with nullcontext() if quiet else ProgressView() as view:
        while True:
            retrieval = fetch()
            if view is not None:
                view.update(retrieval)
            if retrieval["status"] in FINISHED:
                return retrieval
            if time.monotonic() > deadline:
                raise errors.PollLimitExceeded(
                    f"retrieval {retrieval['retrievalId']} still {retrieval['status']} after {timeout:.0f} s",
                    hint=timeout_hint,
                )
            time.sleep(interval)


def finished_exit_code(retrieval: dict[str, Any]) -> int:
    """0 only for a retrieval that ended COMPLETE; otherwise one line on stderr saying how it ended."""
    outcome = (retrieval.get("result") or {}).get("outcome")
    if retrieval["status"] == ExecutionStatus.SUCCEEDED and outcome == Outcome.COMPLETE:
        return 0
    error = retrieval.get("error") or (retrieval.get("result") or {}).get("error") or {}
    because = f": {error.get('name')}: {error.get('cause')}" if error.get("name") else ""
    print(
        f"polyv-retriever: retrieval {retrieval['retrievalId']} ended {retrieval['status']}"
        f"{', ' + outcome if outcome else ''}{because}",
        file=sys.stderr,
    )
    return 1


def cmd_list(args: argparse.Namespace) -> int:
    api = _api(args)
    found: list[dict[str, Any]] = []
    token: str | None = None
    while len(found) < args.limit:
        query = {"status": args.status, "limit": min(100, args.limit - len(found)), "nextToken": token}
        page = api.call("GET", "/retrievals", query=query)[1]
        found.extend(page.get("retrievals", []))
        token = page.get("nextToken")
        if not token:
            break
    found = found[: args.limit]
    if args.json:
        print(json.dumps({"retrievals": found}, ensure_ascii=False))
        return 0
    if not found:
        print("no retrievals" + (f" with status {args.status}" if args.status else ""))
        return 0
    print(f"{'retrieval':<32}  {'status':<9}  {'started (UTC)':<19}  {'outcome':<8}  bytes")
    for item in found:
        outcome = (item.get("result") or {}).get("outcome", "-")
        started = str(item.get("startedAt") or "-")[:19].replace("T", " ")
        print(
            f"{item['retrievalId']:<32}  {item['status']:<9}  {started:<19}  {outcome:<8}  "
            f"{int(item.get('bytesCopied') or 0):,}"
        )
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    api = _api(args)
    task_id, attempt = split_attempt(args.retrieval_id)
    if attempt is not None:
        # DELETE stops the latest attempt: refuse rather than stop another one than the one named.
        retrieval = api.call("GET", f"/retrievals/{task_id}")[1]
        if attempt != retrieval["attempt"]:
            entry = _attempt_entry(retrieval, attempt)
            raise errors.RetrievalConflict(
                f"attempt {attempt} of {task_id} already ended ({entry['status']}); the latest is attempt "
                f"{retrieval['attempt']} ({retrieval['status']})",
                hint=f"polyv-retriever cancel {task_id} stops the latest attempt",
            )
    status, answer = api.call("DELETE", f"/retrievals/{task_id}")
    if args.json:
        print(json.dumps(answer, ensure_ascii=False))
    else:
        print(f"retrieval {task_id}: cancel requested ({status}); now {answer.get('status', '?')}")
    return 0


# --- wiring -----------------------------------------------------------------------------------------------


def add_parsers(commands: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    """The four subcommands, on ``polyv-retriever``'s subparsers."""
    common = parser_class(add_help=False)
    where = common.add_argument_group("where the API is")
    where.add_argument(
        "--api-url",
        help="the API's base URL (default: env POLYV_RETRIEVER_API_URL, else the stack's ApiUrl output)",
    )
    where.add_argument("--stack-name", help="the deployed stack (default: samconfig.toml's stack_name)")
    where.add_argument(
        "--region", help="AWS region (default: from the URL, else the usual AWS configuration)"
    )
    common.add_argument("--json", action="store_true", help="machine-readable output")

    submit = commands.add_parser("submit", parents=[common], help="start a retrieval on the deployed stack")
    submit.add_argument("vids", metavar="VID", nargs="*", help="videos to create a Polyv task for")
    submit.add_argument("--task-id", help="an existing Polyv retrieval task")
    submit.add_argument("--expire-days", type=int, help="with VIDs: 1-7 days the thawed files stay")
    submit.add_argument("--prefix", help="S3 key prefix (default: the API's, polyv/)")
    submit.add_argument(
        "--storage-class",
        help=f"S3 storage class of the objects ({', '.join(StorageClass)}; "
        "default: the stack's StorageClass)",
    )
    submit.add_argument(
        "--rerun", action="store_true", help="with --task-id: a new attempt of a finished retrieval"
    )
    submit.add_argument(
        "--retry-failed",
        action="store_true",
        help="with --task-id: a new attempt of only the videos that failed on our side",
    )
    submit.add_argument(
        "--idempotency-key", help="with VIDs: a repeat with the same key answers the same retrievals"
    )
    submit.set_defaults(run=cmd_submit)

    get = commands.add_parser("get", parents=[common], help="where a retrieval stands (--wait: follow it)")
    get.add_argument("retrieval_id", metavar="ID", help="a retrieval (task) id, or an attempt's TASK.N")
    get.add_argument(
        "--wait", action="store_true", help="follow it live until it ends; exit 0 only if COMPLETE"
    )
    get.add_argument(
        "--timeout",
        type=float,
        default=EXECUTION_TIMEOUT_SECONDS,
        help="with --wait: give up after this many seconds (default: 7 days, the execution's timeout)",
    )
    get.add_argument("--interval", type=float, default=5.0, help="with --wait: seconds between looks")
    get.set_defaults(run=cmd_get)

    listing = commands.add_parser("list", parents=[common], help="retrievals, newest first")
    listing.add_argument(
        "--status", choices=[ExecutionStatus.RUNNING, *FINISHED], help="only attempts in this state"
    )
    listing.add_argument("--limit", type=int, default=20, help="attempts per page, newest first (default 20)")
    listing.set_defaults(run=cmd_list)

    cancel = commands.add_parser("cancel", parents=[common], help="stop a running retrieval")
    cancel.add_argument(
        "retrieval_id", metavar="ID", help="a retrieval (task) id, or its running attempt's TASK.N"
    )
    cancel.set_defaults(run=cmd_cancel)
