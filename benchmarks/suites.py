"""The servers benchmarked side by side, and the hello-world apps they serve.

Every server gets the same app, written by the harness itself into a throwaway directory, so that
a comparison never depends on files that other work in the checkout may be changing. Commands are
templates: ``{port}`` is filled per start and ``{threadloom}`` / ``{peers}`` point at the project
venv and the separate peers venv (see install_peers.sh), so that peers never leak into the
project's environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
THREADLOOM_BIN = REPO_DIR / ".venv" / "bin"
PEERS_BIN = BENCH_DIR / ".peers-venv" / "bin"

# The body is exactly 13 bytes, matching the Content-Length every app declares.
HELLO_BODY = b"Hello, world!"

HELLO_WSGI = """\
def app(environ, start_response):
    start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")]
    )
    return [b"Hello, world!"]
"""

HELLO_ASGI = """\
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
        }
    )
    await send({"type": "http.response.body", "body": b"Hello, world!"})
"""

# werkzeug logs every request to stderr by default; no other server here has an access log on,
# so it is silenced to compare request handling rather than terminal I/O.
HELLO_FLASK = """\
import logging
import sys

from flask import Flask

app = Flask(__name__)
logging.getLogger("werkzeug").setLevel(logging.ERROR)


@app.route("/")
def hello():
    return "Hello, world!", 200, {"Content-Type": "text/plain"}


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True)
"""

APP_FILES: dict[str, str] = {
    "hello_wsgi.py": HELLO_WSGI,
    "hello_asgi.py": HELLO_ASGI,
    "hello_flask.py": HELLO_FLASK,
}


@dataclass(frozen=True)
class ServerSpec:
    """One server under test: a name for the table and the command that starts it."""

    name: str
    argv: tuple[str, ...]
    # Distribution names whose versions the report records (looked up in `venv`).
    packages: tuple[str, ...]
    venv: str  # "project" or "peers"

    def command(self, port: int) -> list[str]:
        """The concrete argv for a start on `port`."""
        subst = {"port": str(port), "threadloom": str(THREADLOOM_BIN), "peers": str(PEERS_BIN)}
        return [part.format(**subst) for part in self.argv]

    def template(self) -> str:
        """The command as recorded in results, with paths resolved and PORT left symbolic."""
        subst = {"port": "PORT", "threadloom": str(THREADLOOM_BIN), "peers": str(PEERS_BIN)}
        return " ".join(part.format(**subst) for part in self.argv)


def _argv(command: str) -> tuple[str, ...]:
    """Split a command written as one line; no argument here contains spaces."""
    return tuple(command.split())


def _threadloom(name: str, app: str, *model: str) -> ServerSpec:
    """A threadloom server: the same CLI for every model, so only the model flags differ."""
    argv = ("{threadloom}/threadloom", "serve", app, *model)
    argv += _argv("--no-access-log --bind 127.0.0.1:{port}")
    return ServerSpec(name, argv, ("threadloom",), "project")


def _granian(name: str, interface: str, app: str) -> ServerSpec:
    """granian with one worker and no access log (its defaults otherwise)."""
    argv = _argv(f"{{peers}}/granian --interface {interface} --host 127.0.0.1 --port {{port}}")
    argv += _argv("--workers 1 --no-access-log --log-level warning")
    return ServerSpec(name, (*argv, app), ("granian",), "peers")


WSGI_SERVERS: tuple[ServerSpec, ...] = (
    _threadloom("threadloom-pool", "hello_wsgi:app", *_argv("--model pool --threads 4")),
    _threadloom("threadloom-threads", "hello_wsgi:app", "--model", "threads"),
    ServerSpec(
        "waitress",
        _argv("{peers}/waitress-serve --threads=4 --listen=127.0.0.1:{port} hello_wsgi:app"),
        ("waitress",),
        "peers",
    ),
    ServerSpec(
        "gunicorn-gthread",
        _argv("{peers}/gunicorn -k gthread -w 1 --threads 4 -b 127.0.0.1:{port} hello_wsgi:app"),
        ("gunicorn",),
        "peers",
    ),
    _granian("granian-wsgi", "wsgi", "hello_wsgi:app"),
    ServerSpec(
        "flask-dev",
        _argv("{peers}/python hello_flask.py {port}"),
        ("flask", "werkzeug"),
        "peers",
    ),
)

ASGI_SERVERS: tuple[ServerSpec, ...] = (
    _threadloom("threadloom-asyncio", "hello_asgi:app", "--model", "asyncio"),
    ServerSpec(
        "uvicorn",
        _argv(
            "{peers}/uvicorn hello_asgi:app --host 127.0.0.1 --port {port} --http httptools"
            " --loop uvloop --no-access-log --log-level warning"
        ),
        ("uvicorn", "httptools", "uvloop"),
        "peers",
    ),
    ServerSpec(
        "hypercorn",
        _argv("{peers}/hypercorn hello_asgi:app -b 127.0.0.1:{port}"),
        ("hypercorn",),
        "peers",
    ),
    _granian("granian-asgi", "asgi", "hello_asgi:app"),
)

SUITES: dict[str, tuple[ServerSpec, ...]] = {"wsgi": WSGI_SERVERS, "asgi": ASGI_SERVERS}

# The reference each ratio is taken against unless --baseline says otherwise: the most common
# pure-Python server of each kind, as in DESIGN.md's targets.
DEFAULT_BASELINE: dict[str, str] = {"wsgi": "waitress", "asgi": "uvicorn"}


def write_apps(directory: Path) -> None:
    """Write every hello app into `directory`, the cwd and PYTHONPATH of each server."""
    for filename, source in APP_FILES.items():
        (directory / filename).write_text(source, encoding="utf-8")
