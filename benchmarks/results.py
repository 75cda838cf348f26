"""Summaries, the markdown table and the recorded context of a benchmark run.

Numbers from one machine mean little without that machine, the exact commands and the peer
versions, so the JSON carries all of them next to every raw round; the table only shows the
medians, their spread, and ratios to a baseline measured in the same run.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suites import PEERS_BIN, REPO_DIR, THREADLOOM_BIN, ServerSpec

#: What each round records that the summary gives as median, min and max.
SUMMARISED = ("requests_per_s", "p50_ms", "p90_ms", "p99_ms", "cpu_us_per_request", "peak_rss_kib")


@dataclass
class ServerRecord:
    """Everything measured for one server across the rounds; `failure` set means FAILED."""

    spec: ServerSpec
    rounds: list[dict[str, Any]] = field(default_factory=list)
    warmups: list[dict[str, Any]] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    failure: str | None = None
    failure_detail: str = ""

    def summary(self) -> dict[str, Any] | None:
        """Medians and min/max over the measured rounds, or None for a failed server (a failed
        round would bias any average, so a server is either fully measured or not at all)."""
        if self.failure is not None or not self.rounds:
            return None
        out: dict[str, Any] = {"rounds": len(self.rounds)}
        keys = (
            "requests_per_s",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "cpu_us_per_request",
            "peak_rss_kib",
        )
        for key in keys:
            values = [r[key] for r in self.rounds if r.get(key) is not None]
            if values:
                out[key] = _spread(values)
        out["log_tracebacks"] = sum(r.get("log_tracebacks", 0) for r in self.rounds)
        return out


def _spread(values: list[float]) -> dict[str, float]:
    """Median, min and max: the median resists one disturbed round, min-max shows the noise."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _cpu_model() -> str:
    """The CPU's marketing name; cores and clocks matter when comparing runs across machines."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _output(argv: list[str]) -> str:
    """stdout+stderr of a read-only helper command, or '' if it cannot run."""
    try:
        done = subprocess.run(
            argv, check=False, capture_output=True, text=True, timeout=30, cwd=REPO_DIR
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout + done.stderr).strip()


def machine_info() -> dict[str, Any]:
    """The machine and toolchain the numbers were taken on."""
    wrk_version = _output(["wrk", "-v"]).splitlines()
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "loadavg_at_start": os.getloadavg(),
        "wrk": wrk_version[0] if wrk_version else "unknown",
        "git_commit": _output(["git", "rev-parse", "HEAD"]),
        "git_dirty": bool(_output(["git", "status", "--porcelain", "--untracked-files=no"])),
    }


_VERSIONS_SCRIPT = """
import importlib.metadata as md, json, platform, sys
out = {"python": platform.python_version()}
for name in sys.argv[1:]:
    try:
        out[name] = md.version(name)
    except md.PackageNotFoundError:
        out[name] = None
print(json.dumps(out))
"""


def package_versions(specs: list[ServerSpec]) -> dict[str, dict[str, Any]]:
    """Versions of the servers under test, asked of the venv each one actually runs from."""
    wanted: dict[str, set[str]] = {"project": set(), "peers": set()}
    for spec in specs:
        wanted[spec.venv].update(spec.packages)
    bins = {"project": THREADLOOM_BIN, "peers": PEERS_BIN}
    found: dict[str, dict[str, Any]] = {}
    for venv, names in wanted.items():
        if not names:
            continue
        raw = _output([str(bins[venv] / "python"), "-c", _VERSIONS_SCRIPT, *sorted(names)])
        try:
            found[venv] = json.loads(raw.splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            found[venv] = {"error": raw[-500:]}
    return found


def _ratio(value: float | None, base: float | None) -> float | None:
    """value / base, or None when either side is missing."""
    if value is None or not base:
        return None
    return value / base


def ratios(records: list[ServerRecord], baseline: str) -> dict[str, dict[str, float | None]]:
    """Median req/s and median p99 of each server relative to the baseline's, same run only."""
    by_name = {rec.spec.name: rec.summary() for rec in records}
    base = by_name.get(baseline)
    out: dict[str, dict[str, float | None]] = {}
    for name, summ in by_name.items():
        out[name] = {
            key: _ratio(_median(summ, key), _median(base, key))
            for key in ("requests_per_s", "p99_ms", "cpu_us_per_request")
        }
    return out


def _median(summ: dict[str, Any] | None, key: str) -> float | None:
    """The median of ``key`` in a summary, None where it was not measured."""
    spread = summ.get(key) if summ else None
    return spread["median"] if spread else None


def _fmt_cpu(summ: dict[str, Any]) -> str:
    """Median server CPU time a request, in microseconds ('-' where not measured)."""
    cpu = summ.get("cpu_us_per_request")
    return "-" if cpu is None else f"{cpu['median']:.1f}"


def _fmt_rps(value: float) -> str:
    """req/s the way DESIGN.md quotes them: 12.8k."""
    return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"


def _fmt_mib(summ: dict[str, Any]) -> str:
    """Median peak RSS in MiB, or '-' where it could not be read."""
    rss = summ.get("peak_rss_kib")
    return "-" if rss is None else f"{rss['median'] / 1024:.0f}"


def markdown_table(records: list[ServerRecord], baseline: str) -> str:
    """The human summary: medians, spread, memory and the ratio to the baseline per server."""
    rel = ratios(records, baseline)
    lines = [
        f"| server | req/s (median) | req/s min-max | p99 ms (median) | p99 min-max "
        f"| p50 ms | CPU us/req | peak RSS MiB | x {baseline} | CPU x {baseline} | status |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for rec in records:
        summ = rec.summary()
        if summ is None:
            reason = (rec.failure or "not measured").replace("|", "/")
            lines.append(f"| {rec.spec.name} |{' - |' * 9} FAILED: {reason} |")
            continue
        rps, p99, p50 = summ["requests_per_s"], summ["p99_ms"], summ["p50_ms"]
        ratio = rel[rec.spec.name]["requests_per_s"]
        cpu_ratio = rel[rec.spec.name]["cpu_us_per_request"]
        status = f"ok ({summ['rounds']} rounds)"
        if summ["log_tracebacks"]:
            status += f", {summ['log_tracebacks']} tracebacks in its log"
        lines.append(
            f"| {rec.spec.name} | {_fmt_rps(rps['median'])} "
            f"| {_fmt_rps(rps['min'])}-{_fmt_rps(rps['max'])} | {p99['median']:.2f} "
            f"| {p99['min']:.2f}-{p99['max']:.2f} | {p50['median']:.2f} | {_fmt_cpu(summ)} "
            f"| {_fmt_mib(summ)} | {'n/a' if ratio is None else f'{ratio:.2f}x'} "
            f"| {'n/a' if cpu_ratio is None else f'{cpu_ratio:.2f}x'} | {status} |"
        )
    return "\n".join(lines)


def write_json(path: Path, meta: dict[str, Any], records: list[ServerRecord]) -> None:
    """Write the full record of the run: context, per-server raw rounds, summaries and ratios."""
    rel = ratios(records, meta["baseline"])
    servers = [
        {
            "name": rec.spec.name,
            "command_template": rec.spec.template(meta["app_module"], meta["workers"]),
            "commands": rec.commands,
            "status": "ok" if rec.summary() else "FAILED",
            "failure": rec.failure,
            "failure_detail": rec.failure_detail,
            "summary": rec.summary(),
            "ratio_to_baseline": rel[rec.spec.name],
            "warmups": rec.warmups,
            "rounds": rec.rounds,
        }
        for rec in records
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = dict(meta, servers=servers, argv=sys.argv)
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
