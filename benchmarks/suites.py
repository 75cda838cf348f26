"""The servers benchmarked side by side.

Every server serves the same app module, copied by the harness into a throwaway directory
(workloads.write_apps), so that a comparison never depends on files that other work in the
checkout may be changing. Commands are templates: ``{port}`` is filled per start, ``{module}``
with the workload's app module (every module exports ``app``), ``{workers}`` with --workers, and
``{threadloom}`` / ``{peers}`` point at the project venv and the separate peers venv (see
install_peers.sh), so that peers never leak into the project's environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
THREADLOOM_BIN = REPO_DIR / ".venv" / "bin"
PEERS_BIN = BENCH_DIR / ".peers-venv" / "bin"


@dataclass(frozen=True)
class ServerSpec:
    """One server under test: a name for the table and the command that starts it."""

    name: str
    argv: tuple[str, ...]
    # Distribution names whose versions the report records (looked up in `venv`).
    packages: tuple[str, ...]
    venv: str  # "project" or "peers"
    # Appended to argv for --workers N > 1 (empty when argv's {workers} already says it);
    # None, the default, for a server that has no worker processes to ask for.
    workers_argv: tuple[str, ...] | None = None

    def supports_workers(self, workers: int) -> bool:
        """Whether this server can run `workers` processes."""
        return workers == 1 or self.workers_argv is not None

    def command(self, port: int | str, module: str, workers: int = 1) -> list[str]:
        """The concrete argv for a start on `port` serving ``module:app``."""
        argv = self.argv
        if workers > 1 and self.workers_argv:
            argv += self.workers_argv
        subst = {
            "port": str(port),
            "module": module,
            "workers": str(workers),
            "threadloom": str(THREADLOOM_BIN),
            "peers": str(PEERS_BIN),
        }
        return [part.format(**subst) for part in argv]

    def template(self, module: str, workers: int = 1) -> str:
        """The command as recorded in results, with paths resolved and PORT left symbolic."""
        return " ".join(self.command("PORT", module, workers))


def _argv(command: str) -> tuple[str, ...]:
    """Split a command written as one line; no argument here contains spaces."""
    return tuple(command.split())


def _threadloom(name: str, *model: str) -> ServerSpec:
    """A threadloom server: the same CLI for every model, so only the model flags differ.
    Without --workers it serves in its own process; --workers N puts N under a supervisor."""
    argv = ("{threadloom}/threadloom", "serve", "{module}:app", *model)
    argv += _argv("--no-access-log --bind 127.0.0.1:{port}")
    return ServerSpec(
        name, argv, ("threadloom",), "project", workers_argv=("--workers", "{workers}")
    )


def _granian(name: str, interface: str) -> ServerSpec:
    """granian with one worker (--workers N: N) and no access log (its defaults otherwise)."""
    argv = _argv(f"{{peers}}/granian --interface {interface} --host 127.0.0.1 --port {{port}}")
    argv += _argv("--workers {workers} --no-access-log --log-level warning {module}:app")
    return ServerSpec(name, argv, ("granian",), "peers", workers_argv=())


WSGI_SERVERS: tuple[ServerSpec, ...] = (
    _threadloom("threadloom-pool", *_argv("--model pool --threads 4")),
    # the pool as users get it: the default --threads (10, the tutorial's)
    _threadloom("threadloom-pool-10", *_argv("--model pool")),
    _threadloom("threadloom-threads", "--model", "threads"),
    # --connection-limit: waitress stops accepting at 100 connections by default, which would
    # leave most of the io workload's 512 keep-alive connections unanswered (wrk timeouts);
    # 1000 is gunicorn's and threadloom's default. Below 100 connections it changes nothing.
    ServerSpec(
        "waitress",
        _argv(
            "{peers}/waitress-serve --threads=4 --connection-limit=1000"
            " --listen=127.0.0.1:{port} {module}:app"
        ),
        ("waitress",),
        "peers",
    ),
    ServerSpec(
        "gunicorn-gthread",
        _argv(
            "{peers}/gunicorn -k gthread -w {workers} --threads 4 -b 127.0.0.1:{port} {module}:app"
        ),
        ("gunicorn",),
        "peers",
        workers_argv=(),
    ),
    _granian("granian-wsgi", "wsgi"),
    # werkzeug's development server (what `flask run` / `app.run()` start) serving the workload's
    # app; it has threads or forked processes per request, not a pool of workers.
    ServerSpec(
        "flask-dev",
        _argv("{peers}/python werkzeug_dev.py {module} {port}"),
        ("flask", "werkzeug"),
        "peers",
    ),
)

ASGI_SERVERS: tuple[ServerSpec, ...] = (
    _threadloom("threadloom-asyncio", "--model", "asyncio"),
    ServerSpec(
        "uvicorn",
        _argv(
            "{peers}/uvicorn {module}:app --host 127.0.0.1 --port {port} --http httptools"
            " --loop uvloop --no-access-log --log-level warning"
        ),
        ("uvicorn", "httptools", "uvloop"),
        "peers",
        workers_argv=("--workers", "{workers}"),
    ),
    # hypercorn's default is already one worker process under a parent process.
    ServerSpec(
        "hypercorn",
        _argv("{peers}/hypercorn {module}:app -b 127.0.0.1:{port}"),
        ("hypercorn",),
        "peers",
        workers_argv=("--workers", "{workers}"),
    ),
    _granian("granian-asgi", "asgi"),
)

SUITES: dict[str, tuple[ServerSpec, ...]] = {"wsgi": WSGI_SERVERS, "asgi": ASGI_SERVERS}

# The reference each ratio is taken against unless --baseline says otherwise: the most common
# pure-Python server of each kind, as in DESIGN.md's targets. waitress has no worker processes,
# so multi-process wsgi runs compare against gunicorn.
DEFAULT_BASELINE: dict[str, str] = {"wsgi": "waitress", "asgi": "uvicorn"}
MULTI_PROCESS_BASELINE: dict[str, str] = {"wsgi": "gunicorn-gthread", "asgi": "uvicorn"}
