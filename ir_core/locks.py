"""Advisory locks that keep two processes from writing one output at once.

A lock is a small file held with ``flock`` (released by the kernel when its holder dies, so a killed
run never leaves a stale lock behind) and holding who took it: pid, host and time. A second writer fails
at once with a message naming the holder, or, when asked (``wait`` seconds, or the environment variable
``IR_LOCK_WAIT``; ``inf`` waits for ever), waits for the holder to finish.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import math
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType

from ir_core.errors import InputError

WAIT_ENV = "IR_LOCK_WAIT"
_POLL_S = 0.2


class LockHeld(InputError):
    """Another process holds the lock; `holder` is what it wrote into the lock file (may be empty)."""

    def __init__(self, what: str, path: Path, holder: dict):
        self.what, self.path, self.holder = what, path, holder
        who = (f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"
               if holder.get("pid") else "another process")
        super().__init__(f"{what} is being written by {who} (lock {path}); wait for it to finish, "
                         f"stop it, or set {WAIT_ENV}=<seconds> to wait")


def wait_from_env() -> float:
    """Seconds to wait for a held lock, from `IR_LOCK_WAIT` (default 0: fail at once)."""
    raw = os.environ.get(WAIT_ENV, "").strip()
    if not raw:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"{WAIT_ENV}={raw!r}: expected a number of seconds or 'inf'") from None
    if math.isnan(value) or value < 0:
        raise InputError(f"{WAIT_ENV}={raw!r}: expected a number of seconds >= 0 or 'inf'")
    return value


def read_holder(path: str | Path) -> dict:
    """What the current holder wrote into the lock file ({} if nothing readable)."""
    try:
        info = json.loads(Path(path).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


class FileLock:
    """An exclusive ``flock`` on `path`, as a context manager; not re-entrant (use one per writer)."""

    def __init__(self, path: str | Path, what: str | None = None, wait: float | None = None,
                 remove: bool = False):
        self.path = Path(path)
        self.what = what or str(self.path)
        self.wait = wait
        self.remove = remove  # delete the lock file on release (it is not left beside the output)
        self._fd: int | None = None

    def _open_locked(self, deadline: float) -> int:
        """An fd of `path` holding the flock; retried when the file was removed and re-created meanwhile."""
        told = False
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() >= deadline:
                    raise LockHeld(self.what, self.path, read_holder(self.path)) from None
                if not told:
                    print(f"waiting: {LockHeld(self.what, self.path, read_holder(self.path))}", file=sys.stderr)
                    told = True
                time.sleep(_POLL_S)
                continue
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)  # we locked a file its last holder had already removed: take the new one

    def acquire(self) -> FileLock:
        if self._fd is not None:
            raise RuntimeError(f"{self.path}: lock already held by this object")
        wait = wait_from_env() if self.wait is None else self.wait
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = self._open_locked(time.monotonic() + wait)
        try:
            holder = {"pid": os.getpid(), "host": socket.gethostname(),
                      "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "what": self.what}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if self.remove:
                self.path.unlink(missing_ok=True)  # while still locked: a waiter re-checks the inode
            else:
                os.ftruncate(fd, 0)  # a reader after us finds no stale holder
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def stage_lock(run_dir: str | Path, stage: str, wait: float | None = None) -> FileLock:
    """The lock of one stage of one run directory (``<run_dir>/.locks/<stage>.lock``)."""
    run_dir = Path(run_dir)
    return FileLock(run_dir / ".locks" / f"{stage}.lock", what=f"stage '{stage}' of {run_dir}", wait=wait)


def sibling_lock(path: str | Path, wait: float | None = None) -> FileLock:
    """A lock beside an output folder (``.<name>.lock``), taken while the folder is rebuilt."""
    path = Path(path)
    return FileLock(path.parent / f".{path.name}.lock", what=str(path), wait=wait, remove=True)
