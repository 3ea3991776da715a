"""moto's S3 server for the benchmark, logging when each request started and how long it took.

A tool's wall time holds two different things: its own work (download, upload of the parts) and moto's
CompleteMultipartUpload, which joins every part in one thread: the same work for every tool, and on this
machine the noisiest part of a run (it touches gigabytes of fresh memory). The log lets the benchmark show
the two apart. Usage: ``python s3_server.py PORT LOGFILE`` (it serves like ``moto_server -p PORT``).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


def main() -> None:
    port, log_path = int(sys.argv[1]), sys.argv[2]
    moto = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 (open for the server's lifetime)

    def timed(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        began = time.time()
        try:
            return moto(environ, start_response)  # type: ignore[no-any-return]
        finally:
            method, query = environ["REQUEST_METHOD"], environ.get("QUERY_STRING", "")
            kind = "complete" if method == "POST" and "uploadId=" in query else "-"
            with lock:
                log.write(f"{began:.6f} {time.time() - began:.6f} {method} {kind}\n")

    run_simple("127.0.0.1", port, timed, threaded=True)


if __name__ == "__main__":
    main()
