"""What the CLI shows: live per-video progress of a retrieval, a summary table, a transfer progress bar.

Progress is drawn only on a terminal (a live table); a pipe or CI gets the summary at the end. Colour
follows rich's rules: none off a terminal, none with NO_COLOR set.

rich is imported where something is drawn, not with this module: its import is ~80 ms of CPU, which
``copy`` off a terminal (a script, the benchmark, CI) would pay for a bar nobody sees.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from polyv_retriever.vocabulary import VideoState

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


@functools.cache
def console() -> Console:
    from rich.console import Console

    return Console(highlight=False)


def _megabytes(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e6:,.1f} MB"


def _rows(retrieval: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    polyv = {v["vid"]: v["status"] for v in (retrieval.get("polyv") or {}).get("videos", [])}
    transfers = retrieval.get("transfers") or {}
    rows = []
    for vid in sorted(set(polyv) | set(transfers)):
        record = transfers.get(vid, {})
        moved = (
            record.get("size")
            if record.get("status") in (VideoState.COPIED, VideoState.SKIPPED)
            else record.get("bytesTransferred")
        )
        speed = record.get("bytesPerSecond") or (
            record["size"] / record["seconds"]
            if record.get("seconds") and record.get("status") == VideoState.COPIED
            else None
        )
        rows.append(
            (
                vid,
                polyv.get(vid, "?"),
                record.get("status", "-"),
                f"{_megabytes(moved)} / {_megabytes(record.get('size'))}" if record else "-",
                f"{speed / 1e6:,.0f} MB/s" if speed else "-",
            )
        )
    return rows


def progress_table(retrieval: dict[str, Any]) -> Table:
    from rich.table import Table

    table = Table(title=f"retrieval {retrieval['retrievalId']}: {retrieval['status']}", title_justify="left")
    for column in ("vid", "Polyv", "transfer", "bytes", "speed"):
        table.add_column(column, justify="right" if column in ("bytes", "speed") else "left")
    for row in _rows(retrieval):
        table.add_row(*row)
    return table


class ProgressView:
    def __init__(self, *, enabled: bool = True) -> None:
        self._live = None
        if enabled and console().is_terminal:
            from rich.live import Live

            self._live = Live(console=console(), refresh_per_second=4)

    def __enter__(self) -> ProgressView:
        if self._live:
            self._live.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._live:
            self._live.__exit__(kind, error, tb)

    def update(self, retrieval: dict[str, Any]) -> None:
        if self._live:
            self._live.update(progress_table(retrieval))


def print_summary(retrieval: dict[str, Any]) -> None:
    result = retrieval.get("result") or {}
    counts = ", ".join(f"{n} {k}" for k, n in result.get("counts", {}).items() if n)
    table = progress_table(retrieval)
    table.title = None
    outcome = result.get("outcome", "-")
    console().print(
        f"\nretrieval {retrieval['retrievalId']}: {retrieval['status']}, {outcome} ({counts})", soft_wrap=True
    )
    console().print(table)
    console().print(f"manifest: {result.get('manifest', '-')}", soft_wrap=True)


@contextlib.contextmanager
def transfer_progress(name: str, *, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """The engine's ``on_progress(moved, total)`` for ``copy``: a bytes bar named ``name`` on a terminal;
    elsewhere nothing is drawn and rich is not even imported."""
    if not (enabled and sys.stderr.isatty()):
        yield lambda moved, total: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(file=sys.stderr),
    ) as bar:
        task = bar.add_task(name, total=None)
        yield lambda moved, total: bar.update(task, advance=moved, total=total)
