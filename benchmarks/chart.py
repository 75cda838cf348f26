"""Bar chart of benchmark ratios per workload, as a hand-written SVG (no plotting dependency).

    python benchmarks/chart.py benchmarks/results/*.json [--out benchmarks/results/ratios.svg]
        [--metric requests_per_s|p99_ms]

Reads run.py's result files and draws, for each suite, one group of bars per workload (and
--workers count), one bar per server: its median req/s (or p99) divided by the baseline's from
the same run, the only numbers that compare across runs and machines. A dashed line marks 1.0,
the baseline. A FAILED server gets an "x" at the foot of its slot instead of a bar. When several
files hold the same suite, workload and workers, the newest one is drawn.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from suites import BENCH_DIR
from workloads import WORKLOADS

METRICS = {
    "requests_per_s": "median req/s relative to the baseline (higher is better)",
    "p99_ms": "median p99 latency relative to the baseline (lower is better)",
}
# threadloom's rows in oranges, the peers' in other hues, so ours read at a glance.
OURS = ("#e6550d", "#fd8d3c", "#fdae6b", "#a63603")
PEERS = ("#3182bd", "#31a354", "#756bb1", "#6baed6", "#74c476", "#9e9ac8", "#636363", "#bcbd22")
BAR_W, BAR_GAP, GROUP_GAP = 20, 3, 28  # px
PLOT_H, LEFT, TOP = 220, 56, 44  # px: plot height, room for the y labels, room for the title
PANEL_H = TOP + PLOT_H + 62  # px: title, plot, captions and legend


@dataclass(frozen=True)
class Bar:
    """One server in one run: its ratio to the baseline, or why it has none."""

    server: str
    ratio: float | None
    failed: bool


@dataclass(frozen=True)
class Run:
    """One result file, reduced to what the chart shows."""

    suite: str
    workload: str
    workers: int
    baseline: str
    started_at: str
    bars: tuple[Bar, ...]

    @property
    def label(self) -> str:
        """The group's caption: the workload, and the worker count when it is not 1."""
        return self.workload if self.workers == 1 else f"{self.workload} x{self.workers}"


def load_run(path: Path, metric: str) -> Run:
    """Read one result file; files from before --workload are hello runs with one process."""
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    bars = tuple(
        Bar(srv["name"], srv["ratio_to_baseline"].get(metric), srv["status"] != "ok")
        for srv in doc["servers"]
    )
    return Run(
        doc["suite"],
        doc.get("workload", "hello"),
        int(doc.get("workers", 1)),
        doc["baseline"],
        doc.get("started_at", ""),
        bars,
    )


def newest_runs(runs: list[Run]) -> list[Run]:
    """One run per (suite, workload, workers), the newest, in workload order (then workers)."""
    newest: dict[tuple[str, str, int], Run] = {}
    for run in runs:
        key = (run.suite, run.workload, run.workers)
        if key not in newest or run.started_at > newest[key].started_at:
            newest[key] = run
    order = {name: i for i, name in enumerate(WORKLOADS)}
    return sorted(
        newest.values(), key=lambda r: (r.suite, order.get(r.workload, len(order)), r.workers)
    )


def _text(
    x: float,
    y: float,
    content: str,
    size: int = 11,
    anchor: str = "middle",
    style: str = "",
    title: str = "",
) -> str:
    """An SVG text element, with a hover title if given; strings from files are escaped."""
    hover = f"<title>{escape(title)}</title>" if title else ""
    return (f"<text x='{x:.1f}' y='{y:.1f}' font-size='{size}' text-anchor='{anchor}' "
            f"font-family='sans-serif' {style}>{hover}{escape(content)}</text>")  # fmt: skip


def _hline(x1: float, x2: float, y: float, style: str) -> str:
    """A horizontal line across the plot."""
    return f"<line x1='{x1:.1f}' x2='{x2:.1f}' y1='{y:.1f}' y2='{y:.1f}' {style}/>"


def _scale_top(runs: list[Run]) -> float:
    """The y-axis maximum: the largest ratio rounded up to a half, never below 1.5."""
    ratios = [bar.ratio for run in runs for bar in run.bars if bar.ratio is not None]
    return max(1.5, math.ceil(max(ratios, default=1.0) * 2) / 2)


def _group_width(run: Run) -> float:
    """Horizontal room for one run's bars, gap included."""
    return len(run.bars) * (BAR_W + BAR_GAP) + GROUP_GAP


def _legend_width(name: str) -> float:
    """Room for one legend entry: swatch, gap and a rough 7 px per character."""
    return 24 + 7 * len(name)


@dataclass
class Panel:
    """One suite's part of the chart, laid out from its top edge `y`."""

    suite: str
    runs: list[Run]
    y: float

    @property
    def top(self) -> float:
        """The y-axis maximum, as a ratio."""
        return _scale_top(self.runs)

    @property
    def y0(self) -> float:
        """The y coordinate of ratio 0."""
        return self.y + TOP + PLOT_H

    @property
    def servers(self) -> list[str]:
        """Every server drawn, in the order of first appearance."""
        return list(dict.fromkeys(bar.server for run in self.runs for bar in run.bars))

    @property
    def width(self) -> float:
        """The wider of the bars and the legend."""
        bars = LEFT + GROUP_GAP / 2 + sum(_group_width(run) for run in self.runs)
        return max(bars, LEFT + sum(_legend_width(name) for name in self.servers))

    def ratio_y(self, ratio: float) -> float:
        """The y coordinate of `ratio` (clipped to the axis)."""
        return self.y0 - min(ratio, self.top) / self.top * PLOT_H

    def draw(self, colors: dict[str, str]) -> list[str]:
        """Title, axis, one group of bars per run, legend."""
        baselines = " / ".join(sorted({run.baseline for run in self.runs}))
        parts = [_text(LEFT, self.y + 24, f"{self.suite} suite, x {baselines}", 14, "start",
                       "font-weight='bold'")]  # fmt: skip
        parts += self._axis()
        x = LEFT + GROUP_GAP / 2
        for run in self.runs:
            parts += self._group(run, x, colors)
            x += _group_width(run)
        return parts + self._legend(colors)

    def _axis(self) -> list[str]:
        """Gridlines and labels (every 0.5, or every 1 or 2 on a tall axis), and the dashed
        baseline at 1.0."""
        parts = []
        step = 0.5 if self.top <= 4 else 1.0 if self.top <= 8 else 2.0
        for i in range(math.floor(self.top / step) + 1):
            y = self.ratio_y(i * step)
            parts.append(_hline(LEFT, self.width, y, "stroke='#ddd'"))
            parts.append(_text(LEFT - 6, y + 4, f"{i * step:.1f}", anchor="end"))
        baseline = "stroke='#333' stroke-dasharray='5,4'"
        return [*parts, _hline(LEFT, self.width, self.ratio_y(1.0), baseline)]

    def _group(self, run: Run, x: float, colors: dict[str, str]) -> list[str]:
        """The bars of one run from `x`, each value above its bar, the caption below."""
        parts = []
        for i, bar in enumerate(run.bars):
            mid = x + i * (BAR_W + BAR_GAP) + BAR_W / 2
            if bar.ratio is None:
                what = "FAILED" if bar.failed else "no ratio"
                mark = "x" if bar.failed else "-"
                parts.append(_text(mid, self.y0 - 4, mark, 12, style="fill='#c00'",
                                   title=f"{bar.server}: {what}"))  # fmt: skip
                continue
            y = self.ratio_y(bar.ratio)
            parts.append(f"<rect x='{mid - BAR_W / 2:.1f}' y='{y:.1f}' width='{BAR_W}' "
                         f"height='{self.y0 - y:.1f}' fill='{colors[bar.server]}'><title>"
                         f"{escape(bar.server)}: {bar.ratio:.2f}</title></rect>")  # fmt: skip
            parts.append(_text(mid, y - 3, f"{bar.ratio:.2f}", 8))
        middle = x + (_group_width(run) - GROUP_GAP - BAR_GAP) / 2
        parts.append(_text(middle, self.y0 + 16, run.label, 12))
        if len({r.baseline for r in self.runs}) > 1:  # say which bar is 1.0 where it varies
            parts.append(_text(middle, self.y0 + 28, f"x {run.baseline}", 9))
        return parts

    def _legend(self, colors: dict[str, str]) -> list[str]:
        """Swatches with server names in a row under the bars."""
        parts, x, y = [], float(LEFT), self.y0 + 46
        for name in self.servers:
            parts.append(f"<rect x='{x:.1f}' y='{y - 10:.1f}' width='12' height='12' "
                         f"fill='{colors[name]}'/>")  # fmt: skip
            parts.append(_text(x + 16, y, name, anchor="start"))
            x += _legend_width(name)
        return parts


def server_colors(runs: list[Run]) -> dict[str, str]:
    """One colour per server across every panel: oranges for threadloom, others for peers."""
    servers = list(dict.fromkeys(bar.server for run in runs for bar in run.bars))
    ours = [name for name in servers if name.startswith("threadloom")]
    peers = [name for name in servers if name not in ours]
    colors = {name: OURS[i % len(OURS)] for i, name in enumerate(ours)}
    return colors | {name: PEERS[i % len(PEERS)] for i, name in enumerate(peers)}


def render(runs: list[Run], metric: str) -> str:
    """The whole SVG: a title, then one panel per suite, each server in one colour throughout."""
    colors = server_colors(runs)
    title = f"{METRICS[metric]}, within each run"
    parts = [_text(LEFT, 20, title, 13, "start")]
    y, width = 24.0, LEFT + 7.0 * len(title)
    for suite in sorted({run.suite for run in runs}):
        panel = Panel(suite, [run for run in runs if run.suite == suite], y)
        parts += panel.draw(colors)
        y, width = y + PANEL_H, max(width, panel.width)
    size = f"width='{width + 16:.0f}' height='{y + 8:.0f}'"
    return "\n".join([
        f"<svg xmlns='http://www.w3.org/2000/svg' {size}>",
        "<rect width='100%' height='100%' fill='white'/>",
        *parts,
        "</svg>",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Read the files, keep the newest run per group, write the SVG."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="run.py result JSON files")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "ratios.svg")
    parser.add_argument("--metric", choices=sorted(METRICS), default="requests_per_s")
    args = parser.parse_args(argv)
    runs = []
    for path in args.files:
        try:
            runs.append(load_run(path, args.metric))
        except (OSError, ValueError, KeyError) as exc:
            print(f"skipping {path}: {exc!r}", file=sys.stderr)
    if not runs:
        print("no result files could be read", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(newest_runs(runs), args.metric) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
