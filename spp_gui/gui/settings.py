"""QSettings holds only window geometry, dock state and recent files (never user data).

With ``SPP_GUI_CONFIG_DIR`` set (tests, portable installs) the settings live in an INI file there.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QSettings

MAX_RECENT = 8


def settings() -> QSettings:
    folder = os.environ.get("SPP_GUI_CONFIG_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        return QSettings(str(Path(folder) / "spp-gui.ini"), QSettings.Format.IniFormat)
    return QSettings("spp_gui", "spp-gui")


def recent(kind: str) -> list[str]:
    value = settings().value(f"recent/{kind}", [])
    if isinstance(value, str):  # an INI file gives one entry back as a plain string
        return [value]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return []


def add_recent(kind: str, item: str) -> list[str]:
    items = [item] + [r for r in recent(kind) if r != item]
    items = items[:MAX_RECENT]
    settings().setValue(f"recent/{kind}", items)
    return items
