"""An attempt's execution name, ``{taskId}.{attempt}``: one definition for the pipeline and the CLI.

A module of its own with no imports, so that the CLI can read a name a notice printed without loading the
pipeline (S3 and Step Functions wrappers, Powertools: ~0.3 s a command).
"""

from __future__ import annotations


def attempt_name(task_id: str, attempt: int) -> str:
    return f"{task_id}.{attempt}"


def parse_attempt_name(name: str) -> tuple[str, int] | None:
    task_id, _, number = name.rpartition(".")
    return (task_id, int(number)) if task_id and number.isdigit() else None
