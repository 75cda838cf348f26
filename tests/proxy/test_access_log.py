"""Access-log formats, request ids and --log-config, on real connections."""

from __future__ import annotations

import http.client
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from tests.proxy import apps
from threadloom.config import Config
from threadloom.errors import ConfigError
from threadloom.log import configure_logging, load_log_config
from threadloom.server import Server
from threadloom.testing import MODELS, running_server, timeout_factor

HEADERS = {"User-Agent": 'probe/1.0 "quoted" \xe9', "Referer": "https://ref.example/"}


def request(
    server: Server, path: str = "/", headers: dict[str, str] | None = None
) -> http.client.HTTPResponse:
    host, port = server.addresses[0]
    conn = http.client.HTTPConnection(host, port, timeout=5 * timeout_factor())
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "threadloom.access"]


def serving(model: str, **options: Any) -> Any:
    app = apps.asgi_whoami if model == "asgi" else apps.whoami
    return running_server(app, model="asyncio" if model == "asgi" else model, **options)


@pytest.mark.parametrize("model", [*MODELS, "asgi"])
def test_common_and_combined(model: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="threadloom.access")
    with serving(model) as server:
        request(server, "/a?b=1", HEADERS)
    with serving(model, access_log_format="combined") as server:
        request(server, "/c", HEADERS)
    common, combined = access_lines(caplog)
    stamp = r"\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\]"
    assert re.fullmatch(rf'127\.0\.0\.1 - - {stamp} "GET /a\?b=1 HTTP/1\.1" 200 \d+', common)
    assert re.fullmatch(
        rf'127\.0\.0\.1 - - {stamp} "GET /c HTTP/1\.1" 200 \d+ '
        r'"https://ref\.example/" "probe/1\.0 \\x22quoted\\x22 \\xe9"',
        combined,
    )


@pytest.mark.parametrize("model", [*MODELS, "asgi"])
def test_json_lines(model: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="threadloom.access")
    options = {"access_log_format": "json", "request_id": True}
    with serving(model, **options) as server:
        response = request(server, "/j?x=%22", {**HEADERS, "X-Forwarded-For": "203.0.113.9"})
    (line,) = access_lines(caplog)
    assert line.isascii()  # escaped: nothing raw reaches a terminal
    record = json.loads(line)
    assert set(record) == {
        "time",
        "remote",
        "method",
        "path",
        "protocol",
        "status",
        "size",
        "duration_ms",
        "request_id",
        "worker",
        "user_agent",
        "referer",
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"])
    assert record["remote"] == "203.0.113.9"  # as the app saw it, behind a trusted proxy
    assert (record["method"], record["path"], record["protocol"]) == ("GET", "/j?x=%22", "HTTP/1.1")
    assert record["status"] == 200 and record["size"] > 0
    assert 0 <= record["duration_ms"] < 5000
    assert record["request_id"] == response.getheader("X-Request-ID")
    assert isinstance(record["worker"], int)
    assert record["user_agent"] == 'probe/1.0 "quoted" \xe9'
    assert record["referer"] == "https://ref.example/"


def test_json_lines_without_ids_carry_the_clients(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="threadloom.access")
    with serving("pool", access_log_format="json") as server:
        request(server, "/1", {"X-Request-ID": "from-nginx-123"})
        request(server, "/2", {"X-Request-ID": "bad id"})
        request(server, "/3")
    # by path: a line is written just after its response, so two workers may log out of order
    records = [json.loads(line) for line in access_lines(caplog)]
    ids = {record["path"]: record["request_id"] for record in records}
    assert ids == {"/1": "from-nginx-123", "/2": None, "/3": None}


@pytest.mark.parametrize("model", [*MODELS, "asgi"])
def test_request_ids(model: str) -> None:
    with serving(model, request_id=True, access_log=False) as server:
        made = request(server)
        first = made.getheader("X-Request-ID")
        assert first and re.fullmatch(r"[0-9a-f]{32}", first)
        assert request(server).getheader("X-Request-ID") != first
        kept = request(server, headers={"X-Request-ID": "abc-123_DEF.456"})
        assert kept.getheader("X-Request-ID") == "abc-123_DEF.456"
        for insane in ("has space", "x" * 201, "semi;colon"):
            replaced = request(server, headers={"X-Request-ID": insane}).getheader("X-Request-ID")
            assert replaced and re.fullmatch(r"[0-9a-f]{32}", replaced)


@pytest.mark.parametrize("model", ["threads", "asgi"])
def test_the_app_sees_the_same_id(model: str) -> None:
    host_app = serving(model, request_id=True, access_log=False)
    with host_app as server:
        host, port = server.addresses[0]
        conn = http.client.HTTPConnection(host, port, timeout=5 * timeout_factor())
        conn.request("GET", "/")
        response = conn.getresponse()
        seen = json.loads(response.read())
        conn.close()
        assert seen["request_id"] == response.getheader("X-Request-ID")


def test_an_app_that_sets_its_own_id_keeps_it() -> None:
    with serving("pool", request_id=True, access_log=False) as server:
        response = request(server, "/own-id")
        assert response.headers.get_all("X-Request-ID") == ["mine"]


def test_ids_are_off_by_default() -> None:
    assert Config().request_id is False
    with serving("pool", access_log=False) as server:
        assert request(server).getheader("X-Request-ID") is None


def test_log_config_json_and_ini(tmp_path: Path) -> None:
    out = tmp_path / "access.log"
    config = {
        "version": 1,
        "formatters": {"bare": {"format": "%(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(out)}},
        "loggers": {"threadloom.access": {"handlers": ["file"], "level": "INFO"}},
    }
    config["handlers"]["file"]["formatter"] = "bare"  # type: ignore[index]
    path = tmp_path / "logging.json"
    path.write_text(json.dumps(config))
    access = logging.getLogger("threadloom.access")
    saved = access.handlers[:], access.level, access.propagate
    try:
        configure_logging("info", str(path), "common")
        with serving("pool") as server:
            request(server, "/logged")
        for handler in access.handlers:
            handler.flush()
        assert '"GET /logged HTTP/1.1" 200' in out.read_text()
        assert not logging.getLogger("threadloom.http").disabled  # existing loggers stay on
        ini = tmp_path / "logging.ini"
        ini.write_text(
            "[loggers]\nkeys=root\n[handlers]\nkeys=null\n[formatters]\nkeys=\n"
            "[logger_root]\nhandlers=null\n[handler_null]\nclass=NullHandler\nargs=()\n"
        )
        load_log_config(str(ini))
    finally:
        for handler in access.handlers:
            if handler not in saved[0]:
                handler.close()
        access.handlers[:], access.level, access.propagate = saved
        logging.getLogger().handlers[:] = [
            h for h in logging.getLogger().handlers if not isinstance(h, logging.NullHandler)
        ]


def test_log_config_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_log_config(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 99}')
    with pytest.raises(ConfigError, match="--log-config"):
        load_log_config(str(bad))
