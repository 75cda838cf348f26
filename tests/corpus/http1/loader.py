"""Load the HTTP/1.1 request corpus, for the protocol core's tests and for live servers.

Each case is two files side by side: ``NAME.http`` holds the raw bytes exactly as a peer
sends them (real CRLFs, no trailing newline added), and ``NAME.expect`` holds, on its first
line, the status a server must answer before closing (``400``, ``413``, ``414``, ``431``,
``501``, ``505``) or ``-`` for a valid case; the lines after it say why, for humans.
Replay a case by sending the bytes, then closing the write side (EOF): ``eof_mid_head``
only fails at EOF.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).parent


def load_cases(kind: str) -> list[tuple[str, bytes, int | None]]:
    """``(name, raw_bytes, expected_status)`` for every case of ``kind`` ("valid"/"invalid")."""
    if kind not in ("valid", "invalid"):
        raise ValueError(f"kind must be 'valid' or 'invalid', not {kind!r}")
    cases = []
    for http in sorted((ROOT / kind).glob("*.http")):
        first = http.with_suffix(".expect").read_text(encoding="ascii").splitlines()[0].strip()
        status = None if first == "-" else int(first)
        if (status is None) != (kind == "valid"):
            raise ValueError(f"{http.name}: expectation {first!r} does not fit {kind}/")
        cases.append((http.stem, http.read_bytes(), status))
    return cases


def describe(kind: str, name: str) -> str:
    """The human explanation of one case (the ``.expect`` lines after the first)."""
    lines = (ROOT / kind / f"{name}.expect").read_text(encoding="ascii").splitlines()
    return " ".join(line.strip() for line in lines[1:])
