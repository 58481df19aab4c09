"""Run long work off the GUI thread (the superqt/napari pattern).

Long work is a plain generator: it yields progress as often as it can and the worker checks
for an abort request between yields. The thread wiring is always the same five connections.
Results arrive through signals, so receivers must be slots of objects living in the GUI thread.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Generator
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, QThread, Signal, Slot
from shiboken6 import isValid

from . import gc_guard


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
            setattr(exc, "__traceback_text__", traceback.format_exc())  # noqa: B010 (an attribute Exception does not declare)
            self.errored.emit(exc)
        finally:
            # Back to the GUI thread before announcing the end, so that deleteLater destroys this
            # object there. Destroyed by the worker thread's event loop (which holds no GIL),
            # PySide's destructor took Qt's connection lock and then waited for the GIL, while the
            # GUI thread held the GIL and waited for that lock in a disconnect: a deadlock.
            app = QCoreApplication.instance()
            if app is not None:
                self.moveToThread(app.thread())
            self.finished.emit()


class WorkerPool(QObject):
    """Keeps a reference to every running thread so none is destroyed while running."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._running: dict[QThread, Worker] = {}
        gc_guard.install()  # no garbage collection in worker threads: it could free widgets there

    def start(self, worker: Worker) -> QThread:
        thread = QThread()
        worker.moveToThread(thread)
        thread.started.connect(worker.work)
        worker.finished.connect(thread.quit)
        thread.finished.connect(worker.deleteLater)  # once the thread has ended: nothing there touches it any more
        thread.finished.connect(thread.deleteLater)
        thread.finished.connect(self._forget)
        self._running[thread] = worker
        thread.start()
        return thread

    @Slot()
    def _forget(self) -> None:
        # Drop only threads that have really ended (``finished`` is emitted just before the end,
        # and dropping our reference to a running QThread would destroy it); sender() is not used
        # because deleteLater may already have run.
        for thread in list(self._running):
            if not isValid(thread) or thread.isFinished():
                del self._running[thread]

    @property
    def busy(self) -> bool:
        self._forget()
        return bool(self._running)

    def stop_all(self, timeout_ms: int = 10000) -> bool:
        """Request every worker to stop, then wait for the threads; True if all ended.

        ``thread.quit()`` is called here too: the worker's own ``finished -> quit`` is queued to
        this (GUI) thread, which is blocked in ``wait()`` and could not deliver it.
        """
        for thread, worker in list(self._running.items()):
            if isValid(worker):
                worker.quit()
            if isValid(thread):
                thread.quit()  # takes effect when work() returns; thread-safe
        ok = True
        for thread in list(self._running):
            if isValid(thread) and not thread.wait(timeout_ms):
                ok = False  # still running: keep the reference
        self._forget()
        return ok
