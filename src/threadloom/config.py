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

MODELS = ("single", "threads", "pool", "asyncio")
INTERFACES = ("auto", "raw", "wsgi", "asgi", "websocket")
LOOPS = ("auto", "asyncio", "uvloop")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
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
    model: str = setting("pool", "concurrency model", choices=MODELS)
    threads: int = setting(10, "worker threads for pool, and the thread pool of asyncio")
    max_connections: int = setting(
        1000, "open connections at most; at the cap the server stops accepting"
    )
    max_queue: int = setting(
        1000, "pool: requests waiting for a worker at most; beyond it they get 503"
    )
    interface: str = setting("auto", "how the app is called", choices=INTERFACES)
    loop: str = setting("auto", "event loop for the asyncio model", choices=LOOPS)
    graceful_timeout: float = setting(
        30.0, "seconds that in-flight work may take to finish on shutdown"
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
    max_header_size: int = setting(
        64 * 1024, "bytes a request line plus headers may take (then 431, or 414 for the URI)"
    )
    max_body_size: int = setting(1024**3, "bytes a request body may take (then 413)")
    access_log: bool = setting(True, "log each HTTP request in the common log format")

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
        if self.max_connections < 1:
            raise ConfigError("--max-connections must be at least 1")
        if self.graceful_timeout < 0:
            raise ConfigError("--graceful-timeout must not be negative")
        for name in ("timeout_header", "timeout_keep_alive", "timeout_io"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive")
        if self.max_header_size < 1024 or self.max_body_size < 0:
            raise ConfigError("--max-header-size must be at least 1024, --max-body-size >= 0")
        if not self.bind:
            raise ConfigError("--bind needs at least one address")
        return self


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
