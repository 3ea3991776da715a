"""`make bench-pipeline`: does a retrieval stream? The whole pipeline on the local stack, timed per video.

20 videos of 1 to 200 MiB whose thaw completes at spread-out times on the Polyv emulator's clock (one
retrieval task). The script watches S3 directly (every 0.1 s) and prints, for each video: when Polyv made
it ready, when its upload began, when its object was in S3 (seconds after the task was created); then the
task's makespan against the ideal (the last-ready video's ready time + one poll interval + its transfer).

Targets (issue 11): every video in S3 within one poll interval + 1.25x its own transfer time after it was
ready; the makespan within 1.25x of the ideal.

--old-tree DIR runs the same scenario on another checkout's code (its template, state machine and handlers),
e.g. the version before streaming: ``git worktree add /tmp/old <commit>`` then
``python bench/pipeline_bench.py --old-tree /tmp/old``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import urllib3

MiB = 1024 * 1024
#: The local stack's polling (its FAST_POLLING parameters): the longest wait between two polls.
POLL_INTERVAL = 2.0


def scenario(count: int, spread: float, max_mib: int) -> list[dict[str, Any]]:
    """Sizes geometric from 1 MiB to max_mib; ready times spread evenly; paired so that neither the
    largest nor the smallest comes last."""
    sizes = [round(MiB * max_mib ** (i / (count - 1))) for i in range(count)]
    order = [(i * 7) % count for i in range(count)]  # a fixed shuffle (7 is coprime with 20)
    return [
        {"vid": f"bench-{i:02d}", "size": sizes[order[i]], "ready": 2 + spread * i / (count - 1)}
        for i in range(count)
    ]


def start_stack(time_scale: float, old_tree: Path | None) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    command = [sys.executable]
    if old_tree is None:
        command += ["-m", "polyv_retriever.local_stack"]
    else:
        # The other checkout's code wins over the installed package: both halves of its namespace.
        command += [
            "-c",
            "import sys, runpy; sys.path.insert(0, sys.argv[1] + '/functions'); import polyv_retriever; "
            "polyv_retriever.__path__.append(sys.argv[1] + '/infra/polyv_retriever'); "
            "sys.argv = sys.argv[:1] + sys.argv[2:]; "
            "runpy.run_module('polyv_retriever.local_stack', run_name='__main__')",
            str(old_tree.resolve()),
        ]
    command += ["--exit-on-stdin-close", "--emulator-time-scale", str(time_scale)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise SystemExit("the local stack did not start")
    return process, json.loads(line)


def run(args: argparse.Namespace) -> dict[str, Any]:
    videos = scenario(args.videos, args.spread, args.max_mib)
    process, info = start_stack(args.time_scale, args.old_tree)
    http = urllib3.PoolManager()
    s3 = boto3.client(
        "s3",
        endpoint_url=info["awsEndpoint"],
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )

    def admin(path: str, body: Any) -> Any:
        answer = http.request("POST", f"{info['polyvEmulator']}/_emulator/{path}", body=json.dumps(body))
        assert answer.status == 200, answer.data
        return json.loads(answer.data)

    try:
        admin(
            "videos",
            [
                {"vid": v["vid"], "size": v["size"], "readyAfter": v["ready"] * args.time_scale}
                for v in videos
            ],
        )
        task_id = admin("tasks", {"vids": [v["vid"] for v in videos]})["taskId"]
        t0, t0_wall = time.monotonic(), time.time()
        answer = http.request(
            "POST",
            info["apiUrl"] + "/retrievals",
            body=json.dumps({"taskId": task_id}),
            headers={"Content-Type": "application/json"},
        )
        assert answer.status == 202, answer.data
        root = f"polyv/{task_id}/"
        started: dict[str, float] = {}
        landed: dict[str, float] = {}
        status = "RUNNING"
        deadline = t0 + args.timeout
        while status == "RUNNING" and time.monotonic() < deadline:
            now = time.monotonic() - t0
            uploads = s3.list_multipart_uploads(Bucket=info["bucket"], Prefix=root).get("Uploads", [])
            objects = s3.list_objects_v2(Bucket=info["bucket"], Prefix=root).get("Contents", [])
            for key in [u["Key"] for u in uploads] + [o["Key"] for o in objects]:
                vid = key.removeprefix(root).split(".", 1)[0]
                started.setdefault(vid, now)
            for obj in objects:
                vid = obj["Key"].removeprefix(root).split(".", 1)[0]
                landed.setdefault(vid, now)
            if len(landed) >= len(videos):
                got = http.request("GET", f"{info['apiUrl']}/retrievals/{task_id}")
                status = json.loads(got.data)["status"]
            time.sleep(0.1)
        ended = time.monotonic() - t0
        started.update(_transfer_execution_starts(info, task_id, t0_wall))
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=60)
    rows = []
    for v in videos:
        vid = v["vid"]
        if vid not in landed:
            rows.append({**v, "start": None, "inS3": None, "transfer": None, "ok": False})
            continue
        start = min(started.get(vid, landed[vid]), landed[vid])
        transfer = landed[vid] - start
        limit = v["ready"] + POLL_INTERVAL + 1.25 * transfer
        rows.append(
            {**v, "start": start, "inS3": landed[vid], "transfer": transfer, "ok": landed[vid] <= limit}
        )
    last = max(rows, key=lambda r: r["ready"])
    ideal = last["ready"] + POLL_INTERVAL + (last["transfer"] or 0)
    makespan = max((r["inS3"] or ended) for r in rows)
    return {"rows": rows, "makespan": makespan, "ideal": ideal, "executionEnded": ended, "status": status}


def _transfer_execution_starts(info: dict[str, Any], task_id: str, t0_wall: float) -> dict[str, float]:
    """With streaming each video's transfer is an execution of its own: its start is the transfer's start
    (URL, probe and all). The code before streaming has none: there the first upload seen in S3 is used,
    which is later than the real start (so its transfer times look shorter and its targets stricter)."""
    sfn = boto3.client(
        "stepfunctions",
        endpoint_url=info["awsEndpoint"],
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )
    starts = {}
    for machine in sfn.list_state_machines()["stateMachines"]:
        if machine["name"] != "TransferStateMachine":
            continue
        for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=machine["stateMachineArn"]):
            for execution in page["executions"]:
                if execution["name"].startswith(f"{task_id}."):
                    vid = execution["name"].split(".", 2)[2]
                    starts[vid] = execution["startDate"].timestamp() - t0_wall
    return starts


def report(result: dict[str, Any], label: str) -> str:
    lines = [
        f"{label}: 20 videos, ready times spread on the emulator's clock; seconds after the task was created",
        "",
        "| vid | MiB | ready | transfer start | in S3 | transfer s | in S3 - ready "
        "| target (poll + 1.25x transfer) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in result["rows"]:
        if r["inS3"] is None:
            lines.append(
                f"| {r['vid']} | {r['size'] / MiB:.0f} | {r['ready']:.1f} | - | - | - | - | not in S3 |"
            )
            continue
        budget = POLL_INTERVAL + 1.25 * r["transfer"]
        lines.append(
            f"| {r['vid']} | {r['size'] / MiB:.0f} | {r['ready']:.1f} | {r['start']:.1f} | {r['inS3']:.1f} | "
            f"{r['transfer']:.1f} | {r['inS3'] - r['ready']:.1f} | {'met' if r['ok'] else 'MISSED'} "
            f"(<= {budget:.1f}) |"
        )
    met = sum(r["ok"] for r in result["rows"])
    ratio = result["makespan"] / result["ideal"]
    lines += [
        "",
        f"videos within their target: {met} of {len(result['rows'])}",
        f"makespan {result['makespan']:.1f} s vs ideal {result['ideal']:.1f} s: {ratio:.2f}x "
        f"(target <= 1.25x: {'met' if ratio <= 1.25 else 'MISSED'}); execution {result['status']} "
        f"at {result['executionEnded']:.1f} s",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--max-mib", type=int, default=200)
    parser.add_argument("--spread", type=float, default=60.0, help="seconds between the first and last ready")
    parser.add_argument("--time-scale", type=float, default=60.0, help="Polyv seconds per real second")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--old-tree", type=Path, help="run another checkout's code (e.g. before streaming)")
    parser.add_argument("--json", type=Path, help="also write the raw result here")
    args = parser.parse_args()
    result = run(args)
    label = f"code from {args.old_tree}" if args.old_tree else "this checkout"
    text = report(result, label)
    print(text)
    load = Path("/proc/loadavg").read_text().split()[:3]
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"\nmachine: {machine}, load {load}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
