"""Run a fuzz target: coverage-guided with atheris, or as a plain replay of inputs.

    python tests/fuzz/runner.py http1                     # replay the built-in seeds
    python tests/fuzz/runner.py ws CASE_OR_DIR ...        # replay these inputs
    python tests/fuzz/runner.py http1 --export CORPUS      # write the seeds into CORPUS
    python tests/fuzz/runner.py http1 --atheris -max_total_time=600 -max_len=4096 CORPUS

Targets: ``http1`` (tests/fuzz/http1_target.py), ``http1c`` (the C request parser against
the Python path, tests/fuzz/http1c_target.py; ``make asan`` runs it under AddressSanitizer)
and ``ws`` (tests/fuzz/ws_target.py). With
``--atheris`` the other arguments are libFuzzer's (``-runs``, ``-max_total_time``,
``-max_len``, a corpus directory it grows and starts from, a crash file to reproduce);
only threadloom and the target are instrumented, so start-up takes a second, not a minute.
Without ``--atheris`` (or without atheris installed: it has wheels for Linux x86-64 only)
each argument is a file or a directory of files, and every input goes through the target
once: the replay CI runs on any Python, and how a crash file is reproduced.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
TARGETS = {
    "http1": "tests.fuzz.http1_target",
    "http1c": "tests.fuzz.http1c_target",
    "ws": "tests.fuzz.ws_target",
}


def replay(paths: list[str], target: ModuleType) -> int:
    """Pass every input (the target's seeds when no path is given) to it once."""
    inputs: list[bytes] = list(target.seeds()) if not paths else []
    for name in paths:
        path = Path(name)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        inputs += [p.read_bytes() for p in files]
    for data in inputs:
        target.one_input(data)
    return len(inputs)


def export(target: ModuleType, directory: Path) -> None:
    """Write the target's seeds as files, to start a fuzzing corpus from."""
    directory.mkdir(parents=True, exist_ok=True)
    for n, data in enumerate(target.seeds()):
        (directory / f"seed-{n:04d}").write_bytes(data)


def fuzz(module: str, args: list[str]) -> None:
    """Coverage-guided fuzzing; never returns (libFuzzer exits)."""
    import atheris  # optional: only fuzzing needs it

    with atheris.instrument_imports(include=["threadloom", "tests.fuzz"]):
        target = importlib.import_module(module)
    atheris.Setup(args, target.one_input)
    atheris.Fuzz()


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in TARGETS:
        raise SystemExit(f"usage: {argv[0]} {{{','.join(TARGETS)}}} [--atheris] [ARGS...]")
    sys.path.insert(0, str(ROOT))
    module, rest = TARGETS[argv[1]], argv[2:]
    if rest[:1] == ["--export"] and len(rest) == 2:
        export(importlib.import_module(module), Path(rest[1]))
        return
    if "--atheris" in rest:
        fuzz(module, [argv[0], *(a for a in rest if a != "--atheris")])
        return
    count = replay(rest, importlib.import_module(module))
    print(f"{argv[1]}: {count} inputs replayed, no failure")


if __name__ == "__main__":
    main(sys.argv)
