"""One writer per NoiseStore: an exclusive lock file inside the store, naming its holder.

The lock is ``PATH/writer.lock``: ``fcntl.flock`` on it, exclusive and non-blocking, held for
as long as the store is open for writing; its content says who holds it (process id, host,
command line, since when).  The operating system releases a flock when its process dies, by
any signal, so a lock is never left held by a dead process: a lock file that can be locked but
still names a holder is a *stale* lock of a process that died while writing, taken over with a
warning.  A clean close empties and unlocks the file (it is not removed: removing a lock file
that another process has just opened would let two writers in).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import sys
import warnings
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; the lock then only names a holder
    fcntl = None

from ..errors import SgnMemoryError

LOCK_NAME = "writer.lock"

_HELD: set[int] = set()  # descriptors of the locks this process holds


def _drop_inherited() -> None:
    """In a forked child (a DataLoader worker): close the copies of the parent's lock
    descriptors, so that the lock is the parent's alone and dies with it (a flock belongs to the
    open file, which a fork shares; closing the child's copy does not release the parent's)."""
    for fd in list(_HELD):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited)


def _holder_text(info: dict) -> str:
    if not info or not isinstance(info.get("pid"), int):
        return "a process that did not record who it was"
    parts = [f"process {info.get('pid', '?')} on {info.get('host', '?')}"]
    if info.get("since"):
        parts.append(f"since {info['since']}")
    if info.get("command"):
        parts.append(f"running {info['command'][:120]!r}")
    return ", ".join(parts)


def _read_holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 1 << 16).decode("utf-8", "replace").strip()
        info = json.loads(text) if text else {}
        return info if isinstance(info, dict) else {"pid": "?"}
    except (OSError, ValueError):
        return {"pid": "?"}


class WriterLock:
    """The exclusive writer lock of the store directory ``path`` (which must exist)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.file = self.path / LOCK_NAME
        self.fd: int | None = None

    def acquire(self, *, warn_stale: bool = True) -> WriterLock:
        """Take the lock or raise :class:`SgnMemoryError` naming its live holder; a stale
        lock (its holder died while writing) is taken over, with a warning if ``warn_stale``."""
        while True:
            try:
                # O_CLOEXEC: a program this process execs does not inherit the lock either
                fd = os.open(self.file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as err:
                raise SgnMemoryError(
                    f"cannot take the writer lock of {self.path} ({err.strerror or err})."
                ) from None
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    holder = _read_holder(fd)
                    os.close(fd)
                    raise SgnMemoryError(
                        f"the NoiseStore {self.path} is being written by {_holder_text(holder)}; "
                        "a store has one writer at a time (wait for it, or write another path)."
                    ) from None
            try:  # the file we locked must still be the one at the path (not unlinked)
                same = os.path.samestat(os.fstat(fd), os.stat(self.file))
            except OSError:
                same = False
            if same:
                break
            os.close(fd)
        previous = _read_holder(fd)
        if warn_stale and previous and previous.get("pid") != os.getpid():
            warnings.warn(
                f"sgn_memory: taking over the writer lock of {self.path}, left by "
                f"{_holder_text(previous)}, which is no longer running (it did not close the "
                "store: rows it had not written are lost).",
                RuntimeWarning,
                stacklevel=4,
            )
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv)[:500],
        }
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(info) + "\n").encode())
        self.fd = fd
        _HELD.add(fd)
        return self

    def release(self) -> None:
        """Empty the lock file (no holder) and unlock it; idempotent."""
        fd, self.fd = self.fd, None
        if fd is None:
            return
        _HELD.discard(fd)
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        finally:
            os.close(fd)  # closing the descriptor releases the flock


def holder(path: Path) -> dict | None:
    """Who holds the writer lock of ``path`` now (``None``: nobody)."""
    file = Path(path) / LOCK_NAME
    try:
        fd = os.open(file, os.O_RDONLY)
    except OSError:
        return None
    try:
        if fcntl is None:
            return _read_holder(fd) or None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _read_holder(fd) or {"pid": "?"}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
