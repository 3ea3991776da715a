"""`make bench`: the transfer engine against the common ways of doing the same job, side by side.

Every tool copies the same bytes from the same source server into a moto S3 server started for that run.
Scenarios:
  loopback   1 GiB and 2 GiB. Tools: our engine (`polyv-retriever copy`), `rclone copyurl`,
             `curl URL | aws s3 cp - s3://...`, and the ceiling: boto3 `upload_file` of the same bytes from
             local disk (no download at all).
  long path  the source caps each connection at --path-rate MB/s and adds --path-latency ms before each
             response (a long, lossy path to China as it treats each TCP stream); same tools.
Figures: wall time, MB/s, peak RSS of the tool's process, ratio to the ceiling (loopback) or to the fastest
single-stream peer (long path), and the wall time split into moto's CompleteMultipartUpload (the same work
for every tool; see s3_server.py) and the tool's own time.
Targets (issue 5): loopback <= 1.15x the ceiling's time and faster than every peer; long path >= 3x the
fastest single-stream peer; peak RSS <= 256 MiB at every size.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import boto3
import urllib3

sys.path.insert(0, str(Path(__file__).parent))
from source_server import SourceServer

MiB = 1024 * 1024
VENV_BIN = Path(sys.executable).parent
TOOLS_VENV = Path(__file__).resolve().parents[1] / ".venv-bench-tools"
BUCKET = "bench"


@dataclass
class Measurement:
    tool: str
    seconds: float
    size: int
    peak_rss: int  # bytes
    ok: bool
    #: Seconds of the wall time spent in moto's CompleteMultipartUpload, and the rest: the tool's own time.
    #: moto's completion is the same work whatever the tool (it joins the parts in one thread).
    completion: float = 0.0
    own: float = 0.0

    @property
    def rate(self) -> float:
        return self.size / self.seconds / 1e6 if self.seconds else 0.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _timed(command: list[str], env: dict[str, str]) -> tuple[float, int, int]:
    """Run to completion; (seconds, peak RSS in bytes of the largest process, exit code). For a shell
    pipeline, the peak is that of the largest process in it (reported by GNU time per process)."""
    began = time.monotonic()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - began
    stderr = process.stderr.read().decode() if process.stderr else ""
    peaks = [int(line.split("=")[1]) * 1024 for line in stderr.splitlines() if line.startswith("maxrss=")]
    peak = max([usage.ru_maxrss * 1024, *peaks])
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print(f"    ! {command if isinstance(command, str) else command[0]} exited {code}: {stderr[-400:]}")
    return seconds, peak, code


class Bench:
    """Runs each measured copy against a moto server started for it alone. moto keeps objects in memory
    and reuses what the previous upload freed, so on a shared server a tool's time depends on which tool ran
    before it (seen here); a fresh server gives every run the same starting state."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.moto: subprocess.Popen[bytes] | None = None
        self.requests_log = workdir / "s3-requests.log"
        self.env: dict[str, str] = {}
        self.fresh_server()

    def fresh_server(self) -> None:
        self.close()
        self.requests_log.unlink(missing_ok=True)
        self.moto, endpoint = start_moto(self.requests_log)
        self.s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        self.s3.create_bucket(Bucket=BUCKET)
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"},  # rclone rejects it on http
            **{k: v for k, v in self.env.items() if k.startswith(("POLYV_", "TRANSFER_"))},
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
            "RCLONE_CONFIG_MOTO_TYPE": "s3",
            "RCLONE_CONFIG_MOTO_PROVIDER": "Other",
            "RCLONE_CONFIG_MOTO_ENDPOINT": endpoint,
            "RCLONE_CONFIG_MOTO_ACCESS_KEY_ID": "bench",
            "RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY": "bench",
            "RCLONE_CONFIG_MOTO_REGION": "us-east-1",
        }

    def close(self) -> None:
        if self.moto is not None:
            self.moto.terminate()
            self.moto.wait(timeout=10)
            self.moto = None

    def verify(self, key: str, expected_sha256: str, size: int) -> bool:
        head = self.s3.head_object(Bucket=BUCKET, Key=key)
        if head["ContentLength"] != size:
            return False
        digest = hashlib.sha256()
        for chunk in self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].iter_chunks(8 * MiB):
            digest.update(chunk)
        ok = digest.hexdigest() == expected_sha256
        return ok

    def completion_seconds(self) -> float:
        """How long moto took over CompleteMultipartUpload in this run (see s3_server.py)."""
        lines = [line.split() for line in self.requests_log.read_text().splitlines()]
        return sum(float(fields[1]) for fields in lines if fields[3] == "complete")

    def run(self, tool: str, command: list[str], key: str, size: int, sha: str) -> Measurement:
        seconds, peak, code = _timed(command, self.env)
        completion = self.completion_seconds()
        ok = code == 0 and self.verify(key, sha, size)
        print(
            f"    {tool:<40} {seconds:7.1f} s  {size / seconds / 1e6:7.1f} MB/s  {peak / MiB:6.0f} MiB RSS"
            f"  (S3 completion {completion:4.1f} s)  {'verified' if ok else 'FAILED'}",
            flush=True,
        )
        self.fresh_server()
        return Measurement(tool, seconds, size, peak, ok, completion, seconds - completion)

    # --- the tools ------------------------------------------------------------------------------------

    def ours(self, url: str, key: str, size: int, sha: str, checksum_type: str) -> Measurement:
        cli = str(VENV_BIN / "polyv-retriever")
        self.env["POLYV_DOWNLOAD_ALLOW"] = url.rsplit("/", 1)[0]
        self.env["TRANSFER_CHECKSUM_TYPE"] = checksum_type
        command = [cli, "copy", url, f"s3://{BUCKET}/{key}"]
        return self.run(f"polyv-retriever copy, {checksum_type} CRC32", command, key, size, sha)

    def rclone(self, url: str, key: str, size: int, sha: str) -> Measurement:
        return self.run(
            "rclone copyurl",
            ["rclone", "copyurl", url, f"moto:{BUCKET}/{key}", "--s3-no-head"],
            key,
            size,
            sha,
        )

    def curl_aws(self, url: str, key: str, size: int, sha: str) -> Measurement:
        aws = TOOLS_VENV / "bin" / "aws"
        pipeline = (
            f"set -o pipefail; /usr/bin/time -f maxrss=%M curl -sSf '{url}' | /usr/bin/time -f maxrss=%M "
            f"'{aws}' s3 cp - 's3://{BUCKET}/{key}' --expected-size {size} --only-show-errors"
        )
        return self.run("curl | aws s3 cp -", ["bash", "-c", pipeline], key, size, sha)

    def ceiling(self, path: Path, key: str, size: int, sha: str) -> Measurement:
        script = f"import boto3; boto3.client('s3').upload_file({str(path)!r}, {BUCKET!r}, {key!r})"
        return self.run("ceiling: boto3 upload_file (disk)", [sys.executable, "-c", script], key, size, sha)

    def source_rate(self, url: str, size: int) -> float:
        began = time.monotonic()
        subprocess.run(["curl", "-sSf", "-o", "/dev/null", url], check=True)
        return size / (time.monotonic() - began) / 1e6


def make_file(directory: Path, size: int) -> tuple[Path, str]:
    path = directory / f"source-{size // MiB}MiB.mp4"
    digest = hashlib.sha256()
    block = os.urandom(4 * MiB)
    with path.open("wb") as handle:
        written = 0
        while written < size:
            piece = block[: min(len(block), size - written)]
            # A counter in every block: a part written at the wrong offset changes the digest.
            piece = written.to_bytes(8, "big") + piece[8:] if len(piece) >= 8 else piece
            handle.write(piece)
            digest.update(piece)
            written += len(piece)
    return path, digest.hexdigest()


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a bare pipe would end the Markdown cell ("curl | aws")


def table(title: str, rows: list[Measurement], reference: Measurement, ratio_label: str) -> str:
    lines = [
        f"### {title}",
        "",
        f"| tool | wall s | MB/s | peak RSS MiB | {ratio_label} | own s | S3 completion s | verified |",
        "|---|---:|---:|---:|---:|---:|---:|:-:|",
    ]
    for row in rows:
        ratio = (
            row.seconds / reference.seconds if ratio_label.startswith("time") else row.rate / reference.rate
        )
        lines.append(
            f"| {_cell(row.tool)} | {row.seconds:.1f} | {row.rate:.1f} | {row.peak_rss / MiB:.0f} | "
            f"{ratio:.2f}x | {row.own:.1f} | {row.completion:.1f} | {'yes' if row.ok else 'NO'} |"
        )
    return "\n".join(lines)


def median_of(trials: list[Measurement]) -> Measurement:
    """Medians of the wall, completion and own times; the worst peak RSS of all runs; verified only if every
    run was."""
    return Measurement(
        trials[0].tool,
        statistics.median(m.seconds for m in trials),
        trials[0].size,
        max(m.peak_rss for m in trials),
        all(m.ok for m in trials),
        statistics.median(m.completion for m in trials),
        statistics.median(m.own for m in trials),
    )


def interleaved(tools: list[tuple[str, Callable[[str], Measurement]]], trials: int) -> list[Measurement]:
    """Each tool ``trials`` times, round robin, the order rotated every trial, so that a slow moment of
    this shared machine does not always fall on the same tool."""
    runs: dict[str, list[Measurement]] = {name: [] for name, _ in tools}
    for trial in range(trials):
        shift = trial % len(tools)
        for name, tool in tools[shift:] + tools[:shift]:
            runs[name].append(tool(f"{name}-{trial}"))
    return [median_of(runs[name]) for name, _ in tools]


def loopback(bench: Bench, workdir: Path, size_mib: int, trials: int, failures: list[str]) -> str:
    size = size_mib * MiB
    path, sha = make_file(workdir, size)
    with SourceServer(workdir) as source:
        url = source.url(path.name)
        print(
            f"\nloopback, {size_mib} MiB (the source server alone: {bench.source_rate(url, size):.0f} MB/s)"
        )
        rows = interleaved(
            [
                ("ceiling", lambda key: bench.ceiling(path, key, size, sha)),
                ("ours", lambda key: bench.ours(url, key, size, sha, "COMPOSITE")),
                ("ours-full", lambda key: bench.ours(url, key, size, sha, "FULL_OBJECT")),
                ("rclone", lambda key: bench.rclone(url, key, size, sha)),
                ("curl-aws", lambda key: bench.curl_aws(url, key, size, sha)),
            ],
            trials,
        )
    path.unlink()
    ceiling, ours, peers = rows[0], rows[1], rows[3:]
    if ours.seconds > 1.15 * ceiling.seconds:
        failures.append(
            f"loopback {size_mib} MiB: {ours.seconds / ceiling.seconds:.2f}x the ceiling (> 1.15x)"
        )
    if any(peer.seconds <= ours.seconds for peer in peers):
        failures.append(f"loopback {size_mib} MiB: a peer was as fast as ours")
    if max(rows[1].peak_rss, rows[2].peak_rss) > 256 * MiB:
        failures.append(f"loopback {size_mib} MiB: our peak RSS is over 256 MiB")
    if not all(r.ok for r in rows):
        failures.append(f"loopback {size_mib} MiB: a copy did not verify")
    return table(f"Loopback, {size_mib} MiB", rows, ceiling, "time vs ceiling")


def long_path(bench: Bench, workdir: Path, args: argparse.Namespace, failures: list[str]) -> str:
    size = args.path_size_mib * MiB
    path, sha = make_file(workdir, size)
    shape = f"{args.path_rate:g} MB/s per connection, +{args.path_latency:g} ms per response"
    with SourceServer(
        workdir, rate_bytes_per_second=int(args.path_rate * 1e6), latency_seconds=args.path_latency / 1000
    ) as source:
        url = source.url(path.name)
        print(f"\nlong path, {args.path_size_mib} MiB, {shape}")
        rows = interleaved(
            [
                ("ours", lambda key: bench.ours(url, key, size, sha, "FULL_OBJECT")),
                ("rclone", lambda key: bench.rclone(url, key, size, sha)),
                ("curl-aws", lambda key: bench.curl_aws(url, key, size, sha)),
            ],
            1,
        )
    path.unlink()
    fastest_peer = max(rows[1:], key=lambda r: r.rate)
    if rows[0].rate < 3 * fastest_peer.rate:
        failures.append(f"long path: {rows[0].rate / fastest_peer.rate:.1f}x the fastest peer (< 3x)")
    if rows[0].peak_rss > 256 * MiB:
        failures.append(f"long path: peak RSS {rows[0].peak_rss / MiB:.0f} MiB > 256 MiB")
    if not all(r.ok for r in rows):
        failures.append("long path: a copy did not verify")
    return table(
        f"Long path, {args.path_size_mib} MiB, {shape}", rows, fastest_peer, "throughput vs fastest peer"
    )


def start_moto(requests_log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    moto = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "s3_server.py"), str(port), str(requests_log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib3.request("GET", endpoint + "/moto-api/", retries=False, timeout=1)
            break
        except urllib3.exceptions.HTTPError:
            time.sleep(0.1)
    return moto, endpoint


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes-mib", default="1024,2048", help="loopback file sizes")
    parser.add_argument(
        "--trials", type=int, default=7, help="loopback runs per tool (the median is reported)"
    )
    parser.add_argument("--path-size-mib", type=int, default=256)
    parser.add_argument("--path-rate", type=float, default=4.0, help="MB/s per connection on the long path")
    parser.add_argument("--path-latency", type=float, default=200.0, help="ms before each response")
    args = parser.parse_args()

    rclone = subprocess.run(["rclone", "version"], capture_output=True, text=True, check=True).stdout.split()[
        1
    ]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, "
        f"Python {platform.python_version()}, rclone {rclone}"
    )
    report: list[str] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        bench = Bench(Path(tmp))
        try:
            for size_mib in (int(s) for s in args.sizes_mib.split(",")):
                report.append(loopback(bench, Path(tmp), size_mib, args.trials, failures))
            report.append(long_path(bench, Path(tmp), args, failures))
        finally:
            bench.close()

    print("\n" + "\n\n".join(report))
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / "latest.md").write_text("\n\n".join(report) + "\n")
    (results / "latest.json").write_text(json.dumps({"failures": failures, "tables": report}, indent=1))
    if failures:
        print("\nTargets NOT met:\n  " + "\n  ".join(failures))
        return 1
    print("\nAll targets met.")
    return 0


if __name__ == "__main__":
    if not shutil.which("rclone"):
        sys.exit("rclone is missing: `make bench` installs it (apt-get install rclone)")
    sys.exit(main())
