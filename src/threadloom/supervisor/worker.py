"""The worker side of ``--workers``: what a forked child does until it exits.

A worker is the supervisor's image after ``fork()``: the listening sockets are already
bound, and with ``--preload`` the app is already imported; without it (the default) the
worker imports it now, from the files on disk, which is how SIGHUP loads new code. An app
that does not import, or fails to start, is reported as ``fatal`` with its one-line reason
(the exception and where), never as a crash: a worker that exits without saying ``fatal``
crashed. It

1. asks the kernel to send it SIGTERM when the supervisor dies (PR_SET_PDEATHSIG), and
   also stops when its channel reaches end of file, so it is never left an orphan: once
   asked to stop, for whatever reason, it is gone ``--graceful-timeout`` (plus
   ``KILL_GRACE_S``) later even if something wedged it, because a timer thread then
   SIGKILLs it (its supervisor, which would have done so, may be gone);
2. runs an ordinary :class:`~threadloom.server.Server` of the chosen model on the inherited
   sockets (marked *shared*, so stopping never shuts them down for its siblings), or on
   sockets of its own under ``--reuse-port``;
3. reports ``ready`` once the model accepts (under ``asyncio``, after the ASGI lifespan
   startup completed), answers ``stats`` requests from a control
   thread, and asks to be recycled after its ``--max-requests``;
4. stops gracefully on SIGTERM and at once on SIGQUIT; SIGINT is ignored, because a
   terminal's Ctrl-C reaches the supervisor too, and the supervisor decides. Its handlers
   only record the signal (:mod:`threadloom.signals`): a handler that stopped the server
   itself could wait for a lock the interrupted main thread holds, forever.

Threads start only here, after the fork: the supervisor never has any.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from threadloom.config import Config
from threadloom.errors import ConfigError
from threadloom.net.listeners import Listener, bind
from threadloom.server import Server
from threadloom.signals import SignalInbox
from threadloom.stats import STATS
from threadloom.supervisor.channel import Channel

log = logging.getLogger("threadloom.supervisor")

#: A worker that could not start sends ``fatal`` and exits with this status.
EXIT_FATAL = 3
#: Seconds past ``--graceful-timeout`` after which a stopping worker kills itself (the
#: supervisor waits as long before it does the same).
KILL_GRACE_S = 5.0
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel send SIGTERM when the supervisor dies, even by SIGKILL (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the channel's end of file still stops us
        log.debug("no PR_SET_PDEATHSIG here: this worker stops when its channel closes")
    if os.getppid() != parent_pid:  # it died before prctl took effect
        os._exit(0)


class Budget:
    """``--max-requests``: asks the supervisor, once, for a replacement when spent."""

    def __init__(self, limit: int, channel: Channel) -> None:
        self.left = limit
        self.channel = channel
        self._lock = threading.Lock()

    def spend(self) -> None:
        with self._lock:
            self.left -= 1
            if self.left != 0:
                return
        self.channel.send({"t": "recycle"})


def run_worker(
    app: Any, config: Config, plan: list[Listener | str], channel: Channel, limit: int
) -> int:
    """The whole life of a worker; returns its exit status (the caller ``os._exit``\\s)."""
    try:
        server = _start(app, config, plan)
    except ConfigError as exc:
        channel.send({"t": "fatal", "error": str(exc)})
        return EXIT_FATAL
    except SystemExit as exc:  # sys.exit() in the app's import: its reason, not a traceback
        channel.send({"t": "fatal", "error": f"the app called sys.exit({exc.code!r})"})
        return EXIT_FATAL
    if limit:
        STATS.on_request = Budget(limit, channel).spend
    stopper = Stopper(server, config.graceful_timeout + KILL_GRACE_S)
    control = threading.Thread(
        target=_control, args=(channel, server, stopper), name="threadloom-control", daemon=True
    )
    control.start()
    handle_signals(stopper)
    try:
        server.serve_forever()
    except ConfigError as exc:  # ASGI lifespan startup failed
        channel.send({"t": "fatal", "error": str(exc)})
        return EXIT_FATAL
    return 0


def _start(app: Any, config: Config, plan: list[Listener | str]) -> Server:
    """Listeners (inherited, or our own under --reuse-port), then the server, quietly."""
    listeners: list[Listener] = []
    try:
        for item in plan:
            if isinstance(item, str):
                listeners.append(bind(item, reuse_port=True))
            else:
                item.shared = True
                listeners.append(item)
    except ConfigError:
        for listener in listeners:
            listener.close()
        raise
    importlib.invalidate_caches()  # files added since the supervisor's finders last looked
    server = Server(app, config.replace(metrics_bind="", shutdown_delay=0.0, reload=False))
    server.listeners = listeners
    # The supervisor announces the server once for every worker; a worker says less.
    announcer = logging.getLogger("threadloom.server")
    level = announcer.level
    announcer.setLevel(logging.WARNING)
    try:
        server.start()
    finally:
        announcer.setLevel(level)
    return server


class Stopper:
    """Stops the worker's server once asked, and makes sure the process ends regardless.

    The first request to stop arms a deadline: if the process still runs ``kill_after``
    seconds later (an app that never returns, a wedged thread), a timer thread writes one
    line straight to file descriptor 2 (no logging lock: whatever wedged us may hold it)
    and SIGKILLs the process. Safe from any thread; never called from a signal handler.
    """

    def __init__(self, server: Server, kill_after: float) -> None:
        self.server = server
        self.kill_after = kill_after
        self._armed = threading.Event()

    def stop(self, graceful: bool) -> None:
        if not self._armed.is_set():
            self._armed.set()
            threading.Thread(
                target=self._kill_later, name="threadloom-deadline", daemon=True
            ).start()
        self.server.stop(graceful=graceful)

    def _kill_later(self) -> None:
        time.sleep(self.kill_after)
        line = (
            f"threadloom: worker {os.getpid()} still running {self.kill_after:g}s after it"
            " was asked to stop; killing it\n"
        )
        try:
            os.write(2, line.encode())
        finally:
            os.kill(os.getpid(), signal.SIGKILL)


def handle_signals(stopper: Stopper) -> SignalInbox:
    """SIGTERM: a graceful stop; SIGQUIT: stop now (recorded, then acted on by a thread)."""

    def act(signum: int, count: int) -> None:
        stopper.stop(graceful=signum == signal.SIGTERM and count == 1)

    inbox = SignalInbox((signal.SIGTERM, signal.SIGQUIT))
    inbox.dispatch(act, name="threadloom-worker-signals")
    inbox.install()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return inbox


def _control(channel: Channel, server: Server, stopper: Stopper) -> None:
    """Say ``ready`` once the model accepts; answer ``stats``; stop if the supervisor goes."""
    assert server.model is not None
    server.model.ready.wait()
    model, service = server.model.describe(), server.model.service.description
    channel.send({"t": "ready", "model": model, "service": service, "urls": server.urls})
    while (messages := channel.receive()) is not None:
        for message in messages:
            if message.get("t") == "stats":
                channel.send({"t": "stats", "seq": message.get("seq"), "data": STATS.snapshot()})
    log.warning("worker %d: the supervisor is gone; stopping", os.getpid())
    stopper.stop(graceful=True)


def finish_child(status: int) -> None:
    """Leave the forked child without running the supervisor's cleanup (never returns)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)
