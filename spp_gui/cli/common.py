"""What every subcommand shares: safe terminal output, input and output checks, OS error
messages, JSON, the progress line, and the options several commands take (-q, --source-key)."""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import shutil
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ..core.errors import SppError
from ..core.sources import join_source_key, split_source_key

EXIT_USER_ERROR = 2
#: the longest file or folder name the common filesystems allow, in bytes
NAME_MAX = 255
PATH_MAX = 4096
#: seconds of work before a progress line appears: a quick job leaves no trace
PROGRESS_DELAY = 0.3


def colour_enabled(stream=sys.stdout) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def paint(text: str, code: str, enabled: bool) -> str:
    return f"\033[{code}m{text}\033[0m" if enabled else text


def printable(text: object) -> str:
    """``text`` with every control character escaped (``\\x1b``, ``\\n``, ``\\u202e``), other text as it is.

    Keys, specs and messages come from files someone else wrote; raw, an ANSI or OSC sequence in a
    tensor name would clear the screen, retitle the terminal or forge a line of output.
    """
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def announce(text: str) -> None:
    print(f"spp-gui: {printable(text)}", file=sys.stderr)


def shorten(text: str, width: int = 60) -> str:
    text = printable(text)
    return text if len(text) <= width else text[:width - 1] + "…"


def check_name_lengths(text: str, what: str) -> None:
    """A path or spec no filesystem could hold is one message, not ENAMETOOLONG from deep inside."""
    raw = os.fsencode(text)
    if len(raw) > PATH_MAX:
        raise SppError(f"{what} '{shorten(text)}' is {len(raw):,} bytes long; a path may have at most "
                       f"{PATH_MAX:,}: shorten it")
    longest = max(raw.split(b"/"), key=len)
    if len(longest) > NAME_MAX:
        raise SppError(f"{what} '{shorten(text)}' has a part of {len(longest)} bytes; a file or folder name, and a "
                       f"spec, may have at most {NAME_MAX}: shorten it")


def check_inputs(*named: tuple[str, str | None]) -> None:
    """:func:`check_name_lengths` for each ``(what, text)`` given; ``what`` names the argument as typed."""
    for what, text in named:
        if text is not None:
            check_name_lengths(text, what)


def check_output(path: str, example: str, what: str = "-o") -> None:
    """Refuse an output path that cannot be written before any work is done.

    A folder, a device or FIFO (``-o /dev/full`` would be replaced by a file), a path under a file,
    or a folder this user cannot write into: each is one message naming the path and the fix.
    """
    check_name_lengths(path, what)
    target = Path(path).expanduser()
    where = f"{what} {printable(path)}"
    if os.path.lexists(target):
        try:
            st = os.stat(target)  # through a symlink: the file it names is what gets replaced
        except OSError as exc:
            raise SppError(f"{where}: {exc.strerror}; name a file that can be written") from None
        if stat.S_ISDIR(st.st_mode):
            raise SppError(f"{where} is a folder; name a file inside it, e.g. {printable(target / example)}")
        if not stat.S_ISREG(st.st_mode):
            raise SppError(f"{where} is not a regular file (a device, FIFO or socket); name a regular file")
        target = Path(os.path.realpath(target))
    folder = target.parent
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    if not os.path.isdir(folder):
        raise SppError(f"{where}: {printable(folder)} is a file, not a folder; choose another place")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SppError(f"{where}: the folder {printable(folder)} is not writable; choose a folder you can write to")


_ENV_ERRNOS = {errno.ENOSPC: "free some space or write elsewhere", errno.EDQUOT: "free some space or write elsewhere",
               errno.EFBIG: "the file system or a limit (ulimit -f) refuses a file this big; write elsewhere",
               errno.EACCES: "check the permissions or choose another place",
               errno.EPERM: "check the permissions or choose another place",
               errno.EROFS: "the file system is read-only; choose another place",
               errno.ENAMETOOLONG: f"a file or folder name may have at most {NAME_MAX} bytes; shorten it",
               errno.EIO: "the device reported an error; check the disk",
               errno.ENOENT: "check the path", errno.ENOTDIR: "a part of the path is a file, not a folder",
               errno.EISDIR: "name a file, not a folder", errno.EMFILE: "too many open files; raise ulimit -n",
               errno.ENFILE: "too many open files on this machine"}


def os_error_in(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc``, if the machine (disk, permissions, limits) is what failed.

    torch.save on a full disk raises RuntimeError("unexpected pos ..."), with the real ENOSPC as its context.
    """
    seen = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _ENV_ERRNOS:
            return current
        current = current.__cause__ or current.__context__
    return None


_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def os_error_message(exc: OSError, output: str | None = None) -> str:
    """One line naming the file (the file being written, not its hidden temporary) and what would fix it.

    A write that fails on a full disk names no file; ``output``, the file the command writes, is the one.
    """
    where = f"writing {output}: " if output is not None and exc.filename is None and exc.errno in _WRITE_ERRNOS else ""
    if exc.filename is not None:
        name = os.fsdecode(exc.filename) if isinstance(exc.filename, bytes) else str(exc.filename)
        where = re.sub(r"(^|/)\.(.+)\.\d+\.[0-9a-f]+\.tmp$", r"\1\2", name) + ": "
    hint = _ENV_ERRNOS.get(exc.errno, "check the path") if exc.errno is not None else "check the path"
    return f"{printable(where)}{exc.strerror or exc}; {hint}"


def print_json(data) -> None:
    json.dump(data, sys.stdout, indent=1)
    sys.stdout.write("\n")


class ProgressLine:
    """A one-line progress report on stderr, redrawn in place: ``label  1.2 GB of 2.1 GB  57%  1.6 GB/s  ETA 0:01``.

    Shown only on a terminal, only once the work has taken ``delay`` seconds (PROGRESS_DELAY), and at most ``rate`` times a second; :meth:`close` wipes it. Call it as ``(done, total)``
    or ``(done, total, key)``, counting bytes: the callbacks of ``Source.sha256`` and ``apply_to_file``.
    """

    def __init__(self, label: str, *, enabled: bool = True, delay: float | None = None, rate: float = 10.0,
                 stream=None, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and self.stream.isatty() and os.environ.get("TERM") != "dumb"
        self.delay = PROGRESS_DELAY if delay is None else delay
        self.label, self.interval, self.clock = label, 1.0 / rate, clock
        self.start = clock()
        self.last = -float("inf")
        self.shown = False

    def __call__(self, done: int, total: int, key: str = "") -> None:
        if not self.enabled:
            return
        now = self.clock()
        if now - self.start < self.delay or (now - self.last < self.interval and done < total):
            return
        self.last = now
        from ..core.apply import format_progress

        line = f"{printable(self.label)}  {format_progress(done, total, now - self.start)}"
        if key:
            line += f"  {shorten(key, 40)}"
        width = shutil.get_terminal_size().columns - 1  # a wrapped line cannot be redrawn in place
        self.stream.write(f"\r\033[K{line[:max(width, 20)]}")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.shown = False


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print only errors, warnings and the final summary line")


def with_source_key(spec: str | None, key: str | None) -> str | None:
    """``spec`` reading container ``key`` (``PATH#KEY``), replacing one the spec names; unchanged without a key."""
    if key is None or not spec:
        return spec
    return join_source_key(split_source_key(spec)[0], key)


def add_source_key(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source-key", metavar="KEY",
                   help="the weight container of a checkpoint holding several (state_dict, state_dict_ema, model_ema, "
                        "...); default: EMA weights first, as timm chooses. Same as the spec PATH#KEY")


def human(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)
