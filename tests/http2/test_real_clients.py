"""Real HTTP/2 peers against threadloom, under every model: what users will point at it.

* curl, by prior knowledge and over TLS (ALPN), ``%{http_version}`` says ``2``;
* nghttp: several streams on one connection, whose timings show they ran at the same time
  (one after another under ``single``);
* h2load: 2000 requests, 4 connections, 10 streams each, not one failed;
* httpx with HTTP/2, over TLS with a trustme CA and by prior knowledge;
* HAProxy (``server ... proto h2``) in front, spoken to over HTTP/1.1 and HTTP/2: threadloom
  sees HTTP/2 from it (the access log and the app say so);
* headless Chromium over TLS on the demo page (``test_chromium_loads_the_demo_over_h2``).

Each tool goes through ``need_tool`` (skipped without it, a failure under
``THREADLOOM_REQUIRE_TOOLS=1``; ``.ci/run`` installs them). Every tool runs under a timeout
and every process a test starts is ended, whatever the outcome.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import trustme

from tests.cli.test_cli import free_port, threadloom
from tests.conftest import need_tool
from tests.demo.test_demo_browser import DevTools, chromium
from tests.demo.test_demo_command import stop, wait_for_banner
from tests.http2.apps import BIG, SLEEP_S
from tests.http2.test_h2_basic import CASES, CONCURRENT, _id, certificate, serving
from threadloom.testing import MODELS, timeout_factor

__all__ = ["certificate", "chromium"]  # fixtures, shared with test_h2_basic and tests/demo

UPLOAD = bytes(range(256)) * 1200  # 300 KiB: more than the 64 KiB window, both ways


def run(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """A tool, to its end; killed (and the test failed) if it outlives ``timeout``."""
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=timeout * timeout_factor(),
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.fixture
def tls(certificate: tuple[str, str, trustme.CA], tmp_path: Path) -> dict[str, str]:
    """The server's certificate and key, and the CA that signed them in a file for tools."""
    certfile, keyfile, ca = certificate
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    return {"certfile": certfile, "keyfile": keyfile, "cafile": str(cafile)}


def url(address: tuple[str, int], path: str = "/", scheme: str = "http") -> str:
    host, port = address
    return f"{scheme}://{host}:{port}{path}"


# -- curl --------------------------------------------------------------------------------------


def curl(*args: str) -> tuple[bytes, str]:
    """curl's body and ``%{http_version}`` (the protocol it spoke)."""
    done = run(need_tool("curl"), "-sS", "--max-time", "20", "-w", "\n%{http_version}", *args)
    assert done.returncode == 0, done.stderr
    body, _, version = done.stdout.rpartition("\n")
    return body.encode("latin-1"), version


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_curl_by_prior_knowledge(case: tuple[str, str], tmp_path: Path) -> None:
    upload = tmp_path / "upload"
    upload.write_bytes(UPLOAD)
    with serving(*case) as address:
        assert curl("--http2-prior-knowledge", url(address)) == (b"HTTP/2", "2")
        echoed = tmp_path / "echoed"
        _, version = curl(
            "--http2-prior-knowledge",
            "--data-binary",
            f"@{upload}",
            "-o",
            str(echoed),
            url(address, "/echo"),
        )
        assert version == "2" and echoed.read_bytes() == UPLOAD


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_curl_over_tls_chooses_h2_by_alpn(case: tuple[str, str], tls: dict[str, str]) -> None:
    with serving(*case, certfile=tls["certfile"], keyfile=tls["keyfile"]) as address:
        cafile = tls["cafile"]
        assert curl("--http2", "--cacert", cafile, url(address, scheme="https")) == (
            b"HTTP/2",
            "2",
        )
        # a curl that offers only http/1.1 is still served, over HTTP/1.1
        assert curl("--http1.1", "--cacert", cafile, url(address, scheme="https")) == (
            b"HTTP/1.1",
            "1.1",
        )


# -- nghttp ------------------------------------------------------------------------------------

#: ``nghttp -v``'s frame lines: ``[  0.503] recv DATA frame <length=6, flags=0x01, stream_id=13>``
FRAME = re.compile(r"^\[\s*([\d.]+)\] (send|recv) (\w+) frame <length=\d+, flags=0x(\w+)")


def stream_ends(trace: str) -> list[float]:
    """When each response ended (seconds from the start), from ``nghttp -v``'s trace."""
    ends = []
    for line in trace.splitlines():
        match = FRAME.match(line)
        if (
            match
            and match[2] == "recv"
            and match[3] in ("DATA", "HEADERS")
            and int(match[4], 16) & 0x1  # END_STREAM
        ):
            ends.append(float(match[1]))
    return ends


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_nghttp_streams_of_one_connection(case: tuple[str, str]) -> None:
    """nghttp sends five requests at once on its one connection (it asks for each URI once,
    hence the query strings); the app sleeps 0.5 s in each."""
    nghttp = need_tool("nghttp")
    with serving(*case, threads=10) as address:
        done = run(nghttp, "-nv", "-t", "20", *(url(address, f"/sleep?{i}") for i in range(5)))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    trace = done.stdout
    assert len(re.findall(r"recv SETTINGS frame <length=\d+, flags=0x00", trace)) == 1
    assert trace.count("send HEADERS frame") == 5  # five streams, one connection
    assert trace.count(":status: 200") == 5
    ends = stream_ends(trace)
    assert len(ends) == 5
    if case[0] == "single":  # one stream after another
        assert ends[-1] >= 5 * SLEEP_S * 0.9, ends
    else:  # all at once: about one sleep for the five
        assert ends[-1] < 3 * SLEEP_S * timeout_factor(), ends


# -- h2load ------------------------------------------------------------------------------------


def h2load(target: str, *extra: str) -> str:
    """``h2load -n 2000 -c 4 -m 10``; its report, once it says not one request failed."""
    done = run(
        need_tool("h2load"),
        "-n",
        "2000",
        "-c",
        "4",
        "-m",
        "10",
        "-N",
        "20",  # a connection silent for 20 s is given up (a failure, not a hang)
        *extra,
        target,
        timeout=120,
    )
    report = done.stdout
    assert done.returncode == 0, report + done.stderr
    assert "requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed" in report, (
        report
    )
    assert "status codes: 2000 2xx" in report, report
    return report


@pytest.mark.parametrize("case", CASES, ids=_id)
@pytest.mark.parametrize("transport", ["h2c", "tls"])
def test_h2load_not_one_request_fails(
    case: tuple[str, str], transport: str, tls: dict[str, str]
) -> None:
    options = {"certfile": tls["certfile"], "keyfile": tls["keyfile"]} if transport == "tls" else {}
    with serving(*case, **options) as address:
        scheme = "https" if transport == "tls" else "http"
        report = h2load(url(address, scheme=scheme))
    assert f"Application protocol: {'h2' if transport == 'tls' else 'h2c'}\n" in report


# -- httpx -------------------------------------------------------------------------------------


def check_httpx(client: httpx.Client, base: str) -> None:
    hello = client.get(base + "/")
    assert hello.http_version == "HTTP/2" and hello.text == "HTTP/2"
    echo = client.post(base + "/echo", content=UPLOAD)
    assert echo.status_code == 200 and echo.content == UPLOAD
    big = client.get(base + "/big")
    assert big.http_version == "HTTP/2" and big.content == BIG
    assert client.get(base + "/fail").status_code == 500


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_httpx_over_tls(case: tuple[str, str], tls: dict[str, str]) -> None:
    context = ssl.create_default_context(cafile=tls["cafile"])
    with (
        serving(*case, certfile=tls["certfile"], keyfile=tls["keyfile"]) as address,
        httpx.Client(http2=True, verify=context, timeout=20 * timeout_factor()) as client,
    ):
        check_httpx(client, url(address, "", scheme="https"))


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_httpx_by_prior_knowledge(case: tuple[str, str]) -> None:
    transport = httpx.HTTPTransport(http1=False, http2=True)
    with (
        serving(*case) as address,
        httpx.Client(transport=transport, timeout=20 * timeout_factor()) as client,
    ):
        check_httpx(client, url(address, ""))


@pytest.mark.parametrize("case", CONCURRENT, ids=_id)
def test_httpx_async_streams_of_one_connection_run_at_the_same_time(
    case: tuple[str, str], tls: dict[str, str]
) -> None:
    context = ssl.create_default_context(cafile=tls["cafile"])

    async def ten_at_once(base: str) -> tuple[list[httpx.Response], float]:
        async with httpx.AsyncClient(
            http2=True, verify=context, timeout=20 * timeout_factor()
        ) as client:
            began = time.monotonic()
            answers = await asyncio.gather(*(client.get(base + "/sleep") for _ in range(10)))
            return answers, time.monotonic() - began

    with serving(*case, threads=10, certfile=tls["certfile"], keyfile=tls["keyfile"]) as address:
        answers, took = asyncio.run(ten_at_once(url(address, "", scheme="https")))
    assert [(a.status_code, a.http_version) for a in answers] == [(200, "HTTP/2")] * 10
    assert took < 3 * SLEEP_S * timeout_factor(), f"10 streams took {took:.2f} s"


# -- HAProxy in front, speaking h2 to threadloom -----------------------------------------------

#: HAProxy's configuration: HTTP/1.1 or HTTP/2 (prior knowledge) from clients, HTTP/2 to
#: threadloom; ``http-reuse always`` lets the streams of every client share one upstream
#: connection (the point of h2 upstream, and what ``single`` can serve).
HAPROXY = """
global
    log stderr format short local0 warning
defaults
    mode http
    log global
    timeout connect 10s
    timeout client 30s
    timeout server 30s
frontend front
    bind fd@{fd}
    default_backend threadloom
backend threadloom
    http-reuse always
    server s1 127.0.0.1:{backend} proto h2
"""


@contextmanager
def haproxy_in_front(backend: int, prefix: Path) -> Iterator[tuple[str, int]]:
    """HAProxy in the foreground on a loopback port we bound: it inherits the listening
    socket (``bind fd@N``), so requests wait in the backlog until it is ready, and the test
    never polls. Ended when the block ends, whatever happened."""
    binary = need_tool("haproxy")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    address = listener.getsockname()
    conf = prefix / "haproxy.cfg"
    conf.write_text(HAPROXY.format(fd=listener.fileno(), backend=backend))
    with open(prefix / "haproxy.log", "wb") as log:  # its warnings, for a failing test
        proc = subprocess.Popen(
            [binary, "-db", "-f", str(conf)],
            pass_fds=(listener.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    listener.close()  # HAProxy has its own copies now
    try:
        yield address
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10 * timeout_factor())
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_haproxy_in_front_speaks_h2_to_threadloom(
    case: tuple[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="threadloom.access")
    upload = tmp_path / "upload"
    upload.write_bytes(UPLOAD)
    # HAProxy may open a second upstream connection under load, which ``single`` serves
    # only once the first has been idle for --timeout-keep-alive (5 s by default): made
    # 1 s here so the test stays short; none of its requests fails either way
    with (
        serving(*case, access_log=True, timeout_keep_alive=1.0) as backend,
        haproxy_in_front(backend[1], tmp_path) as address,
    ):
        # the client speaks HTTP/1.1 to HAProxy; the app says what it was spoken to in
        assert curl("--http1.1", url(address)) == (b"HTTP/2", "1.1")
        echoed = tmp_path / "echoed"
        curl("--http1.1", "--data-binary", f"@{upload}", "-o", str(echoed), url(address, "/echo"))
        assert echoed.read_bytes() == UPLOAD
        h2load(url(address))
    lines = [r.getMessage() for r in caplog.records if r.name == "threadloom.access"]
    assert len(lines) == 2002, (len(lines), lines[:3])
    assert all(" HTTP/2.0" in line for line in lines), [x for x in lines if "HTTP/2.0" not in x]
    assert sum('"GET / HTTP/2.0" 200' in line for line in lines) == 2001
    assert sum('"POST /echo HTTP/2.0" 200' in line for line in lines) == 1


# -- headless Chromium over TLS, on the demo page ----------------------------------------------

#: Every resource the page loaded so far, with the protocol it came over.
PROTOCOLS = "performance.getEntries().filter(e => 'nextHopProtocol' in e)" + (
    ".map(e => [new URL(e.name).pathname, e.nextHopProtocol])"
)


@pytest.mark.parametrize("model", MODELS)
def test_chromium_loads_the_demo_over_h2(
    model: str, chromium: DevTools, tls: dict[str, str]
) -> None:
    """The demo (``threadloom`` with no APP) over TLS: Chromium chooses h2 by ALPN for the
    page, its script and style sheet, and its polling of /stats under ``single``.

    Its WebSockets (the live figures and the chat; not under ``single``, where the page's
    connection is the one being served) go over HTTP/2 too: the server offers RFC 8441's
    SETTINGS_ENABLE_CONNECT_PROTOCOL, Chromium opens them with an extended CONNECT on the
    page's connection, and each is logged as ``CONNECT /live HTTP/2.0`` 200 when it ends.
    """
    chromium.call("Security.setIgnoreCertificateErrors", ignore=True)  # trustme's CA
    page_port, hello_port = free_port(), free_port()
    proc = threadloom(
        *(["--model", model] if model != "pool" else []),
        "--bind",
        f"127.0.0.1:{page_port}",
        "--bind",
        f"127.0.0.1:{hello_port}",
        "--certfile",
        tls["certfile"],
        "--keyfile",
        tls["keyfile"],
    )
    try:
        wait_for_banner(proc)
        chromium.call("Page.navigate", url=f"https://127.0.0.1:{page_port}/")
        chromium.wait_for("document.documentElement?.dataset.live === 'connected'")
        if model != "single":
            chromium.wait_for("!document.getElementById('chat-text').disabled")  # /chat is open
        loaded = dict(chromium.evaluate(PROTOCOLS))
        assert chromium.errors == []
    finally:
        log = stop(proc)
    assert {path: loaded.get(path) for path in ("/", "/demo.js", "/demo.css")} == dict.fromkeys(
        ("/", "/demo.js", "/demo.css"), "h2"
    ), loaded
    assert '"GET / HTTP/2.0" 200' in log and '"GET /demo.js HTTP/2.0" 200' in log, log
    if model == "single":
        assert '"GET /stats HTTP/2.0" 200' in log, log
        assert "HTTP/1.1" not in log, log
    else:  # the WebSockets: over HTTP/2 (see the docstring)
        assert '"CONNECT /live HTTP/2.0" 200' in log, log
        assert '"CONNECT /chat HTTP/2.0" 200' in log, log
        assert "HTTP/1.1" not in log, log
