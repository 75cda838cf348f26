"""The workloads: what each server is asked to do, and how the harness knows it was done.

A workload names an app module per interface (``<stem>_wsgi`` / ``<stem>_asgi`` in
benchmarks/apps, each exporting ``app``), the request wrk sends (path, method, body via a wrk
script) and the answer the probe insists on before any load. Raw workloads put identical bytes
on the wire in both forms; framework workloads answer with the same JSON document, serialised
the framework's own way, so the probe compares the decoded document instead of the bytes.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from payloads import (
    FILE_NAME,
    HELLO,
    JSON_DOC,
    POST_BODY,
    TEXT_1K,
    TEXT_10K,
    file_bytes,
)
from suites import BENCH_DIR

APPS_DIR = BENCH_DIR / "apps"
REPORT_LUA = BENCH_DIR / "report.lua"
POST_LUA = BENCH_DIR / "post64k.lua"
DEFAULT_CONNECTIONS = 64


@dataclass(frozen=True)
class Workload:
    """One kind of request, served by the app module ``<stem>_<interface>`` of each interface."""

    name: str
    summary: str
    stem: str
    interfaces: tuple[str, ...]
    content_type: str
    body: bytes | None = None  # the exact response body, or None to compare `document`
    document: object = None  # the decoded JSON answer of framework apps
    path: str = "/"
    method: str = "GET"
    status: int = 200
    request_body: bytes = b""
    script: Path = REPORT_LUA  # wrk -s: sets the request (if not a GET) and reports
    connections: int = DEFAULT_CONNECTIONS  # wrk -c unless --connections says otherwise
    timeout_s: int = 2  # wrk --timeout: a response slower than this counts as an error

    def module(self, interface: str) -> str:
        """The module every server of `interface` imports ``app`` from."""
        return f"{self.stem}_{interface}"

    def answer_problem(self, status: int, content_type: str, body: bytes) -> str | None:
        """Why a response is not this workload's answer, or None when it is: a server must
        answer right before its speed means anything."""
        if status != self.status:
            return f"status {status}, expected {self.status}"
        if content_type.partition(";")[0].strip() != self.content_type:
            return f"Content-Type {content_type!r}, expected {self.content_type!r}"
        if self.body is not None and body != self.body:
            return f"body of {len(body)} bytes {body[:40]!r} differs from the expected one"
        if self.body is None and _decoded(body) != self.document:
            return f"JSON {body[:60]!r} is not the expected document"
        return None


_NOT_JSON = object()
_BOTH = ("wsgi", "asgi")


def _decoded(body: bytes) -> object:
    """The JSON value of `body`, or a marker that equals no document when it is not JSON."""
    try:
        return json.loads(body)
    except ValueError:
        return _NOT_JSON


def _plain(name: str, stem: str, body: bytes, summary: str) -> Workload:
    """A text/plain workload answering every GET with `body`."""
    return Workload(name, summary, stem, _BOTH, "text/plain", body=body)


def _framework(name: str, interfaces: tuple[str, ...], summary: str) -> Workload:
    """A framework app's ``GET /json``, answering JSON_DOC."""
    return Workload(
        name, summary, name, interfaces, "application/json", document=JSON_DOC, path="/json"
    )


WORKLOADS: dict[str, Workload] = {
    wl.name: wl
    for wl in (
        _plain("hello", "hello", HELLO, "13-byte text/plain: the server's own cost per request"),
        _plain("1k", "text1k", TEXT_1K, "1 KiB text/plain"),
        _plain("10k", "text10k", TEXT_10K, "10 KiB text/plain"),
        Workload(
            "json",
            "a small dict through the stdlib json module, per request",
            "json",
            _BOTH,
            "application/json",
            body=json.dumps(JSON_DOC).encode(),
        ),
        Workload(
            "post64k",
            "a 64 KiB POST body read whole and echoed back",
            "post64k",
            _BOTH,
            "application/octet-stream",
            body=POST_BODY,
            method="POST",
            request_body=POST_BODY,
            script=POST_LUA,
        ),
        Workload(
            "file1m",
            "a 1 MiB file: wsgi.file_wrapper / http.response.pathsend when offered",
            "file1m",
            _BOTH,
            "application/octet-stream",
            body=file_bytes(),
        ),
        Workload(
            "io",
            "10 ms of sleep per request (time.sleep / asyncio.sleep), 512 connections",
            "io",
            _BOTH,
            "text/plain",
            body=HELLO,
            connections=512,
            # A 4-thread server answers 400 req/s, so each of 512 connections waits ~1.3 s:
            # that queue is the result (p99), not an error, as wrk's default 2 s would call it.
            timeout_s=5,
        ),
        _framework("flask", ("wsgi",), "Flask, a /json route returning a dict"),
        _framework("django", _BOTH, "a single-file Django project, JsonResponse at /json"),
        _framework("starlette", ("asgi",), "Starlette, a /json route returning JSONResponse"),
        _framework("fastapi", ("asgi",), "FastAPI, a /json path operation returning a dict"),
    )
}


def write_apps(directory: Path) -> None:
    """Copy every app module, payloads.py and the 1 MiB file into `directory`, the cwd and
    PYTHONPATH of each server: a snapshot taken at start, so that a comparison never depends on
    checkout files that other work may change while it runs."""
    for source in sorted(APPS_DIR.glob("*.py")):
        shutil.copyfile(source, directory / source.name)
    shutil.copyfile(BENCH_DIR / "payloads.py", directory / "payloads.py")
    (directory / FILE_NAME).write_bytes(file_bytes())
