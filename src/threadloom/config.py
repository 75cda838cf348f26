"""The one source of truth for settings.

Every setting is a field of the frozen :class:`Config` dataclass. Its ``metadata`` names the
command-line flag, the ``THREADLOOM_*`` environment variable and the help text, so the CLI, the
environment and the docs are all generated from this table and can never drift apart.
:func:`Config.validated` checks values once; after that a config never changes.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from threadloom.errors import ConfigError

#: The models, by name: the one list of them. Each names its class as "module:Class", imported
#: only when it is asked for (:func:`threadloom.models.model_class`). It lives here, not in
#: ``models/``, because settings sit below the models in the import layers and ``--model`` is
#: checked when a Config is validated; what a model can do is declared on its class.
MODELS = {
    "single": "threadloom.models.single:SingleModel",
    "threads": "threadloom.models.threads:ThreadsModel",
    "pool": "threadloom.models.pool:PoolModel",
    "asyncio": "threadloom.models.aio:AsyncioModel",
}
INTERFACES = ("auto", "raw", "wsgi", "asgi", "websocket")
LOOPS = ("auto", "asyncio", "uvloop")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
ACCESS_LOG_FORMATS = ("common", "combined", "json")
HTTP_VERSIONS = ("auto", "1", "2")
CERT_REQS = ("required", "optional")
DEFAULT_BIND = "127.0.0.1:8000"


def setting(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    choices: tuple[str, ...] | None = None,
    repeatable: bool = False,
    negative: bool = False,
) -> Any:
    """Declare one setting: its default and how users reach it (flag, env var, help)."""
    meta = {
        "help": help,
        "flag": flag,
        "choices": choices,
        "repeatable": repeatable,
        "negative": negative,
    }
    if isinstance(default, list | tuple):
        return field(default_factory=lambda: tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True, slots=True)
class Config:
    """Everything a server needs to know, validated once and then frozen."""

    bind: tuple[str, ...] = setting(
        (DEFAULT_BIND,),
        "address to listen on: host:port, [::1]:port, :port, unix:/path or fd://N (repeatable)",
        repeatable=True,
    )
    model: str = setting("pool", "concurrency model", choices=tuple(MODELS))
    threads: int = setting(10, "worker threads for pool, and the thread pool of asyncio")
    max_connections: int = setting(
        1000, "open connections at most; at the cap the server stops accepting"
    )
    max_queue: int = setting(
        1000,
        "pool (and asyncio's pool for sync code): requests waiting for a worker at most; "
        "beyond it they get 503",
    )
    max_queue_wait: float = setting(
        5.0,
        "pool: a request that would wait longer than this for a worker (those ahead of it "
        "times a worker's average time per request) gets 503 at once, so the ones served keep "
        "a bounded wait; asyncio: the same for its pool, and on the loop a request read once "
        "a pass of the loop has run past a quarter of this gets 503 at once (0: only "
        "--max-queue bounds the queue)",
    )
    interface: str = setting("auto", "how the app is called", choices=INTERFACES)
    loop: str = setting("auto", "event loop for the asyncio model", choices=LOOPS)
    graceful_timeout: float = setting(
        30.0, "seconds that in-flight work may take to finish on shutdown"
    )
    workers: int = setting(
        0, "worker processes under a supervisor that restarts them (0: serve in this process)"
    )
    preload: bool = setting(
        False,
        "with --workers: import the app once, in the supervisor, before forking (memory shared "
        "copy-on-write); SIGHUP then restarts workers on the code imported at start",
    )
    max_requests: int = setting(0, "with --workers: replace a worker after this many requests")
    max_requests_jitter: int = setting(
        0, "add 0..N requests at random to --max-requests per worker, so they restart apart"
    )
    reuse_port: bool = setting(
        False, "bind with SO_REUSEPORT; with --workers each worker binds its own socket"
    )
    pin_workers: bool = setting(
        False,
        "with --workers: run each worker on one CPU of those the server may use (worker n "
        "on the n-th, round), so its threads pass the GIL on one core, not across cores",
    )
    shutdown_delay: float = setting(
        0.0, "on SIGTERM keep serving this many seconds with /readyz at 503, then drain"
    )
    metrics_bind: str = setting(
        "", "address serving /metrics (Prometheus), /healthz and /readyz (default: none)"
    )
    reload: bool = setting(
        False, "development: restart when a .py file under the current directory changes"
    )
    log_level: str = setting("info", "logging level", choices=LOG_LEVELS)
    timeout_header: float = setting(
        10.0, "seconds a client may take to send a request head (then 408 and close)"
    )
    timeout_keep_alive: float = setting(
        5.0, "seconds an idle keep-alive connection is kept open between requests"
    )
    timeout_io: float = setting(
        30.0, "seconds a read of a request body or a write of a response may stall"
    )
    min_body_rate: int = setting(
        1024,
        "bytes/s a request body must average once --timeout-io of grace is spent; a slower "
        "sender is cut off (slow POST) (0: off)",
    )
    min_send_rate: int = setting(
        1024,
        "bytes/s a client must read a response at once --timeout-io of grace is spent; a "
        "slower reader is dropped (slow read) (0: only the --timeout-io stall bound)",
    )
    timeout_request: float = setting(
        0.0,
        "seconds a sync app (WSGI) may take before its response starts; then 503, the "
        "connection closes and the stuck thread is logged, not killed (0: off)",
    )
    max_header_size: int = setting(
        64 * 1024, "bytes a request line plus headers may take (then 431, or 414 for the URI)"
    )
    max_body_size: int = setting(1024**3, "bytes a request body may take (then 413)")
    http: str = setting(
        "auto",
        "HTTP versions spoken: auto (HTTP/1.1, and HTTP/2 when a client opens with its "
        "preface or picks h2 by TLS ALPN), 1 (HTTP/1.1 only) or 2 (HTTP/2 only)",
        choices=HTTP_VERSIONS,
    )
    h2_max_streams: int = setting(
        100,
        "HTTP/2 streams one connection may have in flight (SETTINGS_MAX_CONCURRENT_STREAMS); "
        "more are refused with REFUSED_STREAM",
    )
    access_log: bool = setting(True, "log each HTTP request (see --access-log-format)")
    gc_freeze: bool = setting(
        True,
        "move the objects alive once the app is loaded (modules, the app, its framework) out "
        "of the cyclic garbage collector's sight, so its full collections, which stop every "
        "request in flight, scan only what serving creates",
    )
    gc_threshold: int = setting(
        10_000,
        "while serving, the cyclic garbage collector's young generation is collected every N "
        "allocations (Python's: 700), so the objects of requests in flight die before a "
        "collection instead of being walked and promoted; kept as it is if the app set its "
        "own thresholds (0: leave Python's)",
    )
    access_log_format: str = setting(
        "common",
        "access log lines: common, combined (adds referer and user agent) or json (one object "
        "per line with duration, request id and worker pid)",
        choices=ACCESS_LOG_FORMATS,
    )
    log_config: str = setting(
        "", "logging set-up file: .json (dictConfig) or .ini/.conf (fileConfig); it then rules"
    )
    request_id: bool = setting(
        False,
        "give each request an id: a sane X-Request-ID from the client, else a new one; the "
        "app, the response and json log lines get it",
    )
    certfile: str = setting("", "TLS: the certificate chain (PEM); serves HTTPS when set")
    keyfile: str = setting("", "TLS: the private key (PEM), when it is not in --certfile")
    ssl_ciphers: str = setting("", "TLS: OpenSSL cipher list for TLS 1.2 (default: OpenSSL's)")
    ca_certs: str = setting(
        "", "TLS: CA certificates (PEM) that client certificates must chain to (mutual TLS)"
    )
    ssl_cert_reqs: str = setting(
        "required", "with --ca-certs: must clients present a certificate", choices=CERT_REQS
    )
    forwarded_allow_ips: str = setting(
        "127.0.0.1",
        "peers trusted to set X-Forwarded-For/-Proto/-Host and to send PROXY headers: "
        "addresses or networks, comma-separated, or *",
    )
    proxy_protocol: bool = setting(
        False,
        "every connection starts with a PROXY protocol v1/v2 header (from --forwarded-allow-ips "
        "peers; others are closed)",
    )
    ws_max_size: int = setting(
        1024 * 1024, "bytes a WebSocket message may take, decompressed (then close 1009)"
    )
    ws_ping_interval: float = setting(
        20.0, "seconds between WebSocket keep-alive pings; a peer silent for two closes (0: off)"
    )
    ws_per_message_deflate: bool = setting(
        True, "offer WebSocket permessage-deflate compression (RFC 7692)"
    )
    static: tuple[str, ...] = setting(
        (),
        "serve the files of DIR under /PREFIX before the app: /PREFIX=DIR (repeatable); "
        "ranges, ETag/304, precompressed .br/.gz siblings, nothing outside DIR",
        repeatable=True,
    )

    def replace(self, **changes: Any) -> Config:
        """A copy with some fields changed, validated again."""
        return dataclasses.replace(self, **changes).validated()

    def validated(self) -> Config:
        """Check every value; raise ConfigError with a message fit for one line of stderr."""
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices and value not in choices:
                raise ConfigError(f"--{flag_name(f)}: {value!r} is not one of {', '.join(choices)}")
        if self.threads < 1:
            raise ConfigError("--threads must be at least 1")
        if self.max_queue < 1:
            raise ConfigError("--max-queue must be at least 1")
        if self.gc_threshold < 0:
            raise ConfigError("--gc-threshold must not be negative")
        if self.max_queue_wait < 0:
            raise ConfigError("--max-queue-wait must not be negative")
        if self.max_connections < 1:
            raise ConfigError("--max-connections must be at least 1")
        if self.graceful_timeout < 0:
            raise ConfigError("--graceful-timeout must not be negative")
        for name in ("workers", "max_requests", "max_requests_jitter", "shutdown_delay"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must not be negative")
        if self.max_requests and not self.workers:
            raise ConfigError("--max-requests needs --workers: a supervisor replaces the worker")
        if self.preload and not self.workers:
            raise ConfigError("--preload needs --workers: one process imports the app anyway")
        if self.pin_workers and not self.workers:
            raise ConfigError(
                "--pin-workers needs --workers (one process: run it under taskset -c N)"
            )
        for name in ("timeout_header", "timeout_keep_alive", "timeout_io"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive")
        if self.timeout_request < 0 or self.min_body_rate < 0 or self.min_send_rate < 0:
            raise ConfigError(
                "--timeout-request, --min-body-rate and --min-send-rate must not be negative"
            )
        if self.h2_max_streams < 1:
            raise ConfigError(f"--h2-max-streams must be at least 1, not {self.h2_max_streams}")
        if self.max_header_size < 1024 or self.max_body_size < 0:
            raise ConfigError("--max-header-size must be at least 1024, --max-body-size >= 0")
        if self.ws_max_size < 1 or self.ws_ping_interval < 0:
            raise ConfigError("--ws-max-size must be positive, --ws-ping-interval >= 0")
        if (self.keyfile or self.ssl_ciphers or self.ca_certs) and not self.certfile:
            raise ConfigError("--keyfile, --ssl-ciphers and --ca-certs need --certfile")
        if not self.bind:
            raise ConfigError("--bind needs at least one address")
        for mount in self.static:
            static_mount(mount)
        return self


def static_mount(text: str) -> tuple[bytes, str]:
    """``--static /PREFIX=DIR`` as (the prefix without a trailing slash, DIR's real path);
    ConfigError (one line) when it is not that or DIR is not a directory."""
    prefix, sep, folder = text.partition("=")
    if not sep or not prefix.startswith("/") or not folder or not prefix.isascii():
        raise ConfigError(f"--static {text!r}: expected /PREFIX=DIR, such as /static=./public")
    root = os.path.realpath(folder)
    if not os.path.isdir(root):
        raise ConfigError(f"--static {text!r}: {folder} is not a directory")
    return prefix.rstrip("/").encode("ascii"), root


def flag_name(f: dataclasses.Field[Any]) -> str:
    """The long option for a field: ``max_connections`` -> ``max-connections``."""
    return str(f.metadata.get("flag") or f.name.replace("_", "-"))


def env_name(f: dataclasses.Field[Any]) -> str:
    """The environment variable of a field: ``threads`` -> ``THREADLOOM_THREADS``."""
    return "THREADLOOM_" + f.name.upper()


def convert(f: dataclasses.Field[Any], raw: str, source: str) -> Any:
    """Turn a string from the environment into the field's type, or raise ConfigError."""
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if kind.startswith("tuple"):
            return tuple(part for part in raw.replace(",", " ").split() if part)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
    except ValueError:
        raise ConfigError(f"{source}: {raw!r} is not a valid {kind}") from None
    return raw


def from_environ(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Settings given as ``THREADLOOM_*`` environment variables, converted to field types."""
    environ = os.environ if environ is None else environ
    found: dict[str, Any] = {}
    for f in dataclasses.fields(Config):
        name = env_name(f)
        if name in environ:
            found[f.name] = convert(f, environ[name], name)
    return found
