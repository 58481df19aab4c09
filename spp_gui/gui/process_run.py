"""A training job as an external process (torchrun, or one process of its own), followed through its output.

The Train panel's alternative to its in-process worker: the job runs as ``torchrun --tee 3 ...
spp_gui train --events-jsonl`` in processes of its own (one per GPU), rank 0 prints its events as
JSON lines, and this object turns them back into the same events the in-process worker yields.
Stop sends SIGTERM (each rank ends after its current step and keeps its checkpoints), then SIGKILL
after a grace period longer than torchrun's own, so that torchrun has stopped its ranks first on
every platform. When the job dies without its last event, ``ended`` carries what went wrong: which
ranks failed and their last lines of output.

With ``controlled=True`` the job is a single ``spp_gui train --events-jsonl --control-stdin``
process (no torchrun, lines bare): it is paused, resumed and stopped by lines written to its
stdin, and it stops by itself after its step if this app goes away (its stdin closes).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal, Slot

from ..training.event_stream import ConsoleReader

STOP_GRACE_S = 40.0  # torchrun itself gives its ranks 30 s before it kills them


class ProcessRun(QObject):
    """Runs one torchrun command (``--tee 3``), emitting each event rank 0 prints and, once, how it ended."""

    # the name hides QObject.event(), harmlessly: PySide hands Qt's virtual only to a Python method, so
    # events (deleteLater, timers) are still delivered; train_panel connects to it by this name
    event = Signal(object)  # type: ignore[assignment]  # a Signal where the stubs declare QObject.event()
    ended = Signal(int, str)  # exit code; "" when the job said its own last word (done, stopped, failed)

    def __init__(self, command: Sequence[str], cwd: str | None = None, grace_s: float = STOP_GRACE_S,
                 parent: QObject | None = None, logs: str | None = None, controlled: bool = False) -> None:
        super().__init__(parent)
        self.command = list(command)
        self.logs = logs  # where the job keeps every rank's full output, named in a failure report
        self.grace_s = grace_s
        self.controlled = controlled  # one process driven through its stdin, rather than torchrun
        self.paused = False
        self.reader = ConsoleReader(prefixed=not controlled)
        self.stop_requested_at: float | None = None
        self.killed = False
        self._done = False
        self._buffers = {"out": b"", "err": b""}
        self._proc = QProcess(self)
        self._proc.setProgram(self.command[0])
        self._proc.setArguments(self.command[1:])
        if cwd:
            self._proc.setWorkingDirectory(cwd)
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")  # lines arrive as they are printed, not per 8 KB block
        self._proc.setProcessEnvironment(env)
        if hasattr(QProcess, "UnixProcessParameters") and sys.platform != "win32":
            params = QProcess.UnixProcessParameters()
            params.flags = QProcess.UnixProcessFlag.CreateNewSession  # a terminal's Ctrl-C is not the job's
            self._proc.setUnixProcessParameters(params)
        self._proc.readyReadStandardOutput.connect(self._read_out)
        self._proc.readyReadStandardError.connect(self._read_err)
        self._proc.finished.connect(self._on_finished)
        self._proc.errorOccurred.connect(self._on_error)
        self._kill_timer = QTimer(self)
        self._kill_timer.setSingleShot(True)
        self._kill_timer.timeout.connect(self._kill)

    def start(self) -> None:
        self._proc.start()

    @property
    def running(self) -> bool:
        return not self._done

    @property
    def pid(self) -> int:
        return int(self._proc.processId())

    def send(self, word: str) -> bool:
        """One control line (``pause``, ``resume``, ``stop``) to a controlled job; False if it cannot take it."""
        if not self.controlled or self._done or self._proc.state() != QProcess.ProcessState.Running:
            return False
        return self._proc.write(f"{word}\n".encode()) > 0

    def pause(self, on: bool = True) -> bool:
        """Pause a controlled job before its next step (or resume it); True when the line was sent."""
        if self.stop_requested_at is not None or not self.send("pause" if on else "resume"):
            return False
        self.paused = on
        return True

    @Slot()
    def stop(self) -> None:
        """Stop after the current step (a controlled job: its stop line; torchrun: SIGTERM, which it passes
        on to its ranks); SIGKILL if the job has not ended after the grace period."""
        if self._done or self.stop_requested_at is not None:
            return
        self.stop_requested_at = time.monotonic()
        if not self.send("stop"):
            self._proc.terminate()
        self.paused = False
        self._kill_timer.start(int(self.grace_s * 1000))

    @Slot()
    def _kill(self) -> None:
        if not self._done:
            self.killed = True
            self._proc.kill()  # the ranks die with their launcher (they set PDEATHSIG)

    @Slot()
    def _read_out(self) -> None:
        self._take("out", bytes(self._proc.readAllStandardOutput().data()))

    @Slot()
    def _read_err(self) -> None:
        self._take("err", bytes(self._proc.readAllStandardError().data()))

    def _take(self, stream: str, data: bytes, final: bool = False) -> None:
        buffer = self._buffers[stream] + data
        *lines, rest = buffer.split(b"\n")
        if final and rest:
            lines, rest = [*lines, rest], b""
        self._buffers[stream] = rest
        for raw in lines:
            event = self.reader.feed(raw.decode("utf-8", "replace"))
            if event is not None:
                self.event.emit(event)

    @Slot(int, QProcess.ExitStatus)
    def _on_finished(self, code: int, status: QProcess.ExitStatus) -> None:
        self._read_out()
        self._read_err()
        for stream in self._buffers:
            self._take(stream, b"", final=True)
        if status == QProcess.ExitStatus.CrashExit:  # killed by a signal: Qt's exit code is its number
            code = -(code or 9)
        self._end(code, self._explain(code))

    @Slot(QProcess.ProcessError)
    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:  # no finished() follows
            self._end(-1, f"could not start {self.command[0]}: {self._proc.errorString()}")

    def _explain(self, code: int) -> str:
        if self.reader.ending is not None:
            return ""  # the run ended itself and said how (finished, stopped, NaN, out of memory)
        if self.killed:
            asked = "being asked to stop" if self.controlled else "SIGTERM"
            return (f"stopped: the job did not end within {self.grace_s:g} s of {asked}, so it was killed; "
                    "its last checkpoint is kept")
        if self.stop_requested_at is not None:
            return (f"stopped: the job ended (exit code {code}) before it could report where"
                    + (f"; every rank's full output is under {self.logs}" if self.logs else ""))
        text = self.reader.failure(code)
        return text + (f"\nEvery rank's full output is under {self.logs}" if self.logs else "")

    def _end(self, code: int, message: str) -> None:
        if self._done:
            return
        self._done = True
        self._kill_timer.stop()
        self.ended.emit(code, message)
