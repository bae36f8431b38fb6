"""SQLite serves one daemon: a second `maild run` on the same file refuses to start (it would
only contend for the file's write lock). The first holds an exclusive `flock` on a file
beside the database for as long as it runs; the kernel lets go when it ends, however it
ends."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from maild.errors import MaildError


class AlreadyRunning(MaildError):
    """Another daemon works this SQLite database."""


@contextlib.contextmanager
def only_daemon(database: Path) -> Iterator[None]:
    lock = database.with_name(database.name + ".daemon-lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise AlreadyRunning(
                f"another maild daemon (pid {holder}) is running on {database}; SQLite serves "
                "one daemon: for several, use PostgreSQL (database.url)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
