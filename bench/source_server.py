"""The benchmark's download source: a file served over HTTP with Range, by sendfile (zero copy).

It stands in for Polyv's CDN. On loopback it must never be the bottleneck (the benchmark prints its own
rate); for the long-path model it caps each connection's rate and adds latency before each response, as a
long, lossy path does to each TCP stream (netem is not available in this kernel, so it is done here), and
caps the whole path's rate with one token bucket that every connection draws from: past that capacity,
more connections only share it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class PathCapacity:
    """The whole path's rate: each chunk sent reserves its time on one shared clock (a token bucket with a
    burst of one chunk), so the sum over all connections never exceeds ``rate`` bytes a second."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._lock = threading.Lock()
        self._free_at = 0.0

    def wait(self, size: int) -> None:
        if not self.rate:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._free_at)
            self._free_at = start + size / self.rate
        if start > now:
            time.sleep(start - now)


class SourceServer:
    def __init__(
        self,
        directory: Path,
        *,
        rate_bytes_per_second: int = 0,
        latency_seconds: float = 0.0,
        capacity_bytes_per_second: int = 0,
    ) -> None:
        self.directory = directory
        self.rate, self.latency = rate_bytes_per_second, latency_seconds
        self.capacity = PathCapacity(capacity_bytes_per_second)
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                server.serve(self, body=False)

            def do_GET(self) -> None:
                server.serve(self, body=True)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that drops a connection (a range handed to another, a tool's exit) is normal

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def __enter__(self) -> SourceServer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def serve(self, request: BaseHTTPRequestHandler, *, body: bool) -> None:
        path = self.directory / request.path.lstrip("/").split("?")[0]
        if not path.is_file():
            request.send_error(404)
            return
        size = path.stat().st_size
        start, end, status = 0, size, 200
        header = request.headers.get("Range", "")
        if header.startswith("bytes="):
            first, _, last = header.removeprefix("bytes=").partition("-")
            start, end, status = int(first), min(int(last) + 1 if last else size, size), 206
        self.requests += 1
        if self.latency:
            time.sleep(self.latency)
        request.send_response(status)
        request.send_header("Content-Length", str(end - start))
        request.send_header("Content-Type", "video/mp4")
        request.send_header("Accept-Ranges", "bytes")
        request.send_header("ETag", f'"{int(path.stat().st_mtime)}-{size}"')
        if status == 206:
            request.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        request.end_headers()
        if not body:
            return
        with path.open("rb") as handle, contextlib.suppress(OSError):  # OSError: the client hung up
            self._send(request.connection, handle.fileno(), start, end)

    def _send(self, connection: socket.socket, fd: int, start: int, end: int) -> None:
        if not self.rate and not self.capacity.rate:
            position = start
            while position < end:
                position += os.sendfile(connection.fileno(), fd, position, end - position)
            return
        began, sent, chunk = time.monotonic(), 0, 64 * 1024
        while start + sent < end:
            size = min(chunk, end - start - sent)
            self.capacity.wait(size)
            sent += os.sendfile(connection.fileno(), fd, start + sent, size)
            ahead = sent / self.rate - (time.monotonic() - began) if self.rate else 0
            if ahead > 0:
                time.sleep(ahead)
