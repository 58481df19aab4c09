"""Guard against Qt bindings that drop references to None (PySide6 6.12.0 on Python 3.11 did)."""

from __future__ import annotations

import sys

from PySide6.QtWidgets import QWidget


def test_void_calls_keep_none_alive(qtbot):
    widget = QWidget()
    qtbot.addWidget(widget)
    before = sys.getrefcount(None)
    for _ in range(5000):
        widget.update()
        widget.setToolTip("x")
    assert sys.getrefcount(None) - before > -100
