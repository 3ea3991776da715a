"""The download side: one signed Polyv URL, probed once, then read by ranges (or as one stream).

Every request is checked against the allow-list first, redirects included. A 403 means the signed URL
expired: the URL provider is asked for a fresh one (the Lambda re-queries the task) and the read goes on.
A response that disagrees with the probe (another size or ETag) means the source changed under us.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urljoin

import urllib3

from polyv_retriever.errors import SourceChanged, SourceExpired, SourceUnavailable
from polyv_retriever.transfer.allowlist import DownloadAllowList

MAX_REDIRECTS = 3
_READ_SLICE = 256 * 1024
T = TypeVar("T")
_READ_TIMEOUT = 60.0


@dataclass(frozen=True)
class SourceInfo:
    size: int
    etag: str | None
    ranged: bool  # the server honours Range: parts can be fetched in parallel and re-fetched alone
    content_type: str = "application/octet-stream"


@dataclass(frozen=True)
class PartRetry:
    attempts: int = 5
    base_seconds: float = 0.25
    cap_seconds: float = 8.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap_seconds, self.base_seconds * 2**attempt))


class HttpSource:
    def __init__(
        self,
        url_provider: Callable[[], str],
        allowlist: DownloadAllowList,
        pool: urllib3.PoolManager,
        retry: PartRetry | None = None,
    ) -> None:
        self._url_provider = url_provider
        self._allowlist = allowlist
        self._pool = pool
        self._retry = retry or PartRetry()
        self._lock = threading.Lock()
        self._url = url_provider()
        self._url_generation = 0
        self.refreshes = 0
        self.info: SourceInfo | None = None
        allowlist.check(self._url)  # refuse before the first connection, not at the first read

    @property
    def current_url(self) -> str:
        """The URL in use. It is a bearer credential: for building keys, never for logs."""
        return self._url

    # --- requests ------------------------------------------------------------------------------------------

    def _open(self, headers: dict[str, str]) -> urllib3.BaseHTTPResponse:
        """GET the current URL, following allow-listed redirects. Returns an unread response."""
        with self._lock:
            url = self._url
        for _ in range(MAX_REDIRECTS + 1):
            self._allowlist.check(url)
            try:
                response = self._pool.request(
                    "GET",
                    url,
                    headers=headers,
                    preload_content=False,
                    redirect=False,
                    retries=False,
                    timeout=urllib3.Timeout(connect=10.0, read=_READ_TIMEOUT),
                )
            except urllib3.exceptions.HTTPError as exc:
                raise SourceUnavailable(f"download connection failed: {type(exc).__name__}") from None
            if response.status in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                response.release_conn()
                url = urljoin(url, response.headers["Location"])
                continue
            if response.status == 403:
                response.drain_conn()
                raise SourceExpired("the download URL answered 403 (expired)")
            if response.status not in (200, 206):  # 5xx, 429, anything unexpected: worth another try
                response.drain_conn()
                raise SourceUnavailable(f"the download server answered HTTP {response.status}")
            return response
        raise SourceUnavailable("too many redirects")

    def _refresh(self, generation: int) -> None:
        """Fetch a fresh URL, once per expiry however many workers saw the 403 at the same time."""
        with self._lock:
            if generation != self._url_generation:
                return
            url = self._url_provider()
            self._allowlist.check(url)
            self._url, self._url_generation = url, self._url_generation + 1
            self.refreshes += 1

    def _with_retries(self, attempt_once: Callable[[], T]) -> T:
        """The one retry policy for every request: a 403 fetches a fresh URL (twice at most per request),
        anything else transient backs off with jitter."""
        attempt = 0
        refreshed_for_this_read = 0
        while True:
            generation = self._url_generation
            try:
                return attempt_once()
            except SourceExpired:
                refreshed_for_this_read += 1
                if refreshed_for_this_read > 2:
                    raise
                self._refresh(generation)
            except SourceUnavailable:
                attempt += 1
                if attempt >= self._retry.attempts:
                    raise
                time.sleep(self._retry.delay(attempt))

    # --- the public reads --------------------------------------------------------------------------------

    def probe(self) -> SourceInfo:
        """One ranged GET of the first byte: tells size, ETag and whether Range is honoured."""

        def once() -> SourceInfo:
            response = self._open({"Range": "bytes=0-0"})
            content_type = response.headers.get("Content-Type") or "application/octet-stream"
            try:
                if response.status == 206:
                    total = response.headers.get("Content-Range", "").rpartition("/")[2]
                    if not total.isdigit():
                        raise SourceUnavailable("206 without a total size in Content-Range")
                    return SourceInfo(int(total), response.headers.get("ETag"), True, content_type)
                length = response.headers.get("Content-Length")
                if length is None or not length.isdigit():
                    raise SourceUnavailable("the download server tells no size (no Content-Length)")
                return SourceInfo(int(length), response.headers.get("ETag"), False, content_type)
            finally:
                # One byte left to read on a 206; a 200 carries the whole file, so drop that connection.
                response.drain_conn() if response.status == 206 else _discard(response)

        self.info = self._with_retries(once)
        return self.info

    def read_range(self, start: int, end: int) -> bytearray:
        """Bytes [start, end), exactly, into one preallocated buffer (no intermediate copies)."""
        info = self._require_info()

        def once() -> bytearray:
            response = self._open({"Range": f"bytes={start}-{end - 1}"})
            try:
                if response.status != 206:
                    raise SourceChanged("the download server stopped honouring Range mid-transfer")
                self._check_identity(response, info)
                expected_range = f"bytes {start}-{end - 1}/{info.size}"
                if response.headers.get("Content-Range") != expected_range:
                    raise SourceChanged(
                        f"asked for {expected_range}, got {response.headers.get('Content-Range')!r}"
                    )
                data = _read_exactly(response, end - start)
            except BaseException:
                _discard(response)
                raise
            response.release_conn()
            return data

        return self._with_retries(once)

    def stream(self, start: int, chunk_size: int) -> Generator[bytearray]:
        """The whole body from ``start`` on, in ``chunk_size`` pieces, for servers that ignore Range. After a
        failure it starts over and skips what was already delivered: without Range there is no other way."""
        info = self._require_info()
        position = start
        broken = 0  # bodies that broke mid-read; opening again is _with_retries' business
        while position < info.size:
            response = self._with_retries(lambda: self._open({}))
            complete = False
            try:
                self._check_identity(response, info)
                if response.status == 206:
                    raise SourceChanged("the download server started honouring Range mid-transfer")
                _skip(response, position)
                while position < info.size:
                    want = min(chunk_size, info.size - position)
                    piece = _read_exactly(response, want)
                    position += want  # only once the bytes are in hand: a failed read is read again
                    yield piece
                    del piece  # released before the next part is read
                complete = True
            except SourceUnavailable:
                broken += 1
                if broken >= self._retry.attempts:
                    raise
                time.sleep(self._retry.delay(broken))
            finally:
                response.release_conn() if complete else _discard(response)

    def _require_info(self) -> SourceInfo:
        if self.info is None:
            raise RuntimeError("probe() first")
        return self.info

    @staticmethod
    def _check_identity(response: urllib3.BaseHTTPResponse, info: SourceInfo) -> None:
        etag = response.headers.get("ETag")
        if info.etag and etag and etag != info.etag:
            raise SourceChanged(f"the source's ETag changed from {info.etag} to {etag} during the copy")
        if response.status == 206:
            total = response.headers.get("Content-Range", "").rpartition("/")[2]
        else:
            total = response.headers.get("Content-Length", "")
        if total.isdigit() and int(total) != info.size:
            raise SourceChanged(f"the source's size changed from {info.size} to {total} during the copy")


def _discard(response: urllib3.BaseHTTPResponse) -> None:
    """Close a response whose body was not read to the end: its connection must not be reused."""
    response.close()
    response.release_conn()


def _read_exactly(response: urllib3.BaseHTTPResponse, length: int) -> bytearray:
    buffer = bytearray(length)
    view = memoryview(buffer)
    filled = 0
    try:
        while filled < length:
            # Bounded slices: urllib3's readinto reads into a temporary as large as the slice it is given.
            got = response.readinto(view[filled : filled + _READ_SLICE])
            if not got:
                raise SourceUnavailable(f"the body ended after {filled} of {length} bytes")
            filled += got
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise SourceUnavailable(
            f"the download broke after {filled} of {length} bytes: {type(exc).__name__}"
        ) from None
    finally:
        view.release()
    return buffer


def _skip(response: urllib3.BaseHTTPResponse, count: int) -> None:
    scratch = bytearray(min(count, 1024 * 1024)) if count else bytearray()
    view = memoryview(scratch)
    left = count
    try:
        while left:
            got = response.readinto(view[: min(left, len(scratch))])
            if not got:
                raise SourceUnavailable("the body ended while skipping what was already copied")
            left -= got
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise SourceUnavailable(f"the download broke while skipping: {type(exc).__name__}") from None
    finally:
        view.release()
