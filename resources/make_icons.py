"""Draw the application icon: two columns of tensor rows joined by mapping links.

Writes the drawing to icons/spp-gui.svg (the scalable master, for desktop themes) and the rendered
sizes the app ships to spp_gui/icons/spp-gui-{16,32,48,64,128,256}.png. Run from the repo root:
    QT_QPA_PLATFORM=offscreen .venv/bin/python resources/make_icons.py
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QGuiApplication, QImage, QPainter, QPainterPath, QPen

ROOT = Path(__file__).resolve().parent.parent
ICONS = ROOT / "icons"  # the master drawing
PACKAGED = ROOT / "spp_gui" / "icons"  # what the wheel ships
ROWS = (0.22, 0.40, 0.58, 0.76)
LINKS = ((0, 0, "#2e9d4f"), (1, 2, "#2f7fd0"), (2, 1, "#2f7fd0"), (3, 3, "#9b59b6"))
BG, ROW = "#263238", "#eceff1"


def svg() -> str:
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 256 256" width="256" height="256">',
             f'<rect x="8" y="8" width="240" height="240" rx="44" fill="{BG}"/>']
    for y in ROWS:
        for x in (36, 168):
            parts.append(f'<rect x="{x}" y="{y * 256 - 11:.0f}" width="52" height="22" rx="6" fill="{ROW}"/>')
    for a, b, color in LINKS:
        y1, y2 = ROWS[a] * 256, ROWS[b] * 256
        parts.append(f'<path d="M88 {y1:.0f} C128 {y1:.0f} 128 {y2:.0f} 168 {y2:.0f}" stroke="{color}" '
                     'stroke-width="10" fill="none" stroke-linecap="round"/>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def png(size: int) -> QImage:
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    p = QPainter(image)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.scale(size / 256, size / 256)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QColor(BG))
    p.drawRoundedRect(QRectF(8, 8, 240, 240), 44, 44)
    p.setBrush(QColor(ROW))
    for y in ROWS:
        for x in (36, 168):
            p.drawRoundedRect(QRectF(x, y * 256 - 11, 52, 22), 6, 6)
    for a, b, color in LINKS:
        y1, y2 = ROWS[a] * 256, ROWS[b] * 256
        path = QPainterPath(QPointF(88, y1))
        path.cubicTo(QPointF(128, y1), QPointF(128, y2), QPointF(168, y2))
        p.setPen(QPen(QColor(color), 10 if size >= 32 else 14, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawPath(path)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(ROW))
    p.end()
    return image


def main() -> None:
    app = QGuiApplication.instance() or QGuiApplication([])  # noqa: F841 - fonts/painting need it
    ICONS.mkdir(exist_ok=True)
    (ICONS / "spp-gui.svg").write_text(svg())
    for size in (16, 32, 48, 64, 128, 256):
        png(size).save(str(PACKAGED / f"spp-gui-{size}.png"))


if __name__ == "__main__":
    main()
