"""Python's cycle collector, run on the GUI thread only.

A Qt object kept alive only by a reference cycle (a closed window whose slots refer back to it)
is freed by whichever thread's allocation happens to trigger a collection. In a worker thread that
destroys widgets off the GUI thread, which Qt forbids, and it deadlocked here: a loading worker's
collection deleted a closed window's menu, holding Qt's signal-connection lock while it waited
for the GIL, which the GUI thread held while it waited for that lock. So once worker threads
exist, automatic collection is switched off and a GUI-thread timer collects instead, generation by
generation with the interpreter's own thresholds (pyqtgraph's ``GarbageCollector`` does the same).

What exists when collection moves (the app's imports: torch, PySide6, pyqtgraph; about 230,000
objects here) is frozen (``gc.freeze``): later collections skip it. A collection holds the GIL, so on
the GUI thread it stalls the training thread; the interpreter's automatic full collections skip a
heap this size most of the time, these explicit ones would not (a full collection over the app's
~380,000 objects took 230 ms, on what is left unfrozen a fraction of that).
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QCoreApplication, QObject, QThread, QTimer, Slot

INTERVAL_MS = 500


class GuiThreadCollector(QObject):
    """Collects on a GUI-thread timer; ``install`` makes one per application."""

    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)
        self.threshold = gc.get_threshold()
        gc.disable()
        gc.freeze()  # automatic collection ran until now: a full one here found nothing to free (and took 0.13 s)
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.check)
        self.timer.start(INTERVAL_MS)

    @Slot()
    def check(self) -> None:
        g0, g1, g2 = gc.get_count()
        if g0 > self.threshold[0]:
            gc.collect(0)
            if g1 > self.threshold[1]:
                gc.collect(1)
                if g2 > self.threshold[2]:
                    gc.collect(2)


def install() -> GuiThreadCollector | None:
    """Move collection to the GUI thread (idempotent); a no-op without an application or off its thread."""
    app = QCoreApplication.instance()
    if app is None or QThread.currentThread() is not app.thread():
        return None
    found = app.findChild(GuiThreadCollector)
    if found is None:
        return GuiThreadCollector(app)
    gc.disable()  # a test suite may have switched it back on between tests
    return found
