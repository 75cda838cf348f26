"""Load the HTTP/1.1 request corpus, for the protocol core's tests and for live servers.

Each case is two files side by side (a valid one has a third, below): ``NAME.http`` holds
the raw bytes exactly as a peer sends them (real CRLFs, no trailing newline added), and
``NAME.expect`` holds, on its first line, the status a server must answer before closing
(``400``, ``413``, ``414``, ``431``, ``501``, ``505``) or ``-`` for a valid case; the lines
after it say why, for humans.
Replay a case by sending the bytes, then closing the write side (EOF): ``eof_mid_head``
only fails at EOF.

A valid case also has ``NAME.parse.toml``: what parsing it must give, written from RFC 9112
(a comment at the top names the rule), so that a mis-parse both parsers share still fails.
One ``[[request]]`` table per request parsed, in order: ``method``, ``target``, ``version``,
``headers`` (``[name, value]`` pairs in the order received, names lower-cased, values
without their surrounding OWS, trailer fields not among them) and ``body`` (after
de-chunking); ``trailing_data`` (optional, before the tables) is what an upgrade leaves for
the next protocol. Byte strings are TOML literal strings read with Python's escapes
(``'caf\\xe9'``, ``'a\\tb'``), so any byte can be written and the file stays ASCII.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Parsed:
    """One request as the parser must hand it to the engine."""

    method: str
    target: bytes
    version: str
    headers: list[tuple[bytes, bytes]]
    body: bytes


def expected_parse(name: str) -> tuple[list[Parsed], bytes]:
    """The requests a valid case parses to, and the ``trailing_data`` it leaves."""
    text = (ROOT / "valid" / f"{name}.parse.toml").read_text(encoding="ascii")
    data = tomllib.loads(text)
    requests = [
        Parsed(
            method=table["method"],
            target=_bytes(table["target"]),
            version=table["version"],
            headers=[(_bytes(n), _bytes(v)) for n, v in table["headers"]],
            body=_bytes(table["body"]),
        )
        for table in data["request"]
    ]
    return requests, _bytes(data.get("trailing_data", ""))


def _bytes(escaped: str) -> bytes:
    """``'caf\\xe9'`` (as written in the file) to ``b'caf\\xe9'``."""
    return escaped.encode("ascii").decode("unicode_escape").encode("latin-1")
