"""``--reload``, for development: restart the server when a ``.py`` file changes.

The reloading process binds the listeners once and runs the real server as a child,
``python -m threadloom serve APP --no-reload --bind fd://N ...``, which adopts them. When
watchfiles (the ``reload`` extra) reports a change to a Python file under the current
directory, the child gets SIGTERM, finishes what it was doing, and a fresh child (which
imports the app afresh) takes over the same sockets. Clients that connect in between wait
in the kernel's backlog instead of being refused.

A child that fails (a syntax error, say) prints its one line and exits; the reloader waits
for the next change. SIGTERM or SIGINT stop the child and then the reloader. The child runs
in the reloader's process group, so a terminal's Ctrl-C reaches both.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from threadloom import portable
from threadloom.config import Config, flag_name
from threadloom.errors import ConfigError
from threadloom.net.listeners import Listener, bind
from threadloom.signals import SignalInbox

log = logging.getLogger("threadloom.reload")

#: Beyond ``--graceful-timeout``, how long a child may take to exit before it is killed.
KILL_GRACE_S = 5.0


def _watchfiles() -> Any:
    try:
        return importlib.import_module("watchfiles")
    except ImportError:
        raise ConfigError("--reload needs watchfiles: pip install 'threadloom[reload]'") from None


def config_argv(config: Config) -> list[str]:
    """Command-line flags that reproduce ``config`` exactly, whatever the environment says.

    Every setting is a flag, and ``--no-config`` keeps the child from reading a config file:
    the child runs with the settings the reloader resolved (its file, relative path or not,
    read once, in the reloader), even if that file is edited later.
    """
    argv = ["--no-config"]
    for f in dataclasses.fields(Config):
        value, flag = getattr(config, f.name), flag_name(f)
        if isinstance(value, bool):
            argv.append(f"--{flag}" if value else f"--no-{flag}")
        elif isinstance(value, tuple):
            argv += [f"--{flag}={item}" for item in value]
        else:
            argv.append(f"--{flag}={value}")
    return argv


class Reloader:
    """Runs the server in a child and restarts it on changes (see the module docstring)."""

    def __init__(self, app: str, config: Config) -> None:
        self.app = app
        self.config = config
        self.listeners: list[Listener] = []
        self.child: subprocess.Popen[bytes] | None = None
        self.stop = threading.Event()

    def run(self) -> int:
        watchfiles = _watchfiles()
        try:
            for address in self.config.bind:
                self.listeners.append(bind(address, self.config.reuse_port))
            inbox = SignalInbox((signal.SIGTERM, signal.SIGINT))
            inbox.dispatch(self._on_signal, name="threadloom-reloader-signals")
            inbox.install()
            try:
                self._watch(watchfiles)
            finally:
                inbox.restore()
        finally:
            self._stop_child()
            for listener in self.listeners:
                listener.close()
        return 0

    def _watch(self, watchfiles: Any) -> None:
        root = Path.cwd()
        log.info("reloading when a .py file under %s changes (watchfiles)", root)
        self._start_child()
        for changes in watchfiles.watch(
            root, watch_filter=watchfiles.PythonFilter(), stop_event=self.stop, debounce=200
        ):
            if self.stop.is_set():
                return
            names = sorted({os.path.relpath(path, root) for _, path in changes})
            log.info("%s changed: restarting", ", ".join(names))
            self._stop_child()
            self._start_child()

    def _on_signal(self, signum: int, count: int) -> None:
        log.info("%s received: stopping", signal.Signals(signum).name)
        self.stop.set()

    def _start_child(self) -> None:
        fds = [listener.sock.fileno() for listener in self.listeners]
        child = self.config.replace(reload=False, bind=tuple(f"fd://{fd}" for fd in fds))
        argv = [sys.executable, "-m", "threadloom", "serve", self.app, *config_argv(child)]
        self.child = subprocess.Popen(argv, pass_fds=fds)
        threading.Thread(
            target=self._report_exit, args=(self.child,), name="threadloom-reload-wait", daemon=True
        ).start()

    def _report_exit(self, child: subprocess.Popen[bytes]) -> None:
        status = child.wait()
        if child is self.child and not self.stop.is_set():
            log.warning("the server exited (status %d); waiting for a change", status)

    def _stop_child(self) -> None:
        child, self.child = self.child, None
        if child is None or child.poll() is not None:
            return
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(self.config.graceful_timeout + KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            log.warning("the server did not stop in time: killed")
            child.kill()
            child.wait()


def run_reloading(app: str, config: Config) -> int:
    """Serve ``app`` in a child process, restarted whenever a ``.py`` file changes."""
    if not portable.can_fork():
        raise ConfigError(
            "--reload needs POSIX (it passes the listening sockets to a child process);"
            " on Windows restart the server yourself"
        )
    return Reloader(app, config).run()
