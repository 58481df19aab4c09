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
