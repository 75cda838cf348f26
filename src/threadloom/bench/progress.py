"""The live display while a bench runs, and the tables printed when it is done.

On a terminal: a rich progress bar counting cells, with what is being measured now and an
estimate of the time left. Elsewhere (CI, a pipe): one plain line per finished cell on stderr,
so logs stay readable. Both go to stderr; stdout gets only the final tables.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from threadloom.bench.report import cell, pivot


def _describe(row: dict[str, Any]) -> str:
    text = cell(row) or row["status"]
    if row["status"] in ("unavailable", "failed", "timeout", "errors") and row.get("note"):
        text += f" ({row['note']})"
    return f"{row['workload']} · {row['model']} · {row['connections']} conn: {text}"


class LiveProgress:
    """A rich progress bar over the cells of the plan (a context manager)."""

    def __init__(self, total: int, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.task = self.progress.add_task("starting", total=total)

    def __enter__(self) -> LiveProgress:
        self.progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.progress.stop()

    def step(self, text: str) -> None:
        """Show what is being measured now."""
        self.progress.update(self.task, description=text)

    def row_done(self, row: dict[str, Any]) -> None:
        """Count a finished cell and print it above the bar."""
        self.progress.console.print(_describe(row), highlight=False)
        self.progress.advance(self.task)


class PlainProgress:
    """One line per finished cell on stderr (a context manager, like LiveProgress)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def step(self, text: str) -> None:
        """Nothing between cells: logs get finished lines only."""

    def row_done(self, row: dict[str, Any]) -> None:
        """Print the finished cell."""
        self.done += 1
        print(f"[{self.done}/{self.total}] {_describe(row)}", file=sys.stderr, flush=True)


def make_progress(total: int) -> LiveProgress | PlainProgress:
    """Live on a terminal, plain lines otherwise."""
    console = Console(stderr=True)
    return LiveProgress(total, console) if console.is_terminal else PlainProgress(total)


def print_tables(results: dict[str, Any]) -> None:
    """One table per workload on stdout, then each verdict in plain words."""
    console = Console()
    for w in results["plan"]["workloads"]:
        headers, lines = pivot(results, w["name"])
        table = Table(title=f"{w['name']}: {w['summary']}", title_justify="left")
        for i, header in enumerate(headers):
            table.add_column(header, justify="left" if i == 0 else "right")
        for line in lines:
            table.add_row(*line)
        console.print(table)
        verdict = results["verdicts"].get(w["name"])
        if verdict:
            console.print(verdict["text"].replace("**", ""), highlight=False)
        console.print()
