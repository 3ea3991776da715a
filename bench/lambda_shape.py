"""Run a command the way Lambda would run it: CPU and memory as a function of MEMORY MB gets.

Lambda gives a function CPU in proportion to its memory: one full core at 1,769 MB (AWS's documented
ratio), so a 1,024 MB function gets 0.58 of a core. Here that is a cgroup v1 group per run:
``cpu.cfs_quota_us = period * MEMORY / 1769`` and ``memory.limit_in_bytes = MEMORY MiB``. The command moves
itself into the group before it execs, so the whole process tree (a shell pipeline, Python threads, rclone's
goroutines) is inside from its first instruction.

Usage (what the benchmark does): ``python lambda_shape.py MEMORY_MB GROUP -- COMMAND...``; the benchmark
removes the group (``remove(GROUP)``) once the command has exited. Needs root and cgroup v1's ``cpu`` and
``memory`` controllers mounted under /sys/fs/cgroup (``available()`` says whether they are).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("cpu", "memory")
LAMBDA_MB_PER_CORE = 1769
CFS_PERIOD_US = 100_000


def available() -> bool:
    return os.geteuid() == 0 and all((CGROUP_ROOT / c / "cgroup.procs").exists() for c in CONTROLLERS)


def cores(memory_mb: int) -> float:
    return memory_mb / LAMBDA_MB_PER_CORE


def command(memory_mb: int, group: str, argv: list[str]) -> list[str]:
    """``argv`` wrapped so that it runs inside a fresh group shaped like a ``memory_mb`` Lambda."""
    return [sys.executable, str(Path(__file__).resolve()), str(memory_mb), group, "--", *argv]


def _enter(memory_mb: int, group: str) -> None:
    cpu = CGROUP_ROOT / "cpu" / group
    memory = CGROUP_ROOT / "memory" / group
    cpu.mkdir(exist_ok=True)
    memory.mkdir(exist_ok=True)
    (cpu / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
    (cpu / "cpu.cfs_quota_us").write_text(str(int(CFS_PERIOD_US * cores(memory_mb))))
    (memory / "memory.limit_in_bytes").write_text(str(memory_mb * 1024 * 1024))
    for path in (cpu, memory):
        (path / "cgroup.procs").write_text(str(os.getpid()))


def throttled_seconds(group: str) -> float:
    """How long the group's tasks waited for CPU quota (cpu.stat's throttled_time), 0 if it is gone."""
    with contextlib.suppress(OSError):
        for line in (CGROUP_ROOT / "cpu" / group / "cpu.stat").read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == "throttled_time":
                return int(value) / 1e9
    return 0.0


def remove(group: str) -> None:
    """Remove the group once its processes are gone (the kernel refuses while any is left)."""
    for controller in CONTROLLERS:
        path = CGROUP_ROOT / controller / group
        for _ in range(50):
            try:
                path.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)


def main() -> None:
    memory_mb, group, separator, *argv = sys.argv[1:]
    if separator != "--" or not argv:
        sys.exit("usage: lambda_shape.py MEMORY_MB GROUP -- COMMAND...")
    _enter(int(memory_mb), group)
    os.execvp(argv[0], argv)  # noqa: S606 (the tool itself, argv as given)


if __name__ == "__main__":
    main()
