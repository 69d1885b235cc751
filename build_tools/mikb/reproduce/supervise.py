"""Running a script in a child process that cannot outlive, hang or mislead the runner.

* The child ignores SIGINT: a terminal's Ctrl-C reaches the whole process group, and the
  runner, not the script, decides what an interruption means (a script catching
  KeyboardInterrupt would otherwise report it as a failure).
* The runner turns SIGINT/SIGTERM into an interruption (:func:`forward_signals`): the child
  gets SIGTERM, then SIGKILL after :data:`GRACE_S`, and the run is reported ``interrupted``
  (nothing is written over the previous results).
* The child dies with its parent: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` on Linux, a thread
  polling the parent pid elsewhere, so a SIGKILLed runner leaves no orphan training on.
* A child that ends without reporting is described by how it ended (its exit code or signal),
  never as a timeout.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

GRACE_S = 5.0
_POLL_S = 0.2
_PR_SET_PDEATHSIG = 1
_FORWARDED = (signal.SIGINT, signal.SIGTERM)


class _Interrupt:
    """Which signal asked the runner to stop (shared by the worker threads of --jobs)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None
        self.depth = 0

    def set(self, signum: int) -> None:
        self.signum = self.signum or signum
        self.event.set()

    def clear(self) -> None:
        self.signum = None
        self.event.clear()


INTERRUPT = _Interrupt()


def interrupted() -> int | None:
    """The signal that interrupted this run of the runner, or None."""
    return INTERRUPT.signum if INTERRUPT.event.is_set() else None


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


@contextmanager
def forward_signals() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into an interruption of the running children while inside.

    Only the main thread may install handlers; elsewhere (a library caller's thread) this does
    nothing. Nested uses share the outer one's state.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if INTERRUPT.depth == 0:
        INTERRUPT.clear()
        previous = {sig: signal.getsignal(sig) for sig in _FORWARDED}
        for sig in _FORWARDED:
            signal.signal(sig, lambda signum, _frame: INTERRUPT.set(signum))
    INTERRUPT.depth += 1
    try:
        yield
    finally:
        INTERRUPT.depth -= 1
        if INTERRUPT.depth == 0:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def run_child(target: Callable[..., None], job: dict[str, Any], timeout_s: float) -> tuple[str, dict[str, Any]]:
    """Run ``target(job, conn)`` in a spawned child; returns (status, payload).

    status is what the child sent (ok | failed | unavailable), or ``failed`` for a timeout or a
    child that died without reporting, or ``interrupted``.
    """
    ctx = mp.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=target, args=({**job, "parent_pid": os.getpid()}, sender), daemon=True)
    proc.start()
    sender.close()
    deadline = time.monotonic() + timeout_s
    result: tuple[str, dict[str, Any]] | None = None
    while result is None:
        if interrupted():
            end_child(proc)
            return _interrupted_payload()
        if time.monotonic() > deadline:
            end_child(proc)
            return "failed", {"error": f"timed out after {timeout_s:g} s (the script was still running)", "log": ""}
        alive = proc.is_alive()
        result = _receive(receiver, _POLL_S)
        if result is None and not alive:
            result = _receive(receiver, 0)  # sent just before exiting
            break
    proc.join(10)
    end_child(proc)  # a child still busy after reporting (a stray non-daemon thread) must not linger
    if result is None:
        if interrupted():
            return _interrupted_payload()
        return "failed", {"error": death_message(proc.exitcode), "log": ""}
    return result


def _interrupted_payload() -> tuple[str, dict[str, Any]]:
    signum = interrupted() or signal.SIGINT
    return "interrupted", {"error": f"interrupted by {signal_name(signum)}", "log": "", "signum": int(signum)}


def _receive(conn: Any, wait_s: float) -> tuple[str, dict[str, Any]] | None:
    try:
        return conn.recv() if conn.poll(wait_s) else None
    except (EOFError, OSError):
        return None  # the child closed the pipe without sending (it died)


def death_message(exitcode: int | None) -> str:
    """Why a child ended without reporting, in words a script author can act on."""
    if exitcode is None:
        return "the script process did not exit"
    if exitcode < 0:
        name = signal_name(-exitcode)
        hint = " (by the kernel's out-of-memory killer, or a kill -9)" if -exitcode == signal.SIGKILL else ""
        return f"the script process was killed by {name}{hint} before reporting its results"
    return (f"the script process exited with code {exitcode} before reporting its results "
            "(os._exit, or a crash in native code); it must return from run(ctx)")


def end_child(proc: Any, grace_s: float = GRACE_S) -> None:
    """SIGTERM, then SIGKILL if the child is still there after ``grace_s``."""
    if proc.is_alive():
        proc.terminate()
        proc.join(grace_s)
    if proc.is_alive():
        proc.kill()
        proc.join(5)


def prepare_child(parent_pid: int) -> None:
    """First thing in the child: leave SIGINT to the parent and die with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not _set_parent_death_signal():
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os._exit(1)


def _set_parent_death_signal() -> bool:
    """``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills us when the parent exits."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(1)
