"""Atomic file writes: a reader (or a killed process) never sees half a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows.

    ``os.umask`` can only be read by setting it, which briefly changes it for every thread of
    the process (the runner writes from worker threads), so ``/proc/self/status`` comes first.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write via a temporary file and rename. ``durable`` also fsyncs before the rename (results
    and entries); regenerable output (the site source) skips it, being cheap to recreate.

    ``mkstemp`` creates its file mode 0600 (it is meant for secrets); the file is given the mode
    an ordinary ``open`` would (``0o666`` less the umask) so results and pages stay readable to
    the web server, collaborators and CI caches.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o666 & ~current_umask())
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))
