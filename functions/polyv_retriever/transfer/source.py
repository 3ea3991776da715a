"""The download side: one signed Polyv URL, probed once, then read by ranges (or as one stream).

Every request is checked against the allow-list first, redirects included, and goes to exactly the host,
port and scheme the allow-list read from the URL (urllib3 is handed those, never the URL string to parse
again). A redirect's body is read to its end or its connection dropped, never returned to the pool unread
(the next request on that connection would read it as its own answer). A 403 means the signed URL
expired: the URL provider is asked for a fresh one (the Lambda re-queries the task) and the read goes on.
A response that disagrees with the probe (another size, ETag or, without an ETag, Last-Modified) means the
source changed under us.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urljoin

import urllib3

from polyv_retriever.errors import DownloadNotAllowed, SourceChanged, SourceExpired, SourceUnavailable
from polyv_retriever.observability import carry_context
from polyv_retriever.retry import Backoff
from polyv_retriever.transfer.allowlist import DownloadAllowList, DownloadTarget
from polyv_retriever.transfer.parallelism import RateMeter

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 3
_READ_SLICE = 256 * 1024
_COUNT_SLICE = 1024 * 1024
T = TypeVar("T")
#: ``claim(read, wanted) -> allowed``: see HttpSource.read_into.
Claim = Callable[[int, int], int]
_READ_TIMEOUT = 60.0
#: A body we do not want (a redirect's, an error page) is read to its end when it is at most this long, so
#: that its connection can carry the next request; a longer one (or one of unknown length) is dropped with
#: its connection, which costs less than reading it.
_DRAIN_LIMIT = 64 * 1024
_REDIRECTS = (301, 302, 303, 307, 308)
#: Per request: a part, the probe, or the opening of a stream.
PART_RETRY = Backoff(attempts=5, base_seconds=0.25, cap_seconds=8.0)


@dataclass(frozen=True)
class SourceInfo:
    size: int
    etag: str | None
    ranged: bool  # the server honours Range: parts can be fetched in parallel and re-fetched alone
    content_type: str = "application/octet-stream"
    #: Kept only when there is no ETag: then it is the best validator the server gives (a CDN node's own
    #: Last-Modified beside an ETag would only add false alarms).
    last_modified: str | None = None


class HttpSource:
    def __init__(
        self,
        url_provider: Callable[[], str],
        allowlist: DownloadAllowList,
        pool: urllib3.PoolManager,
        retry: Backoff | None = None,
    ) -> None:
        self._url_provider = url_provider
        self._allowlist = allowlist
        self._pool = pool
        self._retry = retry or PART_RETRY
        self._lock = threading.Lock()
        self._url = url_provider()
        self._url_generation = 0
        self.refreshes = 0
        self.info: SourceInfo | None = None
        #: Body bytes of ranged reads, counted as they arrive: what the parallelism controller measures.
        self.received = RateMeter()
        #: Seconds the probe waited for its answer (connection and first byte): the path's latency.
        self.first_byte_seconds = 0.0
        # Refused before the first connection, not at the first read.
        self._target: DownloadTarget = allowlist.check(self._url)

    @property
    def current_url(self) -> str:
        """The URL in use. It is a bearer credential: for building keys, never for logs."""
        return self._url

    # --- requests ------------------------------------------------------------------------------------------

    @property
    def redacted_url(self) -> str:
        """The URL in use without its query: what logs and errors may name."""
        return self._target.redacted()

    def _open(self, headers: dict[str, str]) -> urllib3.BaseHTTPResponse:
        """GET the current URL, following allow-listed redirects. Returns an unread response."""
        with self._lock:
            url, target = self._url, self._target
        for _ in range(MAX_REDIRECTS + 1):
            try:
                # The pool for exactly the checked scheme, host and port; the request target is sent as is.
                connection = self._pool.connection_from_host(target.host, target.port, target.scheme)
                response = connection.urlopen(
                    "GET",
                    target.target,
                    headers=headers,
                    preload_content=False,
                    redirect=False,
                    retries=False,
                    assert_same_host=False,
                    timeout=urllib3.Timeout(connect=10.0, read=_READ_TIMEOUT),
                )
            except urllib3.exceptions.HTTPError as exc:
                raise SourceUnavailable(f"download connection failed: {type(exc).__name__}") from None
            if response.status in _REDIRECTS and response.headers.get("Location"):
                location = response.headers["Location"]
                _finish_unwanted(response)
                url = _redirect_url(url, location)
                target = self._allowlist.check(url)
                continue
            if response.status == 403:
                _finish_unwanted(response)
                raise SourceExpired("the download URL answered 403 (expired)")
            # 416 is an answer, not a failure: the caller knows what its range meant (see probe).
            if response.status not in (200, 206, 416):  # 5xx, 429, anything unexpected: worth another try
                _finish_unwanted(response)
                raise SourceUnavailable(f"the download server answered HTTP {response.status}")
            return response
        raise SourceUnavailable("too many redirects")

    def _refresh(self, generation: int) -> None:
        """Fetch a fresh URL, once per expiry however many workers saw the 403 at the same time."""
        with self._lock:
            if generation != self._url_generation:
                return
            url = self._url_provider()
            target = self._allowlist.check(url)
            self._url, self._target, self._url_generation = url, target, self._url_generation + 1
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
                logger.warning("the download URL %s expired (403): asking for a fresh one", self.redacted_url)
                self._refresh(generation)
            except SourceUnavailable as exc:
                attempt += 1
                if not self._retry.pause(attempt, url=self.redacted_url, reason=exc):
                    raise

    # --- the public reads --------------------------------------------------------------------------------

    def probe(self) -> SourceInfo:
        """One ranged GET of the first byte: tells size, validators and whether Range is honoured.

        An empty file has no first byte. Servers answer that with 416 (the size in Content-Range, or, as S3
        does, no size at all), with an empty 200, or by ignoring Range: each is an empty source."""

        def once() -> SourceInfo:
            asked = time.monotonic()
            response = self._open({"Range": "bytes=0-0"})
            self.first_byte_seconds = time.monotonic() - asked
            if response.status == 416:
                total = _range_total(response)
                response.drain_conn()
                if total == 0:
                    return self._described(response, 0, ranged=True)
                if total is not None:
                    raise SourceUnavailable(f"416 for the first byte of a {total}-byte file")
                response = self._open({})  # a refusal that tells no size: the whole file's answer does
            try:
                if response.status == 206:
                    total = _range_total(response)
                    if total is None:
                        raise SourceUnavailable("206 without a total size in Content-Range")
                    return self._described(response, total, ranged=True)
                length = response.headers.get("Content-Length")
                if length is None or not length.isdigit():
                    raise SourceUnavailable("the download server tells no size (no Content-Length)")
                return self._described(response, int(length), ranged=False)
            finally:
                # One byte left to read on a 206; a 200 carries the whole file, so drop that connection.
                response.drain_conn() if response.status == 206 else _discard(response)

        self.info = self._with_retries(once)
        return self.info

    @staticmethod
    def _described(response: urllib3.BaseHTTPResponse, size: int, *, ranged: bool) -> SourceInfo:
        etag = response.headers.get("ETag") or None
        return SourceInfo(
            size,
            etag,
            ranged,
            response.headers.get("Content-Type") or "application/octet-stream",
            None if etag else response.headers.get("Last-Modified") or None,
        )

    def read_range(self, start: int, end: int, into: bytearray | None = None) -> bytearray:
        """Bytes [start, end), exactly, into one preallocated buffer (no intermediate copies): ``into`` when
        given (of exactly that length: the engine reuses part buffers), else a new one."""
        buffer = into if into is not None and len(into) == end - start else bytearray(end - start)
        with memoryview(buffer) as view:
            self.read_into(start, view)
        return buffer

    def open_ahead(self, start: int, end: int) -> Ahead:
        """Ask for bytes [start, end) now, in the background, and read them later (``read_into(...,
        ahead=...)``): on a path with a long first byte, the next range's answer is on its way while the
        current one is still being read, instead of each range starting with a wait. A request that fails
        here is only dropped: the read asks again, with the retry policy of every read."""
        ahead = Ahead(start, end)

        def send() -> None:
            try:
                ahead.response = self._open({"Range": f"bytes={start}-{end - 1}"})
            except Exception:  # left to the read, which meets it again and handles it
                ahead.response = None
            finally:
                ahead.sent.set()

        threading.Thread(target=carry_context(send), name="open-ahead", daemon=True).start()
        return ahead

    def read_into(
        self, start: int, view: memoryview, claim: Claim | None = None, ahead: Ahead | None = None
    ) -> int:
        """Bytes from ``start`` on into ``view``: all of it, or less if ``claim`` says stop; returns how many.

        ``claim(read, wanted)`` is asked before each slice and answers how many of the ``wanted`` bytes may
        be read now: the engine hands the end of a range to another connection while it is being read
        (see engine._Tail), and the reader stops where the other takes over. ``ahead``: the request for
        this very range, sent earlier by open_ahead."""
        info = self._require_info()
        end = start + len(view)
        asked = f"bytes {start}-{end - 1}/{info.size}"
        sent = [ahead.take() if ahead is not None and (ahead.start, ahead.end) == (start, end) else None]

        def once() -> int:
            response, sent[0] = sent[0], None  # the request sent ahead serves the first attempt only
            if response is None:
                response = self._open({"Range": f"bytes={start}-{end - 1}"})
            try:
                self._check_identity(response, info)  # a size or validator that differs: SourceChanged
                if response.status == 416:
                    raise SourceUnavailable(f"the download server refused {asked} (416)")
                if response.status == 200 and (start, end) != (0, info.size):
                    # One CDN node that ignores Range once is no reason to give up the upload: this part
                    # is asked for again. Its bytes sit somewhere inside the whole file's body; reading
                    # up to them would cost as much as the file, so that body is not used.
                    raise SourceUnavailable(f"the download server ignored Range for {asked} (answered 200)")
                # A 200 here is the whole file, and the whole file is exactly what was asked for.
                if response.status == 206 and response.headers.get("Content-Range") != asked:
                    raise SourceChanged(f"asked for {asked}, got {response.headers.get('Content-Range')!r}")
                filled = _read_exactly(response, view, self.received.add, claim)
            except BaseException:
                _discard(response)
                raise
            # Stopped short (the rest went to another connection): the unread body must not be reused.
            response.release_conn() if filled == len(view) else _discard(response)
            return filled

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
                    piece = bytearray(want)
                    with memoryview(piece) as view:
                        _read_exactly(response, view)
                    position += want  # only once the bytes are in hand: a failed read is read again
                    yield piece
                    del piece  # released before the next part is read
                complete = True
            except SourceUnavailable as exc:
                broken += 1
                if not self._retry.pause(broken, url=self.redacted_url, reason=exc):
                    raise
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
        modified = response.headers.get("Last-Modified")
        if info.last_modified and modified and modified != info.last_modified:
            raise SourceChanged(
                f"the source's Last-Modified changed from {info.last_modified} to {modified} during the copy"
            )
        if response.status in (206, 416):
            total = _range_total(response)
        else:
            length = response.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None
        if total is not None and total != info.size:
            raise SourceChanged(f"the source's size changed from {info.size} to {total} during the copy")


class Ahead:
    """A ranged request sent before its range is read (HttpSource.open_ahead)."""

    def __init__(self, start: int, end: int) -> None:
        self.start, self.end = start, end
        self.response: urllib3.BaseHTTPResponse | None = None
        self.sent = threading.Event()

    def take(self) -> urllib3.BaseHTTPResponse | None:
        """The response, once its headers are in (None if the request failed)."""
        self.sent.wait()
        response, self.response = self.response, None
        return response

    def discard(self) -> None:
        """Not to be read after all: its connection is closed (the body is unread)."""
        response = self.take()
        if response is not None:
            _discard(response)


def _range_total(response: urllib3.BaseHTTPResponse) -> int | None:
    """The file's size from ``Content-Range: bytes a-b/SIZE`` (206) or ``bytes */SIZE`` (416)."""
    total = response.headers.get("Content-Range", "").rpartition("/")[2]
    return int(total) if total.isdigit() else None


def _redirect_url(current: str, location: str) -> str:
    """Where a redirect points, as an absolute URL for the allow-list to read. A Location with characters
    that parsers strip or read differently (whitespace, controls, non-ASCII) is refused as it is, before
    urljoin could quietly drop them."""
    if not all("\x21" <= char <= "\x7e" for char in location):
        raise DownloadNotAllowed("redirect refused: whitespace, control or non-ASCII characters in Location")
    try:
        return urljoin(current, location)
    except ValueError:  # e.g. an unbalanced "[" in the authority: not a URL anyone can read one way
        raise DownloadNotAllowed("redirect refused: Location is not a URL") from None


def _finish_unwanted(response: urllib3.BaseHTTPResponse) -> None:
    """Done with a response whose body is not wanted: read a short body to its end so that its connection
    goes back to the pool clean; drop the connection of a long or unknown-length one."""
    remaining = response.length_remaining
    if remaining is not None and remaining <= _DRAIN_LIMIT:
        response.drain_conn()  # a read that fails closes the connection: it is not reused either way
        response.release_conn()
    else:
        _discard(response)


def _discard(response: urllib3.BaseHTTPResponse) -> None:
    """Close a response whose body was not read to the end: its connection must not be reused."""
    response.close()
    response.release_conn()


def _read_exactly(
    response: urllib3.BaseHTTPResponse,
    view: memoryview,
    counted: Callable[[int], None] | None = None,
    claim: Claim | None = None,
) -> int:
    """The body into ``view``: all of it, or up to where ``claim`` stops it. Returns the bytes read.

    The socket writes straight into the buffer: http.client's ``readinto`` is a loop of ``recv_into`` in
    C. urllib3's own ``readinto`` reads into a temporary ``bytes`` and copies it (two copies and an
    allocation per slice, 0.5 CPU s more per GiB), so it is used only where urllib3 must decode the body
    (a Content-Encoding) or has no http.client response underneath. Slices of ``_COUNT_SLICE`` let
    ``counted`` see the bytes as they arrive and ``claim`` move the end.
    """
    length = len(view)
    raw = getattr(response, "_fp", None)
    direct = isinstance(raw, http.client.HTTPResponse) and not response.headers.get("Content-Encoding")
    filled = 0
    try:
        while filled < length:
            want = min(_COUNT_SLICE if direct else _READ_SLICE, length - filled)
            if claim is not None:
                want = claim(filled, want)
                if want <= 0:
                    break
            with view[filled : filled + want] as piece:
                got = raw.readinto(piece) if direct else response.readinto(piece)  # type: ignore[union-attr]
            if not got:
                raise SourceUnavailable(f"the body ended after {filled} of {length} bytes")
            filled += got
            if counted is not None:
                counted(got)
    except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
        raise SourceUnavailable(
            f"the download broke after {filled} of {length} bytes: {type(exc).__name__}"
        ) from None
    return filled


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
