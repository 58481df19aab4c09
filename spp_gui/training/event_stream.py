"""Training events as JSON lines, and reading a torchrun job's console back into events.

``spp-gui train --events-jsonl`` prints every engine event of rank 0 as one JSON object per line
on stdout, so another process (the GUI's Train panel, a script) can follow a run it launched.
Launched with ``torchrun --tee 3``, each line a rank prints reaches the console as
``[default<rank>]:<line>``; ``ConsoleReader`` turns that stream back into events, keeps the last
lines of every rank, and explains a failed job from torchrun's "Root Cause" summary. A single
process started without torchrun (the Train panel's "own process" runs) prints its lines bare:
``ConsoleReader(prefixed=False)`` reads every line as rank 0's.
"""

from __future__ import annotations

import json
import re
import signal
from collections import deque
from dataclasses import asdict, dataclass, fields
from typing import IO

from .events import ENDINGS, CheckpointSaved, Epoch, Event, Failed, Finished, Message, Started, Step, Stopped

#: the name each event has on the wire: ``Stopped`` keeps the name it had before its rename
#: (``Cancelled``), so scripts that read ``--events-jsonl`` keep working
WIRE_NAMES: dict[type[Event], str] = {cls: cls.__name__ for cls in
                                      (Started, Step, Epoch, CheckpointSaved, Finished, Failed, Message)} | {
                                          Stopped: "Cancelled"}
EVENT_TYPES: dict[str, type[Event]] = {name: cls for cls, name in WIRE_NAMES.items()}
_RANK_PREFIX = re.compile(r"^\[[A-Za-z_-]*?(\d+)\]:(.*)$")
_SUMMARY_RANK = re.compile(r"^\s*rank\s*:\s*(\d+)\s*\(local_rank:\s*(\d+)\)")
_SUMMARY_EXIT = re.compile(r"^\s*exitcode\s*:\s*(-?\d+)")


def event_to_json(event: Event) -> str:
    """One line: ``{"event": "<wire name>", ...its fields}`` (NaN stays NaN, as Python's json writes it)."""
    return json.dumps({"event": WIRE_NAMES.get(type(event), type(event).__name__), **asdict(event)}, separators=(",", ":"))


def event_from_json(line: str) -> Event | None:
    """The event a line holds, or None for any other line (log text, a partial or foreign object)."""
    line = line.strip()
    if not line.startswith('{"event":'):
        return None
    try:
        data = json.loads(line)
        cls = EVENT_TYPES[data.pop("event")]
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
    except (ValueError, KeyError, TypeError):
        return None


class JsonLinesEmitter:
    """An ``on_event`` callback that writes each event as a line and flushes (a reader waits on it)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def __call__(self, event: Event) -> None:
        self.stream.write(event_to_json(event) + "\n")
        self.stream.flush()


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


@dataclass
class RankFailure:
    """One entry of torchrun's failure summary."""

    rank: int
    local_rank: int
    exit_code: int | None = None  # negative: killed by that signal
    root_cause: bool = False  # the failure torchrun saw first

    def how(self) -> str:
        if self.exit_code is None:
            return "failed"
        if self.exit_code < 0:
            return f"was killed by {_signal_name(self.exit_code)}"
        return f"exited with code {self.exit_code}"


class ConsoleReader:
    """Follows a ``torchrun --tee 3`` job's console, one line at a time, from both of its streams."""

    def __init__(self, tail: int = 15, prefixed: bool = True) -> None:
        self.prefixed = prefixed  # False: one process without torchrun, its lines bare
        self.tails: dict[int, deque[str]] = {}
        self.launcher: deque[str] = deque(maxlen=tail)  # torchrun's own lines
        self._tail = tail
        self._section: str | None = None  # inside torchrun's "Failures:" or "Root Cause" summary
        self.failures: list[RankFailure] = []
        self.ending: Event | None = None  # the run's last word, when rank 0 got to say it

    def feed(self, line: str) -> Event | None:
        """Read one console line; return the event it carries, if any."""
        line = line.rstrip("\r\n")
        match = _RANK_PREFIX.match(line) if self.prefixed else None
        if match is None and self.prefixed:
            self._launcher_line(line)
            return None
        rank, text = (int(match.group(1)), match.group(2)) if match is not None else (0, line)
        event = event_from_json(text) if rank == 0 else None
        if event is None and text.strip():
            self.tails.setdefault(rank, deque(maxlen=self._tail)).append(text)
        elif isinstance(event, ENDINGS):
            self.ending = event
        return event

    def _launcher_line(self, line: str) -> None:
        if not line.strip():
            return
        self.launcher.append(line)
        if line.startswith("Failures:"):
            self._section = "failures"
        elif "Root Cause" in line:
            self._section = "root"
        elif self._section is not None:
            if (m := _SUMMARY_RANK.match(line)) is not None:
                self.failures.append(RankFailure(int(m.group(1)), int(m.group(2)), root_cause=self._section == "root"))
            elif (m := _SUMMARY_EXIT.match(line)) is not None and self.failures:
                self.failures[-1].exit_code = int(m.group(1))

    @property
    def failed_ranks(self) -> list[RankFailure]:
        """Every rank torchrun reported failed, the one it saw first at the front."""
        return sorted(self.failures, key=lambda f: (not f.root_cause, f.rank))

    def failure(self, exit_code: int) -> str:
        """What went wrong: every failed rank with its exit code or signal, and its last lines of output.

        When ranks die together (one killed, its peers aborting on the lost connection), which one
        torchrun "saw first" is a matter of milliseconds, so all of them are named.
        """
        if not self.prefixed:
            return self._process_failure(exit_code)
        failed = self.failed_ranks
        if not failed and (rank := self._rank_with_traceback()) is not None:
            failed = [RankFailure(rank, rank)]
        if not failed:
            lines = list(self.launcher)[-8:]
            ended = f"was killed by {_signal_name(exit_code)}" if exit_code < 0 else f"exited with code {exit_code}"
            return (f"torchrun {ended} before any rank reported an error."
                    + ("\nIts last lines:\n" + "\n".join(lines) if lines else ""))
        text = "; ".join(f"rank {f.rank} {f.how()}" for f in failed) + "."
        if len(failed) > 1:
            text += f" torchrun saw rank {failed[0].rank} end first."
        for f in failed[:4]:
            lines = list(self.tails.get(f.local_rank, ()))[-10:]
            text += (f"\nrank {f.rank}, its last {len(lines)} lines of output:\n" + "\n".join(lines) if lines
                     else f"\nrank {f.rank} printed nothing before it ended.")
        if any(f.exit_code == -signal.SIGKILL for f in failed):
            text += "\n(A process killed by SIGKILL is often the kernel's out-of-memory killer: check free RAM.)"
        return text

    def _process_failure(self, exit_code: int) -> str:
        """A single process (no torchrun) that ended without its last event: how, and its last lines."""
        ended = f"was killed by {_signal_name(exit_code)}" if exit_code < 0 else f"exited with code {exit_code}"
        lines = list(self.tails.get(0, ()))[-10:]
        said = [line.removeprefix("spp-gui: error: ") for line in lines if line.startswith("spp-gui: error: ")]
        if said:  # the command's own one-line error (a bad config, a missing folder): that is the news
            return f"{said[-1]}\n(the training process exited with code {exit_code})"
        text = (f"The training process {ended} before the run ended."
                + (f"\nIts last {len(lines)} lines of output:\n" + "\n".join(lines) if lines
                   else "\nIt printed nothing before it ended."))
        if exit_code == -signal.SIGKILL:
            text += "\n(A process killed by SIGKILL is often the kernel's out-of-memory killer: check free RAM.)"
        return text

    def _rank_with_traceback(self) -> int | None:
        for rank, lines in sorted(self.tails.items()):
            if any(line.startswith(("Traceback", "spp-gui: error:")) for line in lines):
                return rank
        return None
