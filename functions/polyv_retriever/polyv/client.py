"""The Polyv v3 API client: signed requests, strict parsing, typed errors, safe retries.

One urllib3 ``PoolManager`` per process (module level), so warm Lambda invocations and the CLI reuse
connections. Every attempt is signed afresh: a signature is only good for 3 minutes, and a retried request
with an old timestamp would turn a passing outage into an auth failure.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import urllib3

from polyv_retriever import errors, observability
from polyv_retriever.polyv.credentials import Credentials
from polyv_retriever.polyv.models import (
    RetrievalTask,
    TaskVideo,
    validate_expire_days,
    validate_task_id,
    validate_vids,
)
from polyv_retriever.polyv.signing import signed_params
from polyv_retriever.retry import Backoff

DEFAULT_BASE_URL = "https://api.polyv.net"
GET_TASK_PATH = "/v3/video/source-file-task/get"
CREATE_TASK_PATH = "/v3/video/source-file-task/create"

_AUTH_ERRORS: dict[int, type[errors.PolyvAuthError]] = {
    100: errors.InvalidTimestamp,
    101: errors.AppNotFound,
    102: errors.SubAccountNotFound,
    103: errors.SubAccountExpired,
    104: errors.InvalidSignature,
    105: errors.PermissionDenied,
}

_shared_pool: urllib3.PoolManager | None = None


def shared_pool() -> urllib3.PoolManager:
    global _shared_pool  # noqa: PLW0603 - one pool per process is the point
    if _shared_pool is None:
        _shared_pool = urllib3.PoolManager(num_pools=4, maxsize=16, retries=False)
    return _shared_pool


@dataclass(frozen=True)
class RetryPolicy(Backoff):
    """The project's backoff (:class:`polyv_retriever.retry.Backoff`) and the read timeout of one try."""

    timeout_seconds: float = 15.0


class PolyvClient:
    def __init__(
        self,
        credentials: Credentials,
        *,
        base_url: str | None = None,
        retry: RetryPolicy | None = None,
        pool: urllib3.PoolManager | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._credentials = credentials
        self.base_url = (base_url or os.environ.get("POLYV_API_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self._retry = retry or RetryPolicy()
        self._pool = pool or shared_pool()
        self._clock = clock
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"PolyvClient(app_id={self._credentials.app_id!r}, base_url={self.base_url!r})"

    @property
    def app_id(self) -> str:
        return self._credentials.app_id

    def get_task(self, task_id: str) -> RetrievalTask:
        task_id = validate_task_id(task_id)
        data = self._call("GET", GET_TASK_PATH, {"taskId": task_id})
        if not isinstance(data, list):
            raise errors.UnexpectedResponse(f"task {task_id}: data is {type(data).__name__}, not a list")
        return RetrievalTask(task_id=task_id, videos=tuple(TaskVideo.from_api(item) for item in data))

    def create_task(self, vids: list[str], expire_days: int) -> str:
        vids = validate_vids(vids)
        expire_days = validate_expire_days(expire_days)
        data = self._call("POST", CREATE_TASK_PATH, {"vids": ",".join(vids), "expireDays": expire_days})
        task_id = data.get("taskId") if isinstance(data, dict) else None
        if not isinstance(task_id, str) or not task_id:
            raise errors.UnexpectedResponse("create answered success without a taskId")
        return task_id

    # --- transport ---------------------------------------------------------------------------------------

    def _call(self, method: str, path: str, params: Mapping[str, object]) -> Any:
        attempt = 0
        while True:
            try:
                return self._attempt(method, path, params)
            except errors.RetrieverError as exc:
                observability.metric("PolyvErrors", 1, ErrorName=exc.name)
                if not isinstance(exc, errors.TransientError):
                    raise
                retry_after = exc.retry_after if isinstance(exc, errors.RateLimited) else None
                attempt += 1
                # A block longer than our cap (Polyv blocks an IP for 5 minutes) is for the caller to wait
                # out (the state machine's Retry), not for a Lambda to sleep through: pause() says no.
                if not self._retry.pause(
                    attempt,
                    url=self.base_url + path,  # the signed fields are never part of it
                    reason=exc,
                    retry_after=retry_after,
                    sleep=self._sleep,
                ):
                    raise

    def _attempt(self, method: str, path: str, params: Mapping[str, object]) -> Any:
        fields = signed_params(
            {**params, "appId": self._credentials.app_id, "timestamp": int(self._clock() * 1000)},
            self._credentials.secret,
        )
        try:
            timeout = urllib3.Timeout(connect=5.0, read=self._retry.timeout_seconds)
            if method == "GET":
                response = self._pool.request("GET", self.base_url + path, fields=fields, timeout=timeout)
            else:
                response = self._pool.request(
                    method, self.base_url + path, fields=fields, encode_multipart=False, timeout=timeout
                )
        except urllib3.exceptions.HTTPError as exc:
            # The exception text would carry the query string (timestamp and sign): name the cause only.
            raise errors.PolyvTransportError(f"{method} {path} failed: {type(exc).__name__}") from None
        return _parse_envelope(response.status, response.headers, response.data, path)


def _well_formed(value: Any) -> Any:
    """Polyv's JSON with every string made encodable: JSON may escape a lone surrogate (``"\\ud800"``),
    which no UTF-8 record, log line or answer can hold. Such text keeps its escape as plain characters, so a
    vid made of it is refused like any other hostile vid (INVALID_VID) instead of failing the attempt."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list):
        return [_well_formed(item) for item in value]
    if isinstance(value, dict):
        return {_well_formed(k): _well_formed(v) for k, v in value.items()}
    return value


def _parse_envelope(status: int, headers: Mapping[str, str], body: bytes, path: str) -> Any:
    envelope: Any
    try:
        envelope = _well_formed(json.loads(body))
    except (ValueError, UnicodeDecodeError, RecursionError):
        envelope = None
    if not isinstance(envelope, dict) or "code" not in envelope:
        if status == 429 or (status == 403 and not body.strip()):
            raise errors.RateLimited(
                f"{path}: HTTP {status}, rate limited", retry_after=_retry_after(headers)
            )
        if status >= 500:
            raise errors.PolyvUnavailable(f"{path}: HTTP {status} from Polyv")
        raise errors.MalformedResponse(f"{path}: HTTP {status}, body is not Polyv's JSON envelope")

    if envelope.get("code") == 200 and envelope.get("status") == "success":
        return envelope.get("data")

    error: dict[str, Any] = envelope["error"] if isinstance(envelope.get("error"), dict) else {}
    code, desc = error.get("code"), str(error.get("desc") or "no description")
    request_id = envelope.get("requestId")
    if status == 429 or envelope.get("code") == 429:
        raise errors.RateLimited(f"{path}: rate limited ({desc})", retry_after=_retry_after(headers))
    if not isinstance(code, int):
        if status >= 500 or (isinstance(envelope.get("code"), int) and envelope["code"] >= 500):
            raise errors.PolyvUnavailable(f"{path}: HTTP {status}, Polyv error without a code: {desc}")
        raise errors.UnexpectedResponse(f"{path}: error envelope without an error code (HTTP {status})")
    if code in _AUTH_ERRORS:
        raise _AUTH_ERRORS[code](code, desc, request_id=request_id)
    if code >= 3000:
        raise errors.PolyvBusinessError(code, desc, request_id=request_id)
    if status >= 500:
        raise errors.PolyvUnavailable(f"{path}: HTTP {status}, Polyv error {code}: {desc}")
    raise errors.PolyvApiError(code, desc, request_id=request_id)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
