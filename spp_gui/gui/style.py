"""Status colours, cue glyphs and icons shared by the trees, the link canvas and the legend.

Colour is never the only cue: every status also has a glyph drawn in its icon and a tooltip.
"""

from __future__ import annotations

import functools
from importlib import resources

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont, QIcon, QPainter, QPixmap

from ..core.mapping import ADAPTED, EXACT, INVALID, RENAMED, UNMAPPED
from ..core.verify import AGREE, DISAGREE, NOT_COMPARED, NOT_INFORMATIVE

UNUSED = "unused"

#: status -> (colour, glyph, tooltip)
STATUS_STYLE: dict[str, tuple[str, str, str]] = {
    EXACT: ("#2e9d4f", "=", "exact: same name and shape, copied as is"),
    RENAMED: ("#2f7fd0", "\u2192", "renamed: filled from a source key of another name, same shape"),
    ADAPTED: ("#9b59b6", "~", "adapted: a transform makes the source tensor fit the target shape"),
    INVALID: ("#d64541", "!", "incompatible or conflicting: the key is missing or the shapes don't fit"),
    UNMAPPED: ("#8a8a8a", "\u00b7", "unmapped: keeps the target's own initialisation"),
    UNUSED: ("#8a8a8a", "\u00b7", "unused: no target key takes this source tensor"),
    # what Verify found for the module a link lands in (links only, while a result is shown)
    AGREE: ("#2e9d4f", "\u2713", "agree: same input in both models gives the same output"),
    DISAGREE: ("#d64541", "\u2717", "disagree: same input, different output: wrong weights for this layer?"),
    NOT_COMPARED: ("#8a8a8a", "?", "not compared: partly mapped, adapted, or its input differs between the models"),
    NOT_INFORMATIVE: ("#c99a06", "0", "not informative: both outputs are all zeros (e.g. a zero-initialised "
                                       "residual branch), so they cannot tell right weights from wrong"),
}
STATUS_ORDER = (EXACT, RENAMED, ADAPTED, INVALID, UNMAPPED)
VERIFY_ORDER = (AGREE, DISAGREE, NOT_INFORMATIVE, NOT_COMPARED)
HOLLOW = (UNMAPPED, UNUSED, NOT_COMPARED, NOT_INFORMATIVE)  # drawn as rings: "nothing to say" rather than a verdict

def _icon_files():
    """The packaged icon PNGs, through importlib.resources (works from a wheel or a zip)."""
    return (resources.files("spp_gui") / "icons").iterdir()


def status_color(status: str) -> QColor:
    return QColor(STATUS_STYLE.get(status, STATUS_STYLE[UNMAPPED])[0])


def status_background(status: str) -> QColor | None:
    """A faint tint that reads on light and dark bases alike (alpha over the palette's base)."""
    if status in HOLLOW:
        return None
    color = status_color(status)
    color.setAlpha(48)
    return color


@functools.cache
def status_icon(status: str, size: int = 14) -> QIcon:
    """A filled disc in the status colour with its glyph: readable without colour vision."""
    ratio = 2
    pix = QPixmap(size * ratio, size * ratio)
    pix.setDevicePixelRatio(ratio)
    pix.fill(Qt.GlobalColor.transparent)
    p = QPainter(pix)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    color, glyph, _ = STATUS_STYLE[status]
    if status in HOLLOW:
        p.setPen(QColor(color))
        p.setBrush(Qt.BrushStyle.NoBrush)
    else:
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(color))
    p.drawEllipse(QRectF(1, 1, size - 2, size - 2))
    font = QFont()
    font.setBold(True)
    font.setPixelSize(int(size * 0.75))
    p.setFont(font)
    p.setPen(QColor("white") if status not in HOLLOW else QColor(color))
    p.drawText(QRectF(0, 0, size, size), Qt.AlignmentFlag.AlignCenter, glyph)
    p.end()
    return QIcon(pix)


def app_icon() -> QIcon:
    icon = QIcon()
    for png in sorted(_icon_files(), key=lambda p: p.name):
        if png.name.startswith("spp-gui-") and png.name.endswith(".png"):
            image = QPixmap()
            image.loadFromData(png.read_bytes())
            icon.addPixmap(image)
    return icon
