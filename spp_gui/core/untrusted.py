"""Reading a small text file someone may have sent (a mapping, a run config, an autosave) as data."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import MappingError, SppError


def read_untrusted_text(path: Path, what: str = "mapping file", error: type[SppError] = MappingError,
                        kind: str = "a mapping .json file", limit: int = 256 * 2**20) -> str:
    """The text of a file someone may have sent: a regular file only, at most ``limit`` bytes.

    A FIFO would block ``open`` forever and ``/dev/zero`` would be read until memory runs out,
    so the kind and size are checked before reading, and again on the opened descriptor. Every
    problem is one ``error`` naming the file (``what``: how messages call it).
    """
    def refuse(st: os.stat_result) -> None:
        if not stat.S_ISREG(st.st_mode):
            found = ("a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                     else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "a socket or other")
            raise error(f"{path} is not a regular file (it is {found}); choose {kind}")
        if st.st_size > limit:
            raise error(f"{path} is {st.st_size / 2**20:.0f} MiB; a {what} is at most "
                        f"{limit / 2**20:.0f} MiB, so this is not one")

    try:
        refuse(os.stat(path))
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise error(f"cannot read {what} {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        with os.fdopen(fd, "rb") as fh:
            refuse(os.fstat(fh.fileno()))  # the path may have been swapped since the stat
            raw = fh.read(limit + 1)
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(raw) > limit:
        raise error(f"{path} grew past {limit / 2**20:.0f} MiB while being read; it is not a {what}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path} is not UTF-8 text (byte {exc.start}); save the {what} as UTF-8") from None
