"""The runs the Train panel shows: a checkable list (checked = drawn), and earlier runs read from disk.

:class:`RunPlots` owns which runs exist and which are drawn; :class:`RunListModel` is a thin
adapter that mirrors it as check boxes and turns a click back into ``RunPlots.set_visible``.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Slot
from PySide6.QtGui import QColor, QStandardItem, QStandardItemModel

from ..training.metrics import CSV_NAME
from .run_plots import RunPlots


class RunListModel(QStandardItemModel):
    """One checkable row per run of a :class:`RunPlots`, in its colour."""

    def __init__(self, plots: RunPlots, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._plots = plots
        self._syncing = False
        plots.runs_changed.connect(self._rebuild)
        plots.visibility_changed.connect(self._on_visibility)
        self.itemChanged.connect(self._on_item_changed)
        self._rebuild()

    @Slot()
    def _rebuild(self) -> None:
        self._syncing = True
        try:
            self.clear()
            for name, curves in self._plots.runs.items():
                item = QStandardItem(name)
                item.setCheckable(True)
                item.setEditable(False)
                item.setCheckState(Qt.CheckState.Checked if curves.visible else Qt.CheckState.Unchecked)
                item.setForeground(QColor(curves.colour))
                item.setToolTip("uncheck to hide this run from the plots")
                self.appendRow(item)
        finally:
            self._syncing = False

    @Slot(str, bool)
    def _on_visibility(self, name: str, visible: bool) -> None:
        for item in self.findItems(name):
            self._syncing = True
            try:
                item.setCheckState(Qt.CheckState.Checked if visible else Qt.CheckState.Unchecked)
            finally:
                self._syncing = False

    @Slot(QStandardItem)
    def _on_item_changed(self, item: QStandardItem) -> None:
        if not self._syncing and item.text() in self._plots.runs:
            self._plots.set_visible(item.text(), item.checkState() == Qt.CheckState.Checked)


def run_folders(folder: str | os.PathLike) -> list[Path]:
    """The run folders at ``folder``: itself when it is one (holds metrics.csv), else its subfolders that are."""
    folder = Path(folder)
    if (folder / CSV_NAME).is_file():
        return [folder]
    try:
        children = sorted(p for p in folder.iterdir() if p.is_dir() and (p / CSV_NAME).is_file())
    except OSError:
        return []
    return sorted(children, key=lambda p: (p.stat().st_mtime, p.name))  # oldest first, as they were run
