"""What one retrieval costs in Step Functions, measured: state transitions and history events per task.

Runs tasks whose slowest video is ready after 1 h, 6 h and 24 h on the local stack (the real state machine
and handlers, moto executing the definition from template.yaml) with the Polyv emulator's clock scaled:
1 real second = SCALE Polyv seconds, and the template's polling parameters divided by the same SCALE, so
the poll schedule is the deployed one (30 s growing x1.5 to 15 min, +/- 20 % jitter), only faster.

    .venv/bin/python bench/cost_counts.py                 # 1 h, 6 h, 24 h at scale 30: about 50 minutes
    .venv/bin/python bench/cost_counts.py --hours 1 6     # a quicker look

Each task has three 1 MiB videos (ready at 10 min, at half the task's length, and at its end), so the
counts split into what polling costs and what each video costs. Writes bench/results/cost_counts.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import boto3
import urllib3

from polyv_retriever.attempts import attempt_name
from polyv_retriever.local_stack.stack import LocalStack, StackOptions
from polyv_retriever.pipeline.polling import transfer_execution_name

RESULTS = Path(__file__).resolve().parent / "results"
# The template's defaults, in Polyv (real) seconds.
FIRST_WAIT, MAX_WAIT, DEADLINE = 30, 900, 259200


def history(sfn: Any, arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events.extend(page["events"])
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]


def count(events: list[dict[str, Any]]) -> dict[str, Any]:
    entered = [e for e in events if e["type"].endswith("StateEntered")]
    names = [e.get("stateEnteredEventDetails", {}).get("name") for e in entered]
    return {
        "historyEvents": len(events),
        # Step Functions Standard bills each state entered (a retry re-enters): the billed transitions.
        "stateTransitions": len(entered),
        "polls": names.count("CheckStatus"),  # CheckStatus runs: Polyv queries and looks at transfers
        "transferInvocations": names.count("Transfer"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--hours", type=float, nargs="+", default=[1, 6, 24])
    parser.add_argument("--scale", type=int, default=30, help="Polyv seconds per real second (divides 30)")
    args = parser.parse_args()
    if FIRST_WAIT % args.scale or MAX_WAIT % args.scale:
        raise SystemExit("--scale must divide 30 (the first wait) so the schedule stays the deployed one")

    options = StackOptions(
        parameters={
            "PollFirstWaitSeconds": str(FIRST_WAIT // args.scale),
            "PollMaxWaitSeconds": str(MAX_WAIT // args.scale),
            "PollDeadlineSeconds": str(DEADLINE // args.scale),
        },
        emulator_time_scale=args.scale,
        function_environment={"POWERTOOLS_LOG_LEVEL": "WARNING"},
    )
    http = urllib3.PoolManager()
    started = time.monotonic()
    with LocalStack(options) as stack:
        info, emulator = stack.describe(), stack.emulator
        assert emulator is not None
        tasks: dict[float, str] = {}
        videos: dict[float, list[str]] = {}
        for hours in args.hours:
            length = hours * 3600
            vids = []
            for i, ready in enumerate((600, length / 2, length)):
                vid = f"cost-{hours:g}h-{i}"
                emulator.add_video(vid, 1024 * 1024, ready_after=ready)
                vids.append(vid)
            tasks[hours], videos[hours] = emulator.create_task(vids), vids
            answer = http.request(
                "POST", info["apiUrl"] + "/retrievals", body=json.dumps({"taskId": tasks[hours]})
            )
            assert answer.status == 202, answer.data
        sfn = boto3.client("stepfunctions")
        arn = info["stateMachineArn"].replace(":stateMachine:", ":execution:")
        transfers = os.environ["TRANSFER_STATE_MACHINE_ARN"].replace(":stateMachine:", ":execution:")
        results: list[dict[str, Any]] = []
        for hours, task_id in sorted(tasks.items()):
            parent = f"{arn}:{attempt_name(task_id, 1)}"
            while (execution := sfn.describe_execution(executionArn=parent))["status"] == "RUNNING":
                time.sleep(2)
            row: dict[str, Any] = {"hours": hours, "status": execution["status"], "videos": 3}
            row.update(count(history(sfn, parent)))
            # each video's transfer is an execution of the transfer state machine: billed too
            children = [
                count(history(sfn, f"{transfers}:{transfer_execution_name(task_id, 1, vid)}"))
                for vid in videos[hours]
            ]
            row["transferExecutions"] = {
                k: sum(c[k] for c in children) for k in ("historyEvents", "stateTransitions")
            }
            row["totalStateTransitions"] = (
                row["stateTransitions"] + row["transferExecutions"]["stateTransitions"]
            )
            row["totalHistoryEvents"] = row["historyEvents"] + row["transferExecutions"]["historyEvents"]
            row["output"] = json.loads(execution.get("output") or "{}").get("counts")
            results.append(row)
            print(json.dumps(row), flush=True)
    RESULTS.mkdir(exist_ok=True)
    summary = {
        "scale": args.scale,
        "realSeconds": round(time.monotonic() - started),
        "measuredAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tasks": results,
    }
    (RESULTS / "cost_counts.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(
        "| task ready after | CheckStatus runs | state transitions, all executions | history events, parent |"
    )
    print("|---|---:|---:|---:|")
    for row in results:
        transitions, events = row["totalStateTransitions"], row["historyEvents"]
        print(f"| {row['hours']:g} h | {row['polls']} | {transitions} | {events} |")


if __name__ == "__main__":
    main()
