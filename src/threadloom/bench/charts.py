"""Charts as PNG (matplotlib, no display needed): one per workload, plus memory per connection.

A workload's chart has two panels against connections (log scale): throughput and p99
latency, one line per model, in the same colour for a model in every chart. A point whose row
is not clean (timed out, errors) is drawn as a cross off the line, so a fast-looking figure
from a server that left clients waiting never reads as a result. ``idle`` plots the server's
memory and one client's p99 against the number of idle connections; ``memory.png`` compares
what one idle connection costs each model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullFormatter

from threadloom.bench.verdict import UNITS

COLORS = {
    "single": "#7f7f7f",
    "threads": "#ff7f0e",
    "pool": "#1f77b4",
    "asyncio": "#2ca02c",
    "workers": "#9467bd",
}
Row = dict[str, Any]


def _points(rows: list[Row], model: str, key: str, clean: bool) -> list[tuple[int, float]]:
    """(connections, value) of one model's rows, clean ones or the others, in order."""
    return sorted(
        (r["connections"], r[key])
        for r in rows
        if r["model"] == model and r[key] is not None and (r["status"] == "ok") == clean
    )


def _panel(ax: Axes, rows: list[Row], models: list[str], key: str, with_bad: bool) -> None:
    """One line per model over its clean points; bad points as crosses when ``with_bad``."""
    for model in models:
        color = COLORS.get(model, "black")
        good = _points(rows, model, key, clean=True)
        bad = _points(rows, model, key, clean=False) if with_bad else []
        if good:
            ax.plot(*zip(*good, strict=True), marker="o", color=color, linewidth=2, label=model)
        if bad:
            every = sorted(good + bad)
            ax.plot(*zip(*every, strict=True), color=color, linewidth=1, linestyle=":")
            xs, ys = [x for x, _ in bad], [y for _, y in bad]
            ax.scatter(xs, ys, marker="x", s=80, color=color, zorder=3)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(True, which="major", alpha=0.3)


def _log_y(ax: Axes) -> None:
    """Log scale with plain numbers (0.5, 2, 10), not powers of ten."""
    ax.set_yscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.tick_params(axis="y", which="minor", labelsize=7)


def _x_ticks(ax: Axes, rows: list[Row], label: str) -> None:
    ticks = sorted({r["connections"] for r in rows})
    if ticks:
        ax.set_xticks(ticks)
        ax.set_xlim(ticks[0] / 1.5, ticks[-1] * 1.5)
    ax.set_xlabel(label)


def _legend(fig: Figure, rows: list[Row], models: list[str]) -> None:
    """One legend for both panels, below them: a line per model and what a cross means."""
    handles = [
        Line2D([], [], color=COLORS.get(m, "black"), marker="o", linewidth=2, label=m)
        for m in models
        if any(r["model"] == m for r in rows)
    ]
    if any(r["status"] != "ok" for r in rows):
        handles.append(
            Line2D([], [], color="black", marker="x", linestyle="", label="timed out or errors")
        )
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)


def workload_chart(
    rows: list[Row], models: list[str], workload: dict[str, Any], path: Path
) -> bool:
    """Throughput and p99 against connections for one workload; False if nothing to plot."""
    mine = [r for r in rows if r["workload"] == workload["name"] and r["rps"] is not None]
    if not mine:
        return False
    unit = UNITS.get(workload["load"], "req/s")
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5.2), layout="constrained")
    _panel(left, mine, models, "rps", with_bad=True)
    left.set_ylim(bottom=0, top=max(r["rps"] for r in mine) * 1.1)
    left.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    left.set_ylabel(f"throughput ({unit})")
    left.set_title("throughput (higher is better)")
    _panel(right, mine, models, "p99_ms", with_bad=False)
    _log_y(right)
    right.set_ylabel("p99 latency (ms, log scale)")
    right.set_title("p99 latency of clean rows (lower is better)")
    for ax in (left, right):
        _x_ticks(ax, mine, "connections")
    _legend(fig, mine, models)
    fig.suptitle(f"{workload['name']}: {workload['summary']}", fontsize=13)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def idle_chart(rows: list[Row], models: list[str], path: Path) -> bool:
    """Memory the idle connections added, and one client's p99, against idle connections."""
    mine = [
        dict(r) for r in rows if r["workload"] == "idle" and r.get("mem_per_conn_kb") is not None
    ]
    if not mine:
        return False
    for r in mine:
        r["added_mb"] = r["mem_per_conn_kb"] * r["connections"] / 1024
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5.2), layout="constrained")
    _panel(left, mine, models, "added_mb", with_bad=True)
    left.set_ylabel("server memory added (MB)")
    left.set_title("memory the idle connections cost the server")
    _panel(right, mine, models, "p99_ms", with_bad=False)
    _log_y(right)
    right.set_ylabel("p99 latency (ms, log scale)")
    right.set_title("p99 of one client among them (lower is better)")
    for ax in (left, right):
        _x_ticks(ax, mine, "idle keep-alive connections")
    _legend(fig, mine, models)
    fig.suptitle("idle: keep-alive connections held open while one client measures", fontsize=13)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _bar_label(r: Row | None) -> str:
    if r is None:
        return "not run"
    if r["status"] != "ok" or r.get("mem_per_conn_kb") is None:
        return {"timeout": "timed out", "unavailable": "n/a"}.get(r["status"], str(r["status"]))
    threads = "1 thread" if r["threads"] == 1 else f"{r['threads']} threads"
    return f"{r['mem_per_conn_kb']:.1f} KiB\n{threads}"


def memory_chart(rows: list[Row], models: list[str], path: Path) -> bool:
    """KiB per idle connection for every model, at the most idle connections measured cleanly."""
    idle = [r for r in rows if r["workload"] == "idle"]
    clean = [r for r in idle if r["status"] == "ok" and r.get("mem_per_conn_kb") is not None]
    if not clean:
        return False
    top = max(r["connections"] for r in clean)
    at_top = {r["model"]: r for r in idle if r["connections"] == top}
    values = [
        max(0.0, r["mem_per_conn_kb"]) if r in clean else 0.0
        for r in (at_top.get(m, {"status": "-"}) for m in models)
    ]
    fig, ax = plt.subplots(figsize=(9, 4.8), layout="constrained")
    ax.bar(models, values, color=[COLORS.get(m, "black") for m in models])
    for i, model in enumerate(models):
        ax.annotate(
            _bar_label(at_top.get(model)), (i, values[i]), ha="center", va="bottom", fontsize=9
        )
    ax.set_ylabel("server memory per idle connection (KiB)")
    ax.set_ylim(0, max([*values, 1.0]) * 1.3)
    ax.set_title(f"memory per connection with {top} idle keep-alive connections (lower is better)")
    ax.grid(True, axis="y", alpha=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def draw_all(results: dict[str, Any], out: Path) -> dict[str, str]:
    """Every chart the results allow; returns chart name -> file name (relative to ``out``)."""
    rows, models = results["rows"], results["plan"]["models"]
    made: dict[str, str] = {}
    for w in results["plan"]["workloads"]:
        name = f"{w['name']}.png"
        drawn = (
            idle_chart(rows, models, out / name)
            if w["load"] == "idle"
            else workload_chart(rows, models, w, out / name)
        )
        if drawn:
            made[w["name"]] = name
    if memory_chart(rows, models, out / "memory.png"):
        made["memory"] = "memory.png"
    return made
