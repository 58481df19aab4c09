"""Screenshots of the editor's main states for the README, at a small and a large window, light and dark.

Run under a real X server: xvfb-run -s '-screen 0 1920x1080x24' .venv/bin/python resources/take_screenshots.py
(QT_QPA_PLATFORM=offscreen works as well; widgets are grabbed with QWidget.grab()).
Writes resources/screenshots/{state}-{size}-{palette}.png (states: session, filtered, verified, problems,
training: a short run on the Training page) and editor.png (the README's picture).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QElapsedTimer
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

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
    for role in (QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText, QPalette.ColorRole.Text):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor("#7f7f7f"))  # as dark themes dim them
    return p


def settle(app: QApplication, window, ms: int = 30000) -> None:
    timer = QElapsedTimer()
    timer.start()
    while (window.progress.busy or window.pool.busy or window.files.busy) and timer.elapsed() < ms:
        app.processEvents()
    for _ in range(5):
        app.processEvents()


def problems_shot(app: QApplication, window, name: str) -> None:
    """The Problems view with two entries that cannot be applied (then taken back with Undo)."""
    from spp_gui.core.mapping import Entry

    window.edits.push({"classifier.6.weight": Entry("classifier.6.weight", "classifier.6.weight"),
                       "classifier.4.bias": Entry("classifier.4.bias", "features.99.bias")}, "Two bad entries")
    window.show_problems()
    app.processEvents()
    window.grab().save(str(OUT / f"problems-{name}.png"))
    window.stack.undo()


def training_shot(app: QApplication, window, name: str) -> None:
    """The Training page after a short run of the session's target on drawn images."""
    from spp_gui.training.demo_data import write_split

    panel = window.train_panel
    small = "spp_gui:alexnet_spp?num_classes=4&width=0.25"  # a session whose target fits the drawn classes
    window.files.open_session(small.replace("4&", "6&"), small, strategy="auto")
    settle(app, window)
    window.pages.setCurrentWidget(panel)
    with tempfile.TemporaryDirectory() as tmp:
        classes = ("circle", "square", "star", "triangle")
        write_split(Path(tmp) / "train", classes, 24, 48, seed=0, cluttered=True)
        write_split(Path(tmp) / "val", classes, 8, 48, seed=1, cluttered=True)
        settle(app, window)
        panel.train_edit.setText(str(Path(tmp) / "train"))
        panel.val_edit.setText(str(Path(tmp) / "val"))
        panel.validate_dataset()
        panel.out_edit.setText(str(Path(tmp) / "runs"))
        panel.size_spin.setValue(48)
        panel.batch_spin.setValue(16)
        panel.epochs_spin.setValue(5)
        panel.start()
        timer = QElapsedTimer()
        timer.start()
        while panel.busy and timer.elapsed() < 120000:
            app.processEvents()
        for _ in range(5):
            app.processEvents()
        window.grab().save(str(OUT / f"training-{name}.png"))
    window.pages.setCurrentWidget(window.editor)


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
            problems_shot(app, window, f"{size_name}-{palette_name}")
            training_shot(app, window, f"{size_name}-{palette_name}")
            window.stack.setClean()
            window.close()
    print(f"screenshots in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
