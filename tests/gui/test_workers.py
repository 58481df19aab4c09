from __future__ import annotations

import threading

from spp_gui.gui.workers import Worker, WorkerPool


def _endless(started: threading.Event):
    started.set()
    while True:
        yield 1


def test_stop_all_returns_promptly_without_an_event_loop(qtbot):
    pool = WorkerPool()
    started = threading.Event()
    worker = Worker(_endless, started)
    with qtbot.waitSignal(worker.started, timeout=5000):
        thread = pool.start(worker)
    assert started.wait(5)
    # wait() on the GUI thread must not depend on queued slots (thread.quit) being delivered
    assert pool.stop_all(timeout_ms=5000)
    assert thread.isFinished()
    assert not pool.busy


def test_results_and_errors_reach_the_gui_thread(qtbot):
    pool = WorkerPool()

    def fails():
        raise ValueError("bad input")

    worker = Worker(fails)
    with qtbot.waitSignal(worker.errored, timeout=5000) as blocker:
        pool.start(worker)
    assert isinstance(blocker.args[0], ValueError)
    qtbot.waitUntil(lambda: not pool.busy, timeout=5000)
    ok = Worker(lambda: 42)
    with qtbot.waitSignal(ok.returned, timeout=5000) as blocker:
        pool.start(ok)
    assert blocker.args == [42]
    qtbot.waitUntil(lambda: not pool.busy, timeout=5000)


def test_widgets_in_reference_cycles_are_freed_on_the_gui_thread(qtbot):
    """A worker's allocations must never trigger the collection that frees a widget (it deadlocked)."""
    import gc

    from PySide6.QtCore import QThread
    from PySide6.QtWidgets import QApplication, QWidget

    pool = WorkerPool()
    assert not gc.isenabled()  # a GUI-thread timer collects instead
    freed_on: list[QThread] = []

    class Closed(QWidget):
        def __del__(self):
            freed_on.append(QThread.currentThread())

    for _ in range(20):
        widget = Closed()
        widget.me = widget  # a cycle: only the collector can free it
    del widget

    def allocate():  # far past generation 0's threshold: would collect right here if collection were automatic
        for _ in range(50):
            junk = [[] for _ in range(2000)]
            for a, b in zip(junk, junk[1:], strict=False):
                a.append(b)
                b.append(a)
            yield len(junk)

    worker = Worker(allocate)
    with qtbot.waitSignal(worker.returned, timeout=20000):
        pool.start(worker)
    qtbot.waitUntil(lambda: len(freed_on) == 20, timeout=10000)
    assert set(freed_on) == {QApplication.instance().thread()}
    qtbot.waitUntil(lambda: not pool.busy, timeout=5000)


def test_a_finished_worker_is_destroyed_on_the_gui_thread(qtbot):
    """Destroyed by the worker thread's event loop, a worker could deadlock against the GUI thread."""
    from PySide6.QtCore import QThread
    from PySide6.QtWidgets import QApplication

    pool = WorkerPool()
    destroyed_on: list[QThread] = []
    for _ in range(5):
        worker = Worker(lambda: sum(range(1000)))
        worker.destroyed.connect(lambda *_: destroyed_on.append(QThread.currentThread()))
        with qtbot.waitSignal(worker.returned, timeout=5000):
            pool.start(worker)
    del worker
    qtbot.waitUntil(lambda: len(destroyed_on) == 5 and not pool.busy, timeout=10000)
    assert set(destroyed_on) == {QApplication.instance().thread()}


def test_what_existed_when_collection_moved_is_frozen_and_later_garbage_still_freed(qtbot):
    """The app's imports are frozen once (later collections, which hold the GIL, skip them); what is
    made after that is still collected by the GUI thread's timer."""
    import gc
    import weakref

    WorkerPool()
    assert gc.get_freeze_count() > 10_000  # torch, PySide6, pyqtgraph, ...

    class Node:
        pass

    node = Node()
    node.me = node  # a cycle made after the freeze: only the collector can free it
    alive = weakref.ref(node)
    del node
    more = [[] for _ in range(2 * gc.get_threshold()[0])]  # past generation 0's threshold, as an app's work goes
    qtbot.waitUntil(lambda: alive() is None, timeout=10000)
    assert len(more) > 0
