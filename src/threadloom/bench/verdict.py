"""Verdicts: which model to pick for each workload, derived from the figures alone.

Nothing here knows what a workload is "supposed" to favour. For a loaded workload the verdict
looks at the highest connection count that has a clean figure, picks the model with the most
throughput (models within ``TIE`` of it share the pick, ordered by p99), and places every
other model by its share of the winner's throughput: ``far behind`` below ``FAR``, ``behind``
below ``BEHIND``. A model whose row is not clean (it timed out or errored) is never picked
and is named with what went wrong; one that failed is sent to the notes. How throughput
moved from the fewest to the most connections is then put in words, because that is the
"why" a reader needs: work that waits scales with connections on a model that overlaps
waits; work that needs the CPU does not. For ``idle`` the pick is the model with the least
memory per connection that still answered its one client, and the words are about what each
connection costs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TIE = 0.90  # within 10% of the best: a tie, not a loss
BEHIND = 0.67
FAR = 0.20  # five times less or worse
UNITS = {"ws": "msg/s", "raw": "exchanges/s"}

Row = dict[str, Any]


@dataclass
class Verdict:
    """One workload's verdict, as data (for results.json and tests) and as words."""

    workload: str
    pick: list[str] = field(default_factory=list)
    connections: int | None = None
    behind: list[str] = field(default_factory=list)
    far_behind: list[str] = field(default_factory=list)
    not_clean: dict[str, str] = field(default_factory=dict)
    text: str = ""

    def as_dict(self) -> dict[str, Any]:
        """For results.json."""
        return {
            "pick": self.pick,
            "connections": self.connections,
            "behind": self.behind,
            "far_behind": self.far_behind,
            "not_clean": self.not_clean,
            "text": self.text,
        }


def fmt_rate(value: float | None) -> str:
    """12,345 -> '12.3k'; small rates keep their digits."""
    if value is None:
        return "-"
    if value >= 10_000:
        return f"{value / 1000:.1f}k"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}"


def fmt_ms(value: float | None) -> str:
    """Milliseconds with sensible precision."""
    if value is None:
        return "-"
    return f"{value:.2f} ms" if value < 10 else f"{value:.0f} ms"


def decide(workload: str, load: str, rows: list[Row]) -> Verdict:
    """The verdict for one workload from its rows (every model, every connection count)."""
    mine = [r for r in rows if r["workload"] == workload]
    if load == "idle":
        return _decide_idle(workload, mine)
    return _decide_loaded(workload, UNITS.get(load, "req/s"), mine)


def _at(rows: list[Row], connections: int) -> list[Row]:
    return [r for r in rows if r["connections"] == connections]


def _clean(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r["status"] == "ok" and r["rps"]]


def _top_connections(rows: list[Row]) -> int | None:
    """The most connections at which at least one model has a clean figure."""
    counts = sorted({r["connections"] for r in _clean(rows)})
    return counts[-1] if counts else None


def _decide_loaded(workload: str, unit: str, rows: list[Row]) -> Verdict:
    verdict = Verdict(workload)
    top = _top_connections(rows)
    if top is None:
        verdict.text = "No model produced a clean figure for this workload; nothing to pick."
        return verdict
    here = _at(rows, top)
    clean = sorted(_clean(here), key=lambda r: -r["rps"])
    best = clean[0]
    tied = [r for r in clean if r["rps"] >= TIE * best["rps"]]
    tied.sort(key=lambda r: r["p99_ms"] if r["p99_ms"] is not None else float("inf"))
    verdict.pick = [r["model"] for r in tied]
    verdict.connections = top
    sentences = [_pick_sentence(tied, top, unit)]
    for r in here:
        if r in tied or r["status"] == "unavailable":
            continue
        sentences.append(_place(verdict, r, best, unit))
    sentences.append(_scaling(rows, tied[0], top, unit))
    if best.get("client_bound"):
        sentences.append(
            f"{best['model']} reached the load generator's ceiling, so it may be faster "
            "than this figure says."
        )
    verdict.text = " ".join(s for s in sentences if s)
    return verdict


def _pick_sentence(tied: list[Row], top: int, unit: str) -> str:
    first = tied[0]
    head = f"**Pick {first['model']}**"
    if len(tied) > 1:
        others = ", ".join(r["model"] for r in tied[1:])
        head += f" ({others} within {round((1 - TIE) * 100)}%, with a higher p99)"
    figures = "; ".join(
        f"{r['model']} {fmt_rate(r['rps'])} {unit}, p99 {fmt_ms(r['p99_ms'])}" for r in tied
    )
    return f"{head}: at {top} connections, {figures}."


def _place(verdict: Verdict, r: Row, best: Row, unit: str) -> str:
    """Where one non-picked model stands against the best, recorded and in words."""
    model = r["model"]
    if r["status"] == "failed" or r["rps"] is None:
        verdict.not_clean[model] = r["status"]
        return f"{model} could not be measured ({r['status']}; see below)."
    share = r["rps"] / best["rps"]
    if share >= 0.5:
        times = f"{share:.0%} of {best['model']}"
    else:
        times = f"{best['rps'] / r['rps']:.0f}x less" if r["rps"] else "nothing"
    figure = f"{fmt_rate(r['rps'])} {unit} ({times})"
    trouble = ""
    if r["status"] != "ok":
        verdict.not_clean[model] = r["status"]
        trouble = f", and it {_did(r)}: {_why(r)}"
    if share < FAR:
        verdict.far_behind.append(model)
        return f"{model} is far behind: {figure}{trouble}."
    if trouble:
        return f"{model} {_did(r)}: {_why(r)}. It is not ranked ({fmt_rate(r['rps'])} {unit})."
    if share < BEHIND:
        verdict.behind.append(model)
        return f"{model} is behind: {figure}."
    return f"{model} is close: {figure}."


def _did(r: Row) -> str:
    return {"timeout": "timed out", "errors": "had errors"}.get(r["status"], str(r["status"]))


def _why(r: Row) -> str:
    return str(r.get("note") or r["status"])


def _scaling(rows: list[Row], winner: Row, top: int, unit: str) -> str:
    """How the winner's throughput moved from the fewest connections to the most."""
    mine = sorted(
        (r for r in _clean(rows) if r["model"] == winner["model"]), key=lambda r: r["connections"]
    )
    if len(mine) < 2 or mine[0]["connections"] == top:
        return ""
    low, high = mine[0], mine[-1]
    growth = high["rps"] / low["rps"]
    span = f"from {low['connections']} to {high['connections']} connections"
    if growth >= 3:
        return (
            f"Its throughput grew {growth:.0f}x {span}: each request mostly waits, and "
            f"{winner['model']} lets the others run meanwhile."
        )
    if growth < 1.3:
        p99 = f"p99 went from {fmt_ms(low['p99_ms'])} to {fmt_ms(high['p99_ms'])}"
        return (
            f"Throughput stayed flat {span} ({p99}): the work needs the CPU, so extra "
            "connections only queue."
        )
    return f"Its throughput grew {growth:.1f}x {span}."


def _decide_idle(workload: str, rows: list[Row]) -> Verdict:
    verdict = Verdict(workload)
    top = _top_connections(rows)
    if top is None:
        verdict.text = "No model answered its client while holding idle connections."
        return verdict
    here = _at(rows, top)
    clean = [r for r in _clean(here) if r.get("mem_per_conn_kb") is not None]
    clean.sort(key=lambda r: r["mem_per_conn_kb"])
    verdict.connections = top
    if not clean:
        verdict.text = "No clean memory figure; nothing to pick."
        return verdict
    best = clean[0]
    verdict.pick = [best["model"]]
    costs = "; ".join(
        f"{r['model']} {r['mem_per_conn_kb']:.1f} KiB per connection "
        f"({_threads(r['threads'])}), p99 {fmt_ms(r['p99_ms'])}"
        for r in clean
    )
    sentences = [f"**Pick {best['model']}**: with {top} idle connections held open, {costs}."]
    for r in here:
        if r["status"] not in ("ok", "unavailable"):
            verdict.not_clean[r["model"]] = r["status"]
            verdict.far_behind.append(r["model"])
            sentences.append(f"{r['model']} {_did(r)}: {_why(r)}.")
    verdict.text = " ".join(sentences)
    return verdict


def _threads(n: int | None) -> str:
    if n is None:
        return "threads unknown"
    return "1 thread" if n == 1 else f"{n} threads"
