"""Creating retrievals from vids: Polyv tasks of at most 100 vids, one retrieval each, made once.

A request is identified by what it asks for (the vids as a set, expireDays, prefix, storage class) or by
the caller's ``Idempotency-Key``. The creation runs under Powertools' Idempotency utility (DynamoDB table
from the template): the first request writes an INPROGRESS record with a conditional put, so of two
identical requests racing, one creates the Polyv tasks and the other waits for its result: **one** Polyv
create call per task, whatever the timing.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

from polyv_retriever.contracts import RetrievalOptions, to_json
from polyv_retriever.errors import RetrievalConflict
from polyv_retriever.pipeline.records import validate_prefix
from polyv_retriever.polyv.client import PolyvClient
from polyv_retriever.polyv.models import MAX_VIDS_PER_TASK, validate_expire_days, validate_vids

#: One POST may name this many vids: split into Polyv tasks of MAX_VIDS_PER_TASK.
MAX_VIDS_PER_REQUEST = 1000


def fingerprint(vids: list[str], expire_days: int, prefix: str, options: RetrievalOptions) -> str:
    """The same for the same request, whatever the order of the vids."""
    canonical = json.dumps(
        {
            "vids": sorted(vids),
            "expireDays": expire_days,
            "prefix": prefix,
            "options": to_json(options),
        },
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def chunks(vids: list[str]) -> list[list[str]]:
    ordered = sorted(vids)
    return [ordered[i : i + MAX_VIDS_PER_TASK] for i in range(0, len(ordered), MAX_VIDS_PER_TASK)]


def create_tasks(
    polyv: PolyvClient, vids: list[str], expire_days: int, start: Callable[[str], object]
) -> list[str]:
    """Polyv tasks for the vids (sorted, at most 100 each), each started as a retrieval; their taskIds."""
    task_ids = []
    for group in chunks(vids):
        task_id = polyv.create_task(group, expire_days)
        start(task_id)
        task_ids.append(task_id)
    return task_ids


def validated(vids: list[str], expire_days: int | None, prefix: str | None) -> tuple[list[str], int, str]:
    return (
        validate_vids(vids, limit=MAX_VIDS_PER_REQUEST),
        validate_expire_days(expire_days),
        validate_prefix(prefix),
    )


def wait_for_other_request(
    attempt: Callable[[], dict[str, Any]], in_progress: type[Exception]
) -> dict[str, Any]:
    """Run ``attempt``; while an identical request is still creating (its record is INPROGRESS), wait for
    it and then answer its result."""
    deadline = time.monotonic() + 20  # the API function has 30 s
    delay = 0.1
    while True:
        try:
            return attempt()
        except in_progress:
            if time.monotonic() > deadline:
                raise RetrievalConflict(
                    "an identical request is still creating these retrievals: ask again in a moment"
                ) from None
            time.sleep(delay)
            delay = min(1.0, delay * 2)
