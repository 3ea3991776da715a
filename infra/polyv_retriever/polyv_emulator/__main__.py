"""``python -m polyv_retriever.polyv_emulator --port 8090``: the emulator by hand, one app, demo videos."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading

from polyv_retriever.polyv_emulator.server import EmulatorServer


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m polyv_retriever.polyv_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090, help="0: any free port (printed)")
    parser.add_argument("--app-id", default="emulatorApp")
    parser.add_argument("--secret", default="emulator-secret")
    parser.add_argument("--time-scale", type=float, default=1.0, help="Polyv seconds per real second")
    args = parser.parse_args()
    server = EmulatorServer(
        args.host, args.port, app_id=args.app_id, secret=args.secret, time_scale=args.time_scale
    ).start()
    print(f"Polyv emulator on {server.base_url} (appId {args.app_id}); Ctrl-C stops it", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
