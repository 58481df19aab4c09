"""Run long work off the GUI thread (the superqt/napari pattern).

Long work is a plain generator: it yields progress as often as it can and the worker checks
for an abort request between yields. The thread wiring is always the same five connections.
Results arrive through signals, so receivers must be slots of objects living in the GUI thread.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Generator
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot


class Worker(QObject):
    """Runs ``func(*args, **kwargs)``; if it returns a generator, iterates it with abort checks."""

    started = Signal()
    yielded = Signal(object)
    returned = Signal(object)
    errored = Signal(object)  # the exception; its traceback text is in ``exc.__traceback_text__``
    aborted = Signal()
    finished = Signal()

    def __init__(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self._func, self._args, self._kwargs = func, args, kwargs
        self._abort = False

    @property
    def abort_requested(self) -> bool:
        return self._abort

    def quit(self) -> None:
        """Ask the work to stop at its next yield (thread-safe: a plain flag)."""
        self._abort = True

    @Slot()
    def work(self) -> None:
        self.started.emit()
        try:
            result = self._func(*self._args, **self._kwargs)
            if isinstance(result, Generator):
                gen = result
                try:
                    while True:
                        if self._abort:
                            gen.close()
                            self.aborted.emit()
                            return
                        self.yielded.emit(next(gen))
                except StopIteration as stop:
                    result = stop.value
            if self._abort:
                self.aborted.emit()
            else:
                self.returned.emit(result)
        except Exception as exc:  # reported to the GUI, which shows it; never lost
            exc.__traceback_text__ = traceback.format_exc()
            self.errored.emit(exc)
        finally:
            self.finished.emit()


class WorkerPool(QObject):
    """Keeps a reference to every running thread so none is destroyed while running."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._running: dict[QThread, Worker] = {}

    def start(self, worker: Worker) -> QThread:
        thread = QThread()
        worker.moveToThread(thread)
        thread.started.connect(worker.work)
        # QThread.quit is thread-safe: a direct call lets stop_all() wait() without a GUI event loop
        worker.finished.connect(thread.quit, Qt.ConnectionType.DirectConnection)
        worker.finished.connect(worker.deleteLater)
        thread.finished.connect(self._forget)  # before deleteLater, so sender() is still alive
        thread.finished.connect(thread.deleteLater)
        self._running[thread] = worker
        thread.start()
        return thread

    @Slot()
    def _forget(self) -> None:
        thread = self.sender()
        self._running.pop(thread, None)

    @property
    def busy(self) -> bool:
        return bool(self._running)

    def stop_all(self, timeout_ms: int = 10000) -> bool:
        """Request every worker to stop, then wait for the threads; True if all ended."""
        for worker in list(self._running.values()):
            worker.quit()
        ok = True
        for thread in list(self._running):
            ok = thread.wait(timeout_ms) and ok
            self._running.pop(thread, None)
        return ok
