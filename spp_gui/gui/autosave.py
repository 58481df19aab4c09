"""Autosave of the editing session, and the offer to restore it after a crash.

Two seconds after an edit pauses, a session with unsaved changes is written (atomically, by the
core's ``atomic_write_text``) to ``autosave.json`` in the config folder: both specs, the mapping
file it belongs to, and the mapping itself. A clean session, or a window closed after Save or
Discard, removes the file; so a file found at start means the last session ended without closing
(a crash, a kill, a power cut) and its work can be restored.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, QStandardPaths, QTimer, Slot

from ..core.atomic import atomic_write_text
from ..core.errors import SppError
from ..core.mapping import Mapping
from ..core.untrusted import read_untrusted_text
from .session import MappingSession, Services

FORMAT = "spp-gui-autosave"
DELAY_MS = 2000


def autosave_path() -> Path:
    folder = os.environ.get("SPP_GUI_CONFIG_DIR") or QStandardPaths.writableLocation(
        QStandardPaths.StandardLocation.AppDataLocation) or str(Path.home() / ".spp_gui")
    return Path(folder) / "autosave.json"


@dataclass
class Recovered:
    source: str
    target: str
    mapping: Mapping
    mapping_path: str | None
    saved_at: float

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.saved_at))
        return (f"{self.source} \u2192 {self.target}, {len(self.mapping)} mapped keys, autosaved {when}"
                + (f" (mapping file {self.mapping_path})" if self.mapping_path else ""))


def pending() -> Recovered | None:
    """The session a previous run left behind, or None (a damaged autosave is set aside)."""
    path = autosave_path()
    if not path.exists():
        return None
    try:
        data = json.loads(read_untrusted_text(path))  # a regular file of bounded size, like any mapping
        if data.get("format") != FORMAT:
            raise SppError("not an autosave file")
        return Recovered(str(data["source"]), str(data["target"]), Mapping.from_dict(data["mapping"]),
                         data.get("mapping_path"), float(data.get("saved_at", 0)))
    except (OSError, ValueError, KeyError, TypeError, RecursionError, SppError):
        with contextlib.suppress(OSError):
            path.replace(path.with_suffix(".damaged.json"))
        return None


def forget() -> None:
    with contextlib.suppress(OSError):
        autosave_path().unlink()


class Autosaver(QObject):
    """Watches the session and keeps the autosave file in step with its unsaved work."""

    def __init__(self, session: MappingSession, services: Services, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session, self.services = session, services
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(DELAY_MS)
        self.timer.timeout.connect(self.save_now)
        self._stopped = False
        session.changed.connect(self.schedule)
        session.stack.indexChanged.connect(self.schedule)
        session.stack.cleanChanged.connect(self.schedule)

    @Slot()
    def schedule(self, *_args) -> None:
        if not self._stopped:
            self.timer.start()

    def stop(self) -> None:
        """The window is closing: no more autosaves, whatever still changes."""
        self._stopped = True
        self.timer.stop()

    @Slot()
    def save_now(self) -> bool:
        """Write the session if it has unsaved work, else remove the file; True when written."""
        session = self.session
        if session.source is None or session.target is None or not session.modified:
            forget()
            return False
        data = {"format": FORMAT, "saved_at": time.time(), "source": session.source.spec,
                "target": session.target.spec, "mapping_path": session.path, "mapping": session.mapping.to_dict()}
        try:
            atomic_write_text(autosave_path(), json.dumps(data) + "\n")
        except OSError as exc:  # never interrupt editing for this; say it once in the status bar
            self.services.message(f"Autosave failed: {exc}")
            return False
        return True

    def discard(self) -> None:
        self.timer.stop()
        forget()
