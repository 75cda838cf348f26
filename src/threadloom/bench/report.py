"""What a run leaves behind: ``results.json``, ``report.md``, and the terminal table.

``results.json`` is the record: the machine, the generator and its ceiling, the plan, every row
with every round, and the verdicts as data. ``report.md`` is for people: the tutorial's
comparison table rebuilt from the figures, then one section per workload with its verdict, its
table and its chart. Every figure in the report is read from the rows; no sentence is fixed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from threadloom.bench.plan import WORKERS
from threadloom.bench.verdict import UNITS, fmt_ms, fmt_rate

Results = dict[str, Any]
Row = dict[str, Any]

TUTORIAL_CLAIMS = (
    "The tutorial's table says multi-threading has *Moderate* performance, is *Limited by "
    "threads* and is best for *I/O bound tasks*, while asyncio is *High (Efficient)*, *Handles "
    "thousands of tasks* and is best for *I/O bound with high scalability*. Here are the same "
    "rows with figures from this machine instead of adjectives."
)
SHORT_STATUS = {"timeout": "timed out", "errors": "errors", "failed": "failed"}


def write_json(results: Results, out: Path) -> Path:
    """``results.json``: the full record."""
    path = out / "results.json"
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return path


def cell(row: Row | None) -> str:
    """One table cell: throughput and p99, or what went wrong."""
    if row is None:
        return ""
    status = row["status"]
    if status == "unavailable":
        return "n/a"
    if status == "failed" or row["rps"] is None:
        return "failed"
    mark = "†" if row.get("client_bound") else ""
    if row["workload"] == "idle":
        text = f"p99 {fmt_ms(row['p99_ms'])}"
    else:
        text = f"{fmt_rate(row['rps'])}{mark} · {fmt_ms(row['p99_ms'])}"
    if status != "ok":
        text += f" · {SHORT_STATUS.get(status, status)}"
    return text


def pivot(results: Results, workload: str) -> tuple[list[str], list[list[str]]]:
    """A workload's rows as a table: one line per model, one column per connection count."""
    plan = results["plan"]
    headers = ["model", *(f"{c} conn" for c in plan["connections"])]
    index = {
        (r["model"], r["connections"]): r for r in results["rows"] if r["workload"] == workload
    }
    lines = [
        [model, *(cell(index.get((model, c))) for c in plan["connections"])]
        for model in plan["models"]
    ]
    return headers, lines


def markdown_table(headers: list[str], lines: list[list[str]]) -> str:
    """A GitHub-flavoured markdown table."""
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(out)


def _best_row(results: Results, workload: str, model: str) -> Row | None:
    """A model's row at the connection count its workload's verdict looked at."""
    verdict = results["verdicts"].get(workload, {})
    target = verdict.get("connections") or max(results["plan"]["connections"])
    rows: list[Row] = results["rows"]
    for r in rows:
        if (r["workload"], r["model"], r["connections"]) == (workload, model, target):
            return r
    return None


def tutorial_table(results: Results) -> str:
    """The tutorial's comparison table, one column per model, every cell a measurement."""
    models = results["plan"]["models"]
    loads = {w["name"]: w for w in results["plan"]["workloads"]}
    lines: list[list[str]] = []
    for name, w in loads.items():
        if w["load"] == "idle":
            continue
        at = results["verdicts"].get(name, {}).get("connections")
        unit = UNITS.get(w["load"], "req/s")
        label = f"Performance: {name} ({unit} · p99{f', {at} conn' if at else ''})"
        lines.append([label, *(cell(_best_row(results, name, m)) for m in models)])
    if "idle" in loads:
        lines += _idle_lines(results, models)
    picks: dict[str, list[str]] = {m: [] for m in models}
    for name, verdict in results["verdicts"].items():
        for model in verdict.get("pick", [])[:1]:
            picks.setdefault(model, []).append(name)
    lines.append(["Best for (measured)", *(", ".join(picks.get(m, [])) or "-" for m in models)])
    lines.append(
        [
            "Complexity",
            *("same handler, one flag" if m != WORKERS else "+ --workers" for m in models),
        ]
    )
    return markdown_table(["", *models], lines)


def _idle_lines(results: Results, models: list[str]) -> list[list[str]]:
    verdict = results["verdicts"].get("idle", {})
    at = verdict.get("connections")
    rows = [_best_row(results, "idle", m) for m in models]
    held = [cell(r) if r else "" for r in rows]
    memory = [
        f"{r['mem_per_conn_kb']:.1f} KiB"
        if r and r["status"] == "ok" and r.get("mem_per_conn_kb") is not None
        else SHORT_STATUS.get(r["status"], "n/a")
        if r
        else ""
        for r in rows
    ]
    threads = [str(r["threads"]) if r and r.get("threads") is not None else "-" for r in rows]
    return [
        [f"Concurrency: one client among {at} idle connections", *held],
        ["Memory per idle connection", *memory],
        [f"Server threads with {at} idle connections", *threads],
    ]


def machine_lines(results: Results) -> list[str]:
    """Where the figures come from, in a few lines."""
    m, g, p = results["machine"], results["generator"], results["plan"]
    ceiling = g.get("ceiling", {})
    names = {"http": "HTTP", "ws": "WebSocket"}
    ceilings = ", ".join(
        f"{names.get(kind, kind)} {fmt_rate(v)} {UNITS.get(kind, 'req/s')}"
        for kind, v in ceiling.items()
    )
    lines = [
        f"- Machine: {m['cpu']}, {m['cores']} cores; {m['python']} (GIL {m['gil']}); {m['os']}; "
        f"threadloom {m['threadloom']}.",
        f"- Load: {g['http']} for HTTP, {g['other']} for WebSocket and idle; {m['pinning']}.",
        f"- Method: {p['warmup_s']:g} s warm-up, then {p['rounds']} rounds of "
        f"{p['duration_s']:g} s per cell; figures are medians of the rounds. A row timed out "
        f"when requests waited over {p['timeout_s']:g} s or connections got no answer within "
        f"{p['timeout_s']:g} s while others did (the warm-up, by the built-in client, watches "
        "for that even when wrk measures). A row that timed out or errored is shown as such, "
        "with the median of its bad rounds, and never ranked.",
    ]
    lines.append(
        f"- Servers: `threadloom serve APP --model M` with its defaults (`--threads "
        f"{p.get('threads', 10)}` for pool, and for asyncio's pool for sync code); `workers` is "
        f"`--model pool --workers {p.get('workers', 2)}`."
    )
    if ceilings:
        lines.append(
            f"- Ceiling of the measurement: the same load against a do-nothing responder on the "
            f"server's CPU, {g['ceiling_connections']} connections: {ceilings}. Figures marked † "
            "reached 80% of it: there the load generator, not the server, may be the limit."
        )
    if p.get("cpu_loops"):
        lines.append(f"- `cpu` spins {p['cpu_loops']:,} loop iterations (about 1 ms here).")
    return lines


def render_markdown(results: Results, charts: dict[str, str]) -> str:
    """The whole ``report.md``."""
    out = ["# threadloom bench", "", *machine_lines(results), ""]
    out += ["## The tutorial's table, measured", "", TUTORIAL_CLAIMS, "", tutorial_table(results)]
    out += ["", "Cells: throughput · p99 latency at the connection count of the verdict.", ""]
    for w in results["plan"]["workloads"]:
        name = w["name"]
        out += [f"## {name}: {w['summary']}", ""]
        verdict = results["verdicts"].get(name)
        if verdict:
            out += [verdict["text"], ""]
        out += [markdown_table(*pivot(results, name)), ""]
        if name in charts:
            out += [f"![{name}]({charts[name]})", ""]
    if "memory" in charts:
        out += ["## Memory per connection", "", f"![memory]({charts['memory']})", ""]
    out += _notes(results)
    return "\n".join(out).rstrip() + "\n"


def _notes(results: Results) -> list[str]:
    """Why some cells have no figure: unavailable and failed rows, one line per reason."""
    seen: dict[tuple[str, str, str], None] = {}
    for r in results["rows"]:
        if r["status"] in ("unavailable", "failed"):
            seen[(r["workload"], r["model"], f"{r['status']}: {r['note']}")] = None
    if not seen:
        return []
    lines = ["## Not measured", ""]
    lines += [f"- {w} · {m}: {why}" for (w, m, why) in seen]
    return [*lines, ""]


def write_markdown(results: Results, out: Path, charts: dict[str, str]) -> Path:
    """``report.md``."""
    path = out / "report.md"
    path.write_text(render_markdown(results, charts), encoding="utf-8")
    return path
