"""Publishing a finished run's folder over the previous results, so that none is ever lost.

Guarantee: at every instant the previous results or the new ones are complete at
``results/<folder>/``.

* Where there are no previous results, one ``rename`` moves the staging folder in.
* Where there are, Linux's ``renameat2(..., RENAME_EXCHANGE)`` swaps staging and results in one
  atomic step; the old results are then under the staging name and are deleted.
* Where the exchange is unsupported (not Linux, an old kernel or C library, a filesystem
  without it), two renames are used: results -> ``.old-<folder>-<pid>``, staging -> results.
  Between them nothing is at ``results/<folder>/``, but a complete copy is on disk under
  ``.old-*``; the next run restores it (:func:`recover`) before doing anything else.

A results folder is guarded by a lock (``results/.<folder>.lock``, ``flock``, never
deleted) held for the whole run, so two runs of the same circuit and model cannot remove each
other's staging or publish over each other; and so :func:`recover` may treat every leftover
of that folder as abandoned.

``MIKB_FAULT_AT=<step>`` ends the process with ``os._exit`` at a named step: that is how the
fault tests kill the runner at every instant of publication. It costs one lookup otherwise.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import re
import shutil
from pathlib import Path

FAULT_ENV = "MIKB_FAULT_AT"
FAULT_EXIT_CODE = 86
NO_EXCHANGE_ENV = "MIKB_NO_RENAME_EXCHANGE"  # force the two-rename fallback (tests, odd filesystems)
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV}


def fault_point(step: str) -> None:
    """Die here, as abruptly as a SIGKILL, when ``MIKB_FAULT_AT`` names this step."""
    if os.environ.get(FAULT_ENV) == step:
        os._exit(FAULT_EXIT_CODE)


class LockHeld(Exception):
    """Another process holds the lock of a results folder."""

    def __init__(self, pid: int | None) -> None:
        super().__init__(pid)
        self.pid = pid


class FolderLock:
    """An exclusive, non-blocking ``flock`` on ``<outputs>/.<folder>.lock``, holding our pid.

    ``flock`` is released by the kernel when its holder dies, however it dies, so a killed
    run never leaves a stale lock. The file is not deleted on release: a process that opened
    it meanwhile would lock a deleted file while a third one locks a new one.
    """

    def __init__(self, outputs_dir: Path, folder: str) -> None:
        self.path = outputs_dir / f".{folder}.lock"
        self._fd: int | None = None

    def __enter__(self) -> FolderLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise LockHeld(holder) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError):
        return None  # the holder has not written its pid yet


def staging_path(outputs_dir: Path, folder: str) -> Path:
    return outputs_dir / f".staging-{folder}-{os.getpid()}"


def leftovers(outputs_dir: Path, folder: str) -> list[Path]:
    """Staging and backup folders of ``folder`` left by killed runs (exact names only: the
    leftovers of model ``gpt2`` are not those of ``gpt2-small``)."""
    pattern = re.compile(rf"^\.(staging|old)-{re.escape(folder)}-\d+$")
    if not outputs_dir.is_dir():
        return []
    return sorted(p for p in outputs_dir.iterdir() if pattern.match(p.name) and p.is_dir())


def is_complete(folder: Path) -> bool:
    """A published-quality folder: its results.json parses and names only files present, or it
    is a "not run"/failure record. The runner writes results.json last, so a staging folder
    holding one has everything."""
    results = _read(folder / "results.json")
    if results is not None:
        return all((folder / fig.get("file", "")).is_file() for fig in results.get("figures", []))
    return _read(folder / "failure.json") is not None


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def recover(outputs_dir: Path, folder: str) -> list[str]:
    """Restore or clean what killed runs left behind; call it holding the folder's lock.

    Where ``results/<folder>/`` is missing (a run killed between the fallback's two renames),
    a complete ``.old-*`` copy is put back (what was in place before), else the newest
    complete staging folder (a run killed after finishing, before publishing its first
    results). Incomplete leftovers are deleted; complete ones only once a complete copy is in
    place, so the only copy of good results is never deleted. Returns what was done, for the log.
    """
    final = outputs_dir / folder
    found = leftovers(outputs_dir, folder)
    complete = [p for p in found if is_complete(p)]
    done: list[str] = []
    if not final.exists() and complete:
        olds = [p for p in complete if p.name.startswith(".old-")]
        chosen = (olds or sorted(complete, key=lambda p: p.stat().st_mtime))[-1]
        chosen.rename(final)
        found.remove(chosen)
        done.append(f"restored {folder}/ from {chosen.name} (left by a killed run)")
    for path in found:  # final is complete now, or no leftover was
        shutil.rmtree(path, ignore_errors=True)
        done.append(f"removed {path.name} (left by a killed run)")
    return done


def publish(staging: Path, final: Path) -> str:
    """Put ``staging`` at ``final`` keeping old-or-new complete in place; returns how
    ("rename", "exchange" or "two renames")."""
    if not final.exists():
        staging.rename(final)
        fault_point("published")
        return "rename"
    if exchange(staging, final):
        fault_point("exchanged")
        shutil.rmtree(staging, ignore_errors=True)  # now the old results
        return "exchange"
    backup = final.with_name(f".old-{final.name}-{os.getpid()}")
    final.rename(backup)
    fault_point("moved-old")
    try:
        staging.rename(final)
    except BaseException:
        if not final.exists():
            backup.rename(final)
        raise
    fault_point("published")
    shutil.rmtree(backup, ignore_errors=True)
    return "two renames"


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically; False where the system cannot (then nothing moved)."""
    if os.environ.get(NO_EXCHANGE_ENV):
        return False
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _renameat2():  # noqa: ANN202 - a ctypes function pointer
    """glibc's ``renameat2`` (2.28+), or None (musl, macOS, older glibc)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        func = libc.renameat2
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


def fsync_tree(folder: Path) -> None:
    """Flush a staging folder's files and the folder itself before it is published, so a power
    cut after publication cannot leave published names pointing at unwritten data."""
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
