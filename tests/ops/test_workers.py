"""``--workers N``: a real supervisor, real worker processes, real signals."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.ops.support import (
    Proc,
    address,
    alive,
    get,
    pids_answering,
    scaled,
    terminate,
    wait_gone,
)
from threadloom.supervisor.worker import KILL_GRACE_S
from threadloom.testing import MODELS

Spawn = Callable[..., Proc]


def worker_pids(proc: Proc, count: int) -> list[int]:
    return [int(proc.expect(r"worker (\d+) ready")[1]) for _ in range(count)]


@pytest.mark.parametrize("model", MODELS)
def test_workers_serve_and_stop_cleanly(spawn: Spawn, model: str) -> None:
    proc = spawn("ops_apps:app", "--workers", "2", "--model", model, "--bind", "127.0.0.1:0")
    pids = worker_pids(proc, 2)
    where = address(proc.serving())
    assert pids_answering(where, 2) == set(pids)
    text = terminate(proc)
    assert "Traceback" not in text
    assert not any(alive(pid) for pid in pids)


def test_killed_worker_is_replaced_while_requests_succeed(spawn: Spawn) -> None:
    proc = spawn("ops_apps:app", "--workers", "2", "--bind", "127.0.0.1:0")
    first, second = worker_pids(proc, 2)
    where = address(proc.serving())
    os.kill(first, signal.SIGKILL)
    for _ in range(20):  # the other worker answers at once; the backlog holds the rest
        assert get(where)[0] == 200
    proc.expect(rf"worker {first} died \(killed by SIGKILL\); starting another")
    (replacement,) = worker_pids(proc, 1)
    assert pids_answering(where, 2) == {second, replacement}
    terminate(proc)


def hammer(where: object, stop: threading.Event, failures: list[str]) -> None:
    """Requests back to back until told to stop; any failure is recorded."""
    while not stop.is_set():
        try:
            status, body = get(where)  # type: ignore[arg-type]
            if status != 200:
                failures.append(f"{status} {body}")
        except OSError as exc:
            failures.append(repr(exc))


def test_sighup_replaces_every_worker_without_a_failed_request(spawn: Spawn) -> None:
    proc = spawn("ops_apps:app", "--workers", "2", "--bind", "127.0.0.1:0")
    old = set(worker_pids(proc, 2))
    where = address(proc.serving())
    stop, failures = threading.Event(), []
    client = threading.Thread(target=hammer, args=(where, stop, failures))
    client.start()
    try:
        proc.send(signal.SIGHUP)
        replaced = [proc.expect(r"worker (\d+) replaced by (\d+)") for _ in range(2)]
    finally:
        stop.set()
        client.join()
    assert {int(m[1]) for m in replaced} == old
    new = {int(m[2]) for m in replaced}
    assert not new & old
    assert all(wait_gone(pid) for pid in old)
    assert pids_answering(where, 2) == new
    assert failures == []
    terminate(proc)


@pytest.mark.parametrize("model", ["pool", "asyncio"])
def test_sigterm_lets_a_slow_request_finish_and_leaves_no_child(spawn: Spawn, model: str) -> None:
    proc = spawn("ops_apps:app", "--workers", "2", "--model", model, "--bind", "127.0.0.1:0")
    pids = worker_pids(proc, 2)
    where = address(proc.serving())
    result: list[tuple[int, str]] = []
    client = threading.Thread(target=lambda: result.append(get(where, "/slow?1")))
    client.start()
    proc.expect("slow request started")
    proc.send(signal.SIGTERM)
    client.join()
    status, text = proc.finish()
    assert status == 0, text
    assert result and result[0][0] == 200, text
    assert int(result[0][1]) in pids
    assert not any(alive(pid) for pid in pids)


def test_unix_socket_survives_workers_coming_and_going(spawn: Spawn, tmp_path: Path) -> None:
    path = tmp_path / "tl.sock"
    proc = spawn("ops_apps:app", "--workers", "2", "--bind", f"unix:{path}")
    worker_pids(proc, 2)
    assert proc.serving() == f"unix:{path}"
    assert get(str(path))[0] == 200
    proc.send(signal.SIGHUP)  # old workers close their copies: the file must stay
    for _ in range(2):
        proc.expect(r"worker \d+ exited")
    assert get(str(path))[0] == 200
    terminate(proc)
    assert not path.exists()


def test_max_requests_recycles_with_jitter(spawn: Spawn) -> None:
    args = ("--workers", "1", "--max-requests", "3", "--max-requests-jitter", "2")
    proc = spawn("ops_apps:app", *args, "--bind", "127.0.0.1:0")
    (first,) = worker_pids(proc, 1)
    where = address(proc.serving())
    answers = [int(get(where)[1]) for _ in range(5)]  # at most 3 + 2 for the first worker
    assert set(answers) == {first}
    proc.expect(rf"worker {first} served its --max-requests: replacing it")
    (second,) = worker_pids(proc, 1)
    proc.expect(rf"worker {first} replaced by {second}")
    assert wait_gone(first)
    assert int(get(where)[1]) == second
    terminate(proc)


def test_reuse_port_gives_each_worker_its_own_socket(spawn: Spawn) -> None:
    proc = spawn("ops_apps:app", "--workers", "2", "--reuse-port", "--bind", "127.0.0.1:0")
    pids = worker_pids(proc, 2)
    where = address(proc.serving())
    assert pids_answering(where, 2) == set(pids)  # the kernel spreads connections
    terminate(proc)


def test_workers_die_with_a_killed_supervisor(spawn: Spawn) -> None:
    proc = spawn("ops_apps:app", "--workers", "2", "--bind", "127.0.0.1:0")
    pids = worker_pids(proc, 2)
    proc.serving()
    proc.send(signal.SIGKILL)
    proc.finish()
    assert all(wait_gone(pid) for pid in pids)


def test_an_app_that_cannot_import_stops_with_one_line(spawn: Spawn) -> None:
    proc = spawn("nosuchmodule:app", "--workers", "2")
    status, text = proc.finish()
    assert status == 2
    assert text.splitlines() == [
        "threadloom: error: cannot import 'nosuchmodule': no module named 'nosuchmodule'"
    ]


def test_a_worker_that_cannot_start_stops_the_server(spawn: Spawn) -> None:
    args = ("--workers", "2", "--model", "asyncio", "--bind", "127.0.0.1:0")
    proc = spawn("ops_apps:failing_lifespan", *args)
    status, text = proc.finish()
    assert status == 2, text
    assert text.splitlines()[-1].startswith("threadloom: error: "), text
    assert "no database" in text.splitlines()[-1]
    assert "starting another" not in text
    assert "Traceback" not in text


def test_workers_that_keep_dying_back_off_then_stop_the_server(spawn: Spawn) -> None:
    args = ("--workers", "1", "--model", "asyncio", "--bind", "127.0.0.1:0")
    proc = spawn("ops_apps:exits_at_start", *args)
    status, text = proc.finish(timeout=30)
    assert status == 2, text
    delays = re.findall(r"died \(exit status 1\); starting another in (\S+)s", text)
    assert delays == ["0.5", "1", "2", "4"], text
    assert text.splitlines()[-1] == (
        "threadloom: error: workers keep exiting before they serve (last: exit status 1); see above"
    )


def test_a_wedged_worker_dies_after_its_supervisor(spawn: Spawn) -> None:
    """The parent-death signal ends a worker for certain: a graceful stop, then SIGKILL
    ``--graceful-timeout`` + KILL_GRACE_S later, even while its app never returns."""
    args = ("--workers", "1", "--model", "single", "--graceful-timeout", "1")
    proc = spawn("ops_apps:wedged", *args, "--bind", "127.0.0.1:0")
    (pid,) = worker_pids(proc, 1)
    where = address(proc.serving())
    client = threading.Thread(target=lambda: _swallow(get, where, "/hang"), daemon=True)
    client.start()
    proc.expect(rf"hanging in {pid}")
    os.kill(proc.pid, signal.SIGKILL)
    proc.finish()
    assert wait_gone(pid, timeout=1 + KILL_GRACE_S + 10), "the wedged worker outlived us"
    client.join(scaled(10))


def _swallow(fn: Callable[..., object], *args: object) -> None:
    try:
        fn(*args)
    except OSError:
        pass  # the worker was killed under the request: that is the point


LOCKED_SIGTERM = """
import os, signal, sys
sys.path.insert(0, {here!r})
from threadloom.server import Server
from threadloom.supervisor.worker import Stopper, handle_signals

server = Server("ops_apps:app", model="single", bind=("127.0.0.1:0",), graceful_timeout=5)
server.start()
handle_signals(Stopper(server, kill_after=60))
with server.model.connections._lock:
    os.kill(os.getpid(), signal.SIGTERM)
    # Python runs the handler here, between two bytecodes, with the lock held: a handler
    # that stopped the server itself would wait for this lock forever.
    for _ in range(1000):
        pass
    print("handler ran with the lock held", flush=True)
server.serve_forever()
print("stopped", flush=True)
"""


def run_script(path: Path, text: str, hung: str) -> list[str]:
    """Run ``text`` as a Python script (with the tests' path); its output lines once it
    exits with status 0, or fail with ``hung`` and its output if it runs past 20 s."""
    path.write_text(text)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
    )
    try:
        out, _ = proc.communicate(timeout=scaled(20))
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"{hung}:\n{out.decode()}") from None
    assert proc.returncode == 0, out.decode()
    return out.decode().splitlines()


def test_sigterm_while_the_main_thread_holds_the_connections_lock(tmp_path: Path) -> None:
    script = LOCKED_SIGTERM.format(here=str(Path(__file__).parent))
    lines = run_script(tmp_path / "locked.py", script, "the worker deadlocked on its own signal")
    assert lines[-2:] == ["handler ran with the lock held", "stopped"]


SIGNAL_ON_ANOTHER_THREAD = """
import signal, sys, threading
sys.path.insert(0, {here!r})
from threadloom.server import Server, run_with_signals
from threadloom.supervisor.worker import Stopper, handle_signals

server = Server("ops_apps:app", model={model!r}, bind=("127.0.0.1:0",), graceful_timeout=5)
server.start()


def deliver() -> None:
    server.model.ready.wait()
    watcher = next(t for t in threading.enumerate() if t.name == {watcher!r})
    # The kernel may hand a process-directed signal to any thread: here, for certain, to
    # one that is not the main thread, which sleeps in its poll with nothing to serve.
    signal.pthread_kill(watcher.ident, signal.SIGTERM)


threading.Thread(target=deliver, daemon=True).start()
if {worker!r}:
    handle_signals(Stopper(server, kill_after=60))
    server.serve_forever()
else:
    run_with_signals(server)
print("stopped", flush=True)
"""


@pytest.mark.parametrize("worker", [False, True], ids=["server", "worker"])
@pytest.mark.parametrize("model", MODELS)
def test_a_signal_delivered_to_another_thread_stops_the_server(
    tmp_path: Path, model: str, worker: bool
) -> None:
    watcher = "threadloom-worker-signals" if worker else "threadloom-signals"
    script = SIGNAL_ON_ANOTHER_THREAD.format(
        here=str(Path(__file__).parent), model=model, watcher=watcher, worker=worker
    )
    lines = run_script(tmp_path / "elsewhere.py", script, "SIGTERM on another thread was ignored")
    assert lines[-1] == "stopped"


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no sched_setaffinity here")
def test_pin_workers_runs_each_worker_on_one_cpu_and_keeps_it_for_a_replacement(
    spawn: Spawn,
) -> None:
    """Worker n runs on the n-th usable CPU, round (three workers on two CPUs share one);
    a worker started in place of a killed one runs where its slot did."""
    cpus = sorted(os.sched_getaffinity(0))
    expected = sorted(cpus[n % len(cpus)] for n in range(3))
    proc = spawn("ops_apps:app", "--workers", "3", "--pin-workers", "--bind", "127.0.0.1:0")
    pids = worker_pids(proc, 3)
    where = address(proc.serving())
    assert pids_answering(where, 3) == set(pids)
    pinned = {pid: os.sched_getaffinity(pid) for pid in pids}
    assert all(len(allowed) == 1 for allowed in pinned.values()), pinned
    assert sorted(next(iter(allowed)) for allowed in pinned.values()) == expected
    victim = pids[0]
    os.kill(victim, signal.SIGKILL)
    proc.expect(rf"worker {victim} died")
    (replacement,) = worker_pids(proc, 1)
    assert os.sched_getaffinity(replacement) == pinned[victim]
    text = terminate(proc)
    assert "--pin-workers: each worker runs on one of CPUs" in text


def test_pin_workers_without_workers_is_one_line(spawn: Spawn) -> None:
    status, text = spawn("ops_apps:app", "--pin-workers").finish()
    assert status == 2
    assert text.splitlines() == [
        "threadloom: error: --pin-workers needs --workers (one process: run it under taskset -c N)"
    ]
