"""Screenshots of the editor's main states for the README, at a small and a large window, light and dark.

Run under a real X server: xvfb-run -s '-screen 0 1920x1080x24' .venv/bin/python resources/take_screenshots.py
(QT_QPA_PLATFORM=offscreen works as well; widgets are grabbed with QWidget.grab()).
Writes resources/screenshots/{state}-{size}-{palette}.png.
"""

from __future__ import annotations

import sys
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
    return p


def settle(app: QApplication, window, ms: int = 30000) -> None:
    timer = QElapsedTimer()
    timer.start()
    while (window.progress.busy or window.pool.busy or window.files.plan is not None) and timer.elapsed() < ms:
        app.processEvents()
    for _ in range(5):
        app.processEvents()


def main() -> int:
    from spp_gui.gui.app import make_app, open_window

    app = make_app()
    light = app.palette()
    OUT.mkdir(parents=True, exist_ok=True)
    for palette_name, palette in (("light", light), ("dark", dark_palette())):
        app.setPalette(palette)
        for size_name, (w, h) in SIZES.items():
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
            window.stack.setClean()
            window._sides_changed = False
            window.close()
    print(f"screenshots in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
