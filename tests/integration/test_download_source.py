"""The download source's connections, over real HTTP: it connects to exactly the host the allow-list checked
(directly and through redirects), and a redirect's body never poisons a pooled connection.

Items 1 and 3 of issue 9. The hostile URLs here point at 127.0.0.1:443 through a parser differential
(``https://127.0.0.1\\.videocc.net/`` passes a naive ``*.videocc.net`` check, and urllib3 reads its host as
127.0.0.1): a listener on that port tells whether a socket was opened. Binding 443 needs the port's lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import urllib3

from polyv_retriever.errors import DownloadNotAllowed, SourceUnavailable
from polyv_retriever.retry import Backoff
from polyv_retriever.transfer.allowlist import DEFAULT_ALLOW, DownloadAllowList
from polyv_retriever.transfer.engine import MiB, TransferEngine
from polyv_retriever.transfer.s3_multipart import S3Destination
from polyv_retriever.transfer.source import HttpSource
from tests.download_server import DownloadServer
from tests.integration.conftest import open_uploads
from tests.integration.test_cli_copy import CLI
from tests.integration.test_transfer_engine import FAST_PART_RETRY, SMALL_PARTS, object_sha256

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

HOSTILE = "https://127.0.0.1\\.videocc.net/x.mp4?auth_key=SECRET-KEY"
DATA = bytes(range(256)) * (12 * MiB // 256) + b"tail"  # 3 parts of 5 MiB


@contextlib.contextmanager
def listener_on_443() -> Iterator[socket.socket]:
    """127.0.0.1:443, held under the port's lock (tests of several worktrees run at once)."""
    with open("/tmp/polyv-retriever-port-443.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 443))
            sock.listen(16)
            sock.setblocking(False)
            yield sock


def connections_accepted(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            connection, _ = sock.accept()
        except BlockingIOError:
            return count
        connection.close()
        count += 1


@pytest.fixture
def server() -> Iterator[DownloadServer]:
    with DownloadServer() as running:
        yield running


def test_the_hostile_url_really_reaches_the_other_host_when_urllib3_parses_it() -> None:
    """The premise (so that the tests below can fail): urllib3 given this URL opens 127.0.0.1:443."""
    with listener_on_443() as sock:
        with contextlib.suppress(urllib3.exceptions.HTTPError):
            urllib3.PoolManager().request("GET", HOSTILE, retries=False, timeout=0.5)
        assert connections_accepted(sock) == 1


def test_a_url_read_differently_by_two_parsers_is_refused_before_any_socket_opens(
    server: DownloadServer,
) -> None:
    allow = DownloadAllowList(f"{DEFAULT_ALLOW},{server.origin}")
    with listener_on_443() as sock:
        with pytest.raises(DownloadNotAllowed, match="backslash") as caught:
            HttpSource(lambda: HOSTILE, allow, urllib3.PoolManager(), FAST_PART_RETRY)
        assert "SECRET-KEY" not in str(caught.value)
        assert connections_accepted(sock) == 0


@pytest.mark.parametrize(
    "location",
    [
        HOSTILE,
        "https://127.0.0.1\\.videocc.net/x.mp4",
        "//127.0.0.1\\.videocc.net/x.mp4",
        "https://x.videocc.net@127.0.0.1/x.mp4",
        "https://127.0.0.1\t.videocc.net/x.mp4",
        "https://2130706433/x.mp4",
        "https://127.0.0.1/x.mp4",
        "https://[::1/x.mp4",  # urljoin itself refuses it (ValueError): still DownloadNotAllowed
    ],
)
def test_a_redirect_to_such_a_url_is_refused_before_any_socket_opens(
    server: DownloadServer, location: str
) -> None:
    server.redirect("/v.mp4", location, body=b"moved")
    allow = DownloadAllowList(f"{DEFAULT_ALLOW},{server.origin}")
    source = HttpSource(lambda: server.origin + "/v.mp4?auth_key=SECRET-KEY", allow, urllib3.PoolManager())
    with listener_on_443() as sock:
        with pytest.raises(DownloadNotAllowed) as caught:
            source.probe()
        assert connections_accepted(sock) == 0
    assert "SECRET-KEY" not in str(caught.value)
    assert server.requests("/v.mp4") == 1


def test_the_cli_refuses_such_a_url_in_one_line_with_exit_2_and_no_socket(bucket: str) -> None:
    env = {**os.environ, "POLYV_DOWNLOAD_ALLOW": DEFAULT_ALLOW}
    with listener_on_443() as sock:
        result = subprocess.run(
            [CLI, "copy", HOSTILE, f"s3://{bucket}/x.mp4"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert connections_accepted(sock) == 0
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "DownloadNotAllowed: download URL refused: backslash in the URL" in result.stderr
    assert "SECRET-KEY" not in result.stderr


# --- 3: redirects ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "chunked"),
    [(b"", False), (b"<html>moved</html>" * 50, False), (b"x" * (200 * 1024), False), (b"moved", True)],
    ids=["empty", "short-body", "long-body", "chunked"],
)
@pytest.mark.parametrize("where", ["same-host", "cross-host"])
def test_a_redirected_download_is_copied_with_one_request_per_hop(
    server: DownloadServer, s3: S3Client, bucket: str, body: bytes, chunked: bool, where: str
) -> None:
    with DownloadServer() as other:
        files = server if where == "same-host" else other
        files.add_file("/files/v.mp4", DATA)
        server.redirect("/v.mp4", files.origin + "/files/v.mp4", body=body, chunked=chunked)
        allow = DownloadAllowList(f"{server.origin},{other.origin}")
        # No retries: a request failing on a connection poisoned by an unread redirect fails the copy.
        source = HttpSource(
            lambda: server.origin + "/v.mp4?auth_key=k",
            allow,
            urllib3.PoolManager(maxsize=8),
            Backoff(attempts=1),
        )
        dest = S3Destination(s3, bucket, "v.mp4")

        result = TransferEngine(SMALL_PARTS).copy(source, dest, metadata={})

        assert result.status == "COPIED"
        assert object_sha256(s3, bucket, "v.mp4") == hashlib.sha256(DATA).hexdigest()
        # The probe and at least one GET per part (a shared tail adds ranges), each redirected exactly once;
        # with no retries allowed, a request failing on a poisoned connection would have failed the copy.
        asked = server.requests("/v.mp4")
        assert asked >= 1 + result.parts
        assert files.requests("/files/v.mp4") == asked
        assert open_uploads(s3, bucket) == []


def test_a_drained_redirect_leaves_its_connection_for_the_next_request(server: DownloadServer) -> None:
    server.add_file("/files/v.mp4", DATA)
    server.redirect("/v.mp4", "/files/v.mp4", body=b"moved")
    allow = DownloadAllowList(server.origin)
    source = HttpSource(lambda: server.origin + "/v.mp4", allow, urllib3.PoolManager(maxsize=1))
    source.probe()
    for start in range(0, 4 * MiB, MiB):
        assert source.read_range(start, start + MiB) == DATA[start : start + MiB]
    assert server.requests("/v.mp4") == 5
    assert server.state.connections == 1


def test_redirects_are_followed_only_so_far(server: DownloadServer) -> None:
    for hop in range(6):
        server.redirect(f"/{hop}", f"/{hop + 1}")
    source = HttpSource(
        lambda: server.origin + "/0", DownloadAllowList(server.origin), urllib3.PoolManager(), FAST_PART_RETRY
    )
    with pytest.raises(SourceUnavailable, match="too many redirects"):
        source.probe()


def test_urllib3s_own_warnings_never_carry_the_signed_url_into_the_logs() -> None:
    """A CDN answer with a malformed header line makes urllib3 warn "Failed to parse headers (url=...)" with
    the whole URL, auth_key included (and at DEBUG it logs every request's). Lambda's runtime has a handler
    on the root logger, as this test does (not caplog: pytest also attaches it to non-propagating loggers):
    nothing of it may reach that log."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]

    def answer_once() -> None:
        connection, _ = listener.accept()
        with connection:
            request = b""
            while b"\r\n\r\n" not in request:
                request += connection.recv(4096)
            connection.sendall(
                b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-0/1\r\nContent-Length: 1\r\n"
                b"X-Bogus header without a colon\r\n\r\nx"
            )

    thread = threading.Thread(target=answer_once, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}/dl/v.mp4?auth_key=SECRET-SIGNATURE-123"
    source = HttpSource(lambda: url, DownloadAllowList(f"http://127.0.0.1:{port}"), urllib3.PoolManager())
    lines: list[str] = []
    root = logging.getLogger()

    class Runtime(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(f"{record.name}: {record.getMessage()}")

    handler, level = Runtime(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        with contextlib.suppress(Exception):
            source.probe()
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    thread.join(timeout=5)
    listener.close()
    assert not [line for line in lines if "SECRET-SIGNATURE" in line]
