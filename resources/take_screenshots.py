"""Screenshots of the editor's main states for the README, at a small and a large window, light and dark.

Run under a real X server: xvfb-run -s '-screen 0 1920x1080x24' .venv/bin/python resources/take_screenshots.py
(QT_QPA_PLATFORM=offscreen works as well; widgets are grabbed with QWidget.grab()).
Writes resources/screenshots/{state}-{size}-{palette}.png (states: session, filtered, verified),
training-large-light.png (a short run in the Training tab) and editor.png (the README's picture).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QElapsedTimer, Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QDockWidget

OUT = Path(__file__).resolve().parent / "screenshots"
SIZES = {"small": (1024, 640), "large": (1920, 1080)}


def dark_palette() -> QPalette:
    p = QPalette()
    for role, color in ((QPalette.ColorRole.Window, "#2b2b2b"), (QPalette.ColorRole.WindowText, "#e6e6e6"),
                        (QPalette.ColorRole.Base, "#1f1f1f"), (QPalette.ColorRole.AlternateBase, "#262626"),
                        (QPalette.ColorRole.Text, "#e6e6e6"), (QPalette.ColorRole.Button, "#353535"),
                        (QPalette.ColorRole.ButtonText, "#e6e6e6"), (QPalette.ColorRole.Highlight, "#3d6fb4"),
                        (QPalette.ColorRole.HighlightedText, "#ffffff"), (QPalette.ColorRole.ToolTipBase, "#353535"),
                        (QPalette.ColorRole.ToolTipText, "#e6e6e6"), (QPalette.ColorRole.PlaceholderText, "#9a9a9a")):
        p.setColor(role, QColor(color))
    return p


def settle(app: QApplication, window, ms: int = 30000) -> None:
    timer = QElapsedTimer()
    timer.start()
    while (window.progress.busy or window.pool.busy or window.files.plan is not None) and timer.elapsed() < ms:
        app.processEvents()
    for _ in range(5):
        app.processEvents()


def training_shot(app: QApplication, window) -> None:
    """The Training tab after a short run of the session's target on drawn images."""
    from spp_gui.training.demo_data import write_split

    panel = window.train_panel
    dock = next(d for d in window.findChildren(QDockWidget) if d.windowTitle() == "Training")
    dock.raise_()
    window.resizeDocks([dock], [window.height() // 2], Qt.Orientation.Vertical)
    with tempfile.TemporaryDirectory() as tmp:
        classes = ("circle", "square", "star", "triangle")
        write_split(Path(tmp) / "train", classes, 32, 64, seed=0, cluttered=True)
        write_split(Path(tmp) / "val", classes, 12, 64, seed=1, cluttered=True)
        settle(app, window)
        timer = QElapsedTimer()
        timer.start()
        while timer.elapsed() < 1500:  # the tab takes the session when it has been shown a moment
            app.processEvents()
        panel.spec_edit.setText("spp_gui:alexnet_spp?num_classes=4")  # the session's target, 4 classes
        panel.train_edit.setText(str(Path(tmp) / "train"))
        panel.val_edit.setText(str(Path(tmp) / "val"))
        panel.out_edit.setText(str(Path(tmp) / "runs"))
        panel.size_spin.setValue(64)
        panel.batch_spin.setValue(32)
        panel.epochs_spin.setValue(6)
        panel.start()
        timer.restart()
        while panel.busy and timer.elapsed() < 120000:
            app.processEvents()
        for _ in range(5):
            app.processEvents()
        window.grab().save(str(OUT / "training-large-light.png"))


def main() -> int:
    from spp_gui.gui.app import make_app, open_window

    app = make_app()
    light = app.palette()
    OUT.mkdir(parents=True, exist_ok=True)
    for palette_name, palette in (("light", light), ("dark", dark_palette())):
        app.setPalette(palette)
        for size_name, (w, h) in SIZES.items():
            # each window starts as on a first start, and the user's own settings stay untouched
            os.environ["SPP_GUI_CONFIG_DIR"] = tempfile.mkdtemp(prefix="spp-gui-shots-")
            window = open_window([])
            window.resize(w, h)
            window.show()
            settle(app, window)
            window.expand_all()
            select = window.target_model.index_of_path("classifier.1.weight")
            window.target_panel.view.setCurrentIndex(select)
            app.processEvents()
            window.grab().save(str(OUT / f"session-{size_name}-{palette_name}.png"))
            window.target_panel.filter.setText("classifier")
            window.target_panel.apply_filter()
            app.processEvents()
            window.grab().save(str(OUT / f"filtered-{size_name}-{palette_name}.png"))
            window.target_panel.filter.setText("")
            window.target_panel.apply_filter()
            window.expand_all()
            window.verify_action.trigger()  # links coloured by what the layers compute
            settle(app, window)
            window.grab().save(str(OUT / f"verified-{size_name}-{palette_name}.png"))
            if (size_name, palette_name) == ("large", "light"):
                shutil.copyfile(OUT / "verified-large-light.png", OUT / "editor.png")
                training_shot(app, window)
            window.stack.setClean()
            window._sides_changed = False
            window.close()
    print(f"screenshots in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
