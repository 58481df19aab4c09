"""Autosave of unsaved work, and restoring it after the app died without closing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from spp_gui.gui import autosave


def test_unsaved_edit_is_autosaved_and_a_clean_session_is_not(open_window, qtbot):
    window = open_window()
    assert autosave.pending() is None
    window.edits.unmap(["features.3.bias"])
    qtbot.waitUntil(lambda: autosave.autosave_path().exists(), timeout=10000)
    found = autosave.pending()
    assert found.target == window.doc.target.spec and found.source == window.doc.source.spec
    assert "features.3.bias" not in found.mapping.entries and len(found.mapping) == 12
    window.stack.undo()  # back to clean: the autosave goes away
    qtbot.waitUntil(lambda: not autosave.autosave_path().exists(), timeout=10000)


def test_killed_app_is_offered_for_restore(tmp_path, open_window, qtbot, wait_idle):
    script = textwrap.dedent("""
        import os, signal
        from spp_gui.gui.app import make_app, open_window
        from spp_gui.gui import autosave
        app = make_app([])
        window = open_window(["torchvision:alexnet", "spp_gui:alexnet_spp?num_classes=20", "--strategy", "order"])
        def step():
            if window.files.plan is None and window.doc.ready and not window.pool.busy:
                if not window.stack.count():
                    window.edits.unmap(["features.0.weight", "features.0.bias"])
                    window.autosave.save_now()
                    os.kill(os.getpid(), signal.SIGKILL)  # die without closing, like a crash
        from PySide6.QtCore import QTimer
        timer = QTimer(); timer.timeout.connect(step); timer.start(50)
        app.exec()
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=dict(os.environ), timeout=120)
    assert proc.returncode == -signal.SIGKILL
    found = autosave.pending()
    assert found is not None and len(found.mapping) == 11

    from spp_gui.gui.app import offer_restore

    window = open_window(["torchvision:alexnet", "spp_gui:alexnet_spp?num_classes=20", "--strategy", "none"])

    def answer_yes():
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox):
            assert "did not close normally" in box.text()
            box.button(QMessageBox.StandardButton.Yes).click()
        else:
            QTimer.singleShot(20, answer_yes)

    QTimer.singleShot(20, answer_yes)
    assert offer_restore(window)
    wait_idle(window)
    assert window.doc.mapping.pairs() == found.mapping.pairs()
    assert window.modified  # restored work is unsaved until the user saves it


def test_damaged_autosave_is_set_aside(tmp_path):
    path = autosave.autosave_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    assert autosave.pending() is None
    assert not path.exists() and path.with_suffix(".damaged.json").exists()
    path.write_text(json.dumps({"format": "something else"}))
    assert autosave.pending() is None
