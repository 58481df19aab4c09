"""Atomic file writes: a crash or kill mid-write leaves the previous file intact.

The temporary file is ``.NAME.PID.RANDOM.tmp`` beside the file it replaces. A writer killed
with SIGKILL cannot remove it, so each write first removes the temporary files of the same
target whose writer is gone (the PID names it), and unnamed ones (older versions') untouched for
over a minute.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

#: an unnamed temporary file untouched this long is taken as abandoned
STALE_AFTER_S = 60.0
#: one whose PID is alive (maybe reused by another process) only after this long
STALE_PID_ALIVE_AFTER_S = 24 * 3600.0


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT there; trust the age alone
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process, or we cannot tell: leave its file alone
    return True


def remove_stale_temps(path: Path) -> list[Path]:
    """Remove temporary files that dead writers left beside ``path``; return what was removed."""
    ours = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\.[0-9a-f]+\.tmp")
    unnamed = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp")  # tempfile.mkstemp's
    removed: list[Path] = []
    now = time.time()
    try:
        candidates = [e for e in os.scandir(path.parent) if e.name.startswith(f".{path.name}.")]
    except OSError:
        return removed
    for entry in candidates:
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if m := ours.fullmatch(entry.name):
            pid = int(m.group(1))
            if pid == os.getpid():
                continue  # another thread of this process may be writing it now
            stale = not _pid_alive(pid) or age > STALE_PID_ALIVE_AFTER_S
        else:
            stale = unnamed.fullmatch(entry.name) is not None and age > STALE_AFTER_S
        if stale:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Write to a temporary file beside ``path``, fsync it, then ``os.replace`` it into place.

    Like ``open(path, "w")``: a new file gets ``0o666 & ~umask``, a replaced one keeps its mode,
    and a symlink is written through (its target is replaced, the link stays).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        old = os.stat(path)
    except OSError:
        old = None
    if old is not None and not stat.S_ISREG(old.st_mode):  # never swap a device, FIFO or folder for a file
        kind = ("a folder" if stat.S_ISDIR(old.st_mode) else "a FIFO" if stat.S_ISFIFO(old.st_mode)
                else "a device" if stat.S_ISCHR(old.st_mode) or stat.S_ISBLK(old.st_mode) else "not a regular file")
        raise IsADirectoryError(errno.EISDIR if stat.S_ISDIR(old.st_mode) else errno.EINVAL,
                                f"{path} is {kind}; choose a file name to write", str(path))
    keep_mode = stat.S_IMODE(old.st_mode) & 0o777 if old is not None else None
    remove_stale_temps(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, flags, 0o666)  # the kernel applies the umask, as for open()
            break
        except FileExistsError:
            continue
    try:
        if keep_mode is not None and hasattr(os, "fchmod"):
            with contextlib.suppress(OSError):  # a filesystem without modes: keep its default
                os.fchmod(fd, keep_mode)
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_write(path, "w") as fh:
        fh.write(text)
