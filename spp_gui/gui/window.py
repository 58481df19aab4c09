"""The main window: composes the trees, link canvas, docks, menus and status bar.

Behaviour lives in small collaborators: :class:`EditController` (edits), :class:`FileController`
(files, loads, export), the panels and item models. This module only wires them together.
"""

from __future__ import annotations

from PySide6.QtCore import QByteArray, QItemSelectionModel, QModelIndex, Qt, QTimer, Slot
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence, QUndoStack
from PySide6.QtWidgets import (
    QDockWidget,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from ..core.mapping import Mapping
from ..core.strategies import Suggestion
from . import settings
from .autosave import Autosaver
from .dialogs import show_about
from .document import Loaded, MappingDocument
from .editing import EditController
from .files import FileController
from .inspector import Inspector
from .link_canvas import LinkCanvas
from .progress import ProgressArea
from .style import STATUS_ORDER, STATUS_STYLE, app_icon, status_icon
from .suggest_panel import SuggestPanel
from .tree_model import ParamTreeModel
from .tree_panel import TreePanel
from .verify_view import VERIFY_TIP, VerifyController
from .workers import WorkerPool


def legend() -> QWidget:
    """Colour, glyph and words for every status, with the tooltips the trees use."""
    box = QWidget()
    row = QHBoxLayout(box)
    row.setContentsMargins(4, 0, 4, 0)
    for status in STATUS_ORDER:
        icon = QLabel()
        icon.setPixmap(status_icon(status).pixmap(14, 14))
        text = QLabel(status if status != "invalid" else "incompatible")
        for w in (icon, text):
            w.setToolTip(STATUS_STYLE[status][2])
        row.addWidget(icon)
        row.addWidget(text)
        row.addSpacing(8)
    row.addStretch(1)
    return box


class MainWindow(QMainWindow):
    """One mapping session: source tree | links | target tree, with suggest, inspector and training docks."""

    def __init__(self, allow_download: bool = False) -> None:
        super().__init__()
        self.allow_download = allow_download
        self.setWindowIcon(app_icon())
        self.doc = MappingDocument(self)
        self.stack = QUndoStack(self)
        self.pool = WorkerPool(self)
        self._sides_changed = False  # a new side since the last save is a change too
        self._train_stale = True  # the training tab has not seen the current session yet
        self._train_shown = False
        self.source_model = ParamTreeModel(self.doc, "source", self)
        self.target_model = ParamTreeModel(self.doc, "target", self)
        self.source_panel = TreePanel(self.source_model, "Source")
        self.target_panel = TreePanel(self.target_model, "Target")
        self.canvas = LinkCanvas(self.doc, self.source_panel.view, self.target_panel.view)
        self.canvas.setObjectName("linkCanvas")
        self.edits = EditController(self.doc, self.stack, self.message, self)
        self.files = FileController(self)
        self.autosave = Autosaver(self)
        self.verify = VerifyController(self)
        self.progress = ProgressArea()
        self.summary = QLabel("")
        self.summary.setObjectName("summary")

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.source_panel)
        splitter.addWidget(self.canvas)
        splitter.addWidget(self.target_panel)
        splitter.setStretchFactor(0, 5)
        splitter.setStretchFactor(1, 1)
        splitter.setStretchFactor(2, 5)
        splitter.setCollapsible(1, False)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(6, 6, 6, 0)
        layout.addWidget(splitter, 1)
        layout.addWidget(legend())
        layout.addWidget(self.verify.bar)
        self.setCentralWidget(central)
        self.statusBar().addWidget(self.summary, 1)
        self.statusBar().addPermanentWidget(self.progress)

        self.suggest = SuggestPanel()
        self.inspector = Inspector(self.doc)
        self.suggest_dock = self._dock("Auto-suggest", self.suggest, Qt.DockWidgetArea.BottomDockWidgetArea)
        inspector_scroll = QScrollArea()  # wrapped labels need their height: scroll rather than overlap
        inspector_scroll.setWidgetResizable(True)
        inspector_scroll.setFrameShape(QFrame.Shape.NoFrame)
        inspector_scroll.setWidget(self.inspector)
        self.inspector_dock = self._dock("Inspector", inspector_scroll, Qt.DockWidgetArea.RightDockWidgetArea)
        self.train_panel = self._train_panel()

        self._train_sync_timer = QTimer(self)  # edits while training is shown: sync once they pause
        self._train_sync_timer.setSingleShot(True)
        self._train_sync_timer.setInterval(500)
        self._train_sync_timer.timeout.connect(self._sync_train_panel)
        self._wire()
        self._menus()
        self.resize(1400, 900)
        self._restore_layout()
        self.update_title()

    # -- construction ---------------------------------------------------------------------------
    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title.replace(" ", "").replace("-", "") + "Dock")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _train_panel(self):
        """The training tab, when its module exists (another part of the app provides it)."""
        try:
            from .train_panel import TrainPanel
        except ImportError:
            return None
        try:
            panel = TrainPanel(self)
        except Exception as exc:  # its bugs must not keep the editor from opening
            self.message(f"Training panel unavailable: {exc}")
            return None
        scroll = QScrollArea()  # the panel's full form would otherwise set the tabbed docks' minimum height
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(panel)
        dock = self._dock("Training", scroll, Qt.DockWidgetArea.BottomDockWidgetArea)
        dock.visibilityChanged.connect(self._train_visibility)
        self.tabifyDockWidget(self.suggest_dock, dock)
        self.suggest_dock.raise_()
        return panel

    def _wire(self) -> None:
        self.doc.changed.connect(self._doc_changed)
        self.doc.sidesChanged.connect(self._sides_loaded)
        self.stack.cleanChanged.connect(self.update_title)
        self.stack.indexChanged.connect(self.update_title)
        self.target_model.on_drop_keys = self.edits.map_paths
        self.source_model.on_drop_files = lambda files: self.files.open_file("source", files[0])
        self.target_model.on_drop_files = lambda files: self.files.open_file("target", files[0])
        self.source_panel.view.selectionModel().currentChanged.connect(self._source_current)
        self.target_panel.view.selectionModel().currentChanged.connect(self._target_current)
        self.source_panel.filterChanged.connect(self.canvas.invalidate)
        self.target_panel.filterChanged.connect(self.canvas.invalidate)
        self.canvas.linkClicked.connect(self.select_link)
        self.suggest.runRequested.connect(self.files.run_suggest)
        self.suggest.cancelRequested.connect(self._cancel_suggest)
        self.suggest.acceptRequested.connect(self._accept)
        self.suggest.suggestionSelected.connect(self._suggestion_selected)
        self.inspector.transformRequested.connect(self.edits.set_transform)
        self.inspector.removeRequested.connect(lambda key: self.edits.unmap([key]))
        self.inspector.message.connect(self.message)

    def _action(self, menu: QMenu, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        if tip:
            action.setStatusTip(tip)
            action.setToolTip(tip)
        action.triggered.connect(slot)
        menu.addAction(action)
        self.addAction(action)
        return action

    def _menus(self) -> None:
        bar = self.menuBar()
        f = bar.addMenu("&File")
        a = self._action
        a(f, "Open &source checkpoint\u2026", lambda: self.files.open_side_file("source"), QKeySequence.StandardKey.Open)
        a(f, "Source from s&pec\u2026", lambda: self.files.open_side_dialog("source"), "Ctrl+L",
          "A torchvision name, weights or model spec as the source")
        a(f, "Open &target checkpoint\u2026", lambda: self.files.open_side_file("target"), "Ctrl+Shift+O")
        a(f, "Target from sp&ec\u2026", lambda: self.files.open_side_dialog("target"), "Ctrl+Shift+L")
        f.addSeparator()
        a(f, "Open &mapping\u2026", self.files.open_mapping_dialog, "Ctrl+Shift+M")
        a(f, "Sa&ve mapping", self.files.save_mapping, QKeySequence.StandardKey.Save)
        a(f, "Save mapping &as\u2026", self.files.save_mapping_as, QKeySequence.StandardKey.SaveAs)
        a(f, "E&xport weights\u2026", self.files.export_dialog, "Ctrl+E",
          "Apply the mapping to the target and write .safetensors or .pth")
        self.recent_menu = f.addMenu("&Recent")
        f.addSeparator()
        a(f, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        e = bar.addMenu("&Edit")
        undo = self.stack.createUndoAction(self, "&Undo")
        undo.setShortcut(QKeySequence.StandardKey.Undo)
        redo = self.stack.createRedoAction(self, "&Redo")
        redo.setShortcuts([QKeySequence.StandardKey.Redo, QKeySequence("Ctrl+Y")])
        e.addActions([undo, redo])
        self.addActions([undo, redo])
        e.addSeparator()
        a(e, "&Map selected", self.map_selected, "M", "Map the selected source key onto the selected target key")
        a(e, "&Remove entry", self.remove_selected, QKeySequence.StandardKey.Delete, "Unmap the selected target keys")
        a(e, "&Clear mapping", self.clear_mapping, None, "Unmap everything (one undo step)")

        v = bar.addMenu("&View")
        a(v, "Filter &source keys", lambda: self._focus(self.source_panel.filter), "Ctrl+F")
        a(v, "Filter &target keys", lambda: self._focus(self.target_panel.filter), "Ctrl+Shift+F")
        a(v, "&Expand all", self.expand_all, "Ctrl+Shift+E")
        a(v, "&Collapse all", self.collapse_all, "Ctrl+Shift+C")
        v.addSeparator()
        for dock in self.findChildren(QDockWidget):
            v.addAction(dock.toggleViewAction())

        s = bar.addMenu("&Suggest")
        a(s, "&Run strategy", self.suggest.request_run, "Ctrl+R", "Run the chosen strategy and preview its suggestions")
        a(s, "&Accept proposed", self.suggest.accept_all.click, "Ctrl+Shift+A")
        s.addSeparator()
        self.verify_action = a(s, "&Verify mapping", self.verify.run, "Ctrl+Shift+V", VERIFY_TIP)
        self.verify.bind_action(self.verify_action)
        s.addSeparator()
        a(s, "Cancel running job", self.progress.cancel_all, "Esc")

        h = bar.addMenu("&Help")
        a(h, "&Keyboard shortcuts", self.show_shortcuts, "F1")
        a(h, "&About spp-gui", lambda: show_about(self))
        self.refresh_recent()

    # -- session --------------------------------------------------------------------------------
    def apply_sides(self, source: Loaded | None, target: Loaded | None, mapping: Mapping | None) -> None:
        """Install loaded sides and/or a mapping as a fresh, saved state (undo history cleared)."""
        self.doc.set_sides(source, target, mapping)
        if mapping is not None:
            self.stack.clear()
            self._sides_changed = False
        elif source is not None or target is not None:
            self._sides_changed = True
        self.update_title()

    def _sides_loaded(self) -> None:
        for model, panel, side in ((self.source_model, self.source_panel, self.doc.source),
                                   (self.target_model, self.target_panel, self.doc.target)):
            if side is not None and model.tree is not side.tree:
                model.set_tree(side.tree)
                panel.reset()
                panel.set_heading(side.spec, self._note(side))
        self.inspector.show_target(None)
        self._train_stale = True
        if self._train_shown:
            self._train_sync_timer.start()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.suggest_dock.raise_()  # the editor's own tab in front; training when asked for
        if getattr(self, "_needs_dock_sizes", False):
            self._needs_dock_sizes = False
            QTimer.singleShot(0, self._default_dock_sizes)

    def _train_visibility(self, visible: bool) -> None:
        self._train_shown = visible
        if visible and self._train_stale:
            self._train_sync_timer.start()

    def _sync_train_panel(self) -> None:
        """Hand the session to the training tab only while it is shown: it copies the whole mapping."""
        if self.train_panel is None or self.doc.target is None or not self._train_stale or not self._train_shown:
            return
        self._train_stale = False
        try:
            self.train_panel.set_session(self.doc.target.spec, self.doc.mapping,
                                         self.doc.source.spec if self.doc.source else None)
        except Exception as exc:  # the training tab must not break the editor
            self.message(f"Training panel: {exc}")

    @staticmethod
    def _note(side: Loaded) -> str:
        if side.source is not None and side.source.kind == "model":
            return "random init: no pretrained weights"
        notes = [n for n in side.notes if not n.startswith("torchvision weights from")]
        return "; ".join(notes)

    def _doc_changed(self) -> None:
        self._train_stale = True
        if self._train_shown:
            self._train_sync_timer.start()
        s = self.doc.summary()
        text = (f"{s['mapped']} of {s['targets']} target tensors mapped \u00b7 {s['share']:.1%} of target "
                f"parameters from the source \u00b7 {s['unused']} source tensors unused")
        if s["invalid"]:
            text += f" \u00b7 {s['invalid']} invalid"
        self.summary.setText(text)
        for panel in (self.source_panel, self.target_panel):
            panel.view.viewport().update()
        self.update_title()

    @property
    def modified(self) -> bool:
        return not self.stack.isClean() or self._sides_changed

    def mark_recovered(self) -> None:
        """A session restored from the autosave holds work that was never saved."""
        self._sides_changed = True
        self.update_title()

    def mark_saved(self) -> None:
        self.stack.setClean()
        self._sides_changed = False
        self.update_title()

    def update_title(self) -> None:
        doc = self.doc
        name = self.files.mapping_path or "untitled mapping"
        sides = f"{doc.source.spec} \u2192 {doc.target.spec}" if doc.ready else "no session"
        self.setWindowTitle(f"{name}[*] \u2014 {sides} \u2014 spp-gui")
        self.setWindowModified(self.modified)

    def message(self, text: str) -> None:
        self.statusBar().showMessage(text, 10000)

    # -- selection ------------------------------------------------------------------------------
    def _source_current(self, current: QModelIndex, previous: QModelIndex) -> None:
        node = self.source_model.node(current) if current.isValid() else None
        shape = node.tensor.shape if node is not None and node.tensor is not None else None
        self.target_model.set_highlight(shape)
        self.source_model.set_highlight(None)
        self.target_panel.view.viewport().update()
        self.source_panel.view.viewport().update()

    def _target_current(self, current: QModelIndex, previous: QModelIndex) -> None:
        node = self.target_model.node(current) if current.isValid() else None
        leaf = node is not None and node.tensor is not None
        self.source_model.set_highlight(node.tensor.shape if leaf else None)
        self.target_model.set_highlight(None)
        self.source_panel.view.viewport().update()
        self.target_panel.view.viewport().update()
        self.inspector.show_target(node.path if leaf else None)

    def _select(self, panel: TreePanel, path: str) -> None:
        index = panel.model.index_of_path(path)
        if not index.isValid():
            return
        panel.view.scrollTo(index)
        panel.view.selectionModel().setCurrentIndex(
            index, QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows)

    def select_link(self, target: str, source: str) -> None:
        """A clicked link selects its entry: both rows, and the inspector shows it."""
        self._select(self.source_panel, source)
        self._select(self.target_panel, target)
        self.inspector.show_target(target if target in self.doc.mapping else None)

    def _suggestion_selected(self, s: Suggestion | None) -> None:
        if s is not None:
            self.select_link(s.target, s.source)

    def _selected_paths(self, panel: TreePanel) -> list[str]:
        rows = panel.view.selectionModel().selectedRows(0)
        return [panel.model.node(i).path for i in rows]

    # -- edits ----------------------------------------------------------------------------------
    def map_selected(self) -> bool:
        sources, targets = self._selected_paths(self.source_panel), self._selected_paths(self.target_panel)
        if len(sources) != 1 or len(targets) != 1:
            self.message("Select one key (or module) in each tree, then press M")
            return False
        return self.edits.map_paths(sources, targets[0])

    def remove_selected(self) -> bool:
        targets = self._selected_paths(self.target_panel)
        keys: list[str] = []
        for path in targets:
            node = self.doc.target.tree.node(path)
            keys += [leaf.path for leaf in node.leaves()]
        return self.edits.unmap(keys)

    def clear_mapping(self) -> None:
        if self.doc.mapping.entries:
            self.edits.push(dict.fromkeys(self.doc.mapping.entries), "Clear mapping")

    def _accept(self, suggestions: list) -> None:
        self.edits.accept(suggestions)

    def _cancel_suggest(self) -> None:
        if self.files.suggest_job is not None:
            self.files.suggest_job.cancel()

    def _focus(self, widget: QWidget) -> None:
        widget.setFocus()
        widget.selectAll()

    def expand_all(self) -> None:
        for panel in (self.source_panel, self.target_panel):
            panel.view.expandAll()
        self.canvas.invalidate()

    def collapse_all(self) -> None:
        for panel in (self.source_panel, self.target_panel):
            panel.view.collapseAll()
        self.canvas.invalidate()

    def show_shortcuts(self) -> None:
        lines = []
        for act in self.actions():
            if act.shortcut().isEmpty():
                continue
            keys = act.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
            label = act.text().replace("&", "").rstrip("\u2026")
            lines.append(f"<tr><td><b>{keys}</b>&nbsp;&nbsp;</td><td>{label}</td></tr>")
        box = QMessageBox(QMessageBox.Icon.NoIcon, "Keyboard shortcuts", "<table>" + "".join(lines) + "</table>",
                          QMessageBox.StandardButton.Ok, self)
        box.open()

    # -- files ----------------------------------------------------------------------------------
    def refresh_recent(self) -> None:
        self.recent_menu.clear()
        for kind, role in (("mappings", None), ("source", "source"), ("target", "target")):
            for path in settings.recent(kind):
                label = f"{'mapping' if role is None else role}: {path}"
                action = self.recent_menu.addAction(label)
                if role is None:
                    action.triggered.connect(lambda _=False, p=path: self.files.open_file("source", p))
                else:
                    action.triggered.connect(lambda _=False, p=path, r=role: self.files.open_file(r, p))
        self.recent_menu.setEnabled(not self.recent_menu.isEmpty())

    def confirm_discard(self) -> bool:
        """Ask before unsaved changes are lost: Save, Discard or Cancel. True to go on."""
        if not self.modified:
            return True
        box = QMessageBox(QMessageBox.Icon.Question, "Unsaved changes",
                          "The mapping has unsaved changes. Save them?",
                          QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                          | QMessageBox.StandardButton.Cancel, self)
        box.setObjectName("saveChangesBox")
        answer = box.exec()
        if answer == QMessageBox.StandardButton.Save:
            return self.files.save_mapping()
        return answer == QMessageBox.StandardButton.Discard

    # -- layout and closing ---------------------------------------------------------------------
    def _restore_layout(self) -> None:
        store = settings.settings()
        geometry, state = store.value("window/geometry"), store.value("window/state")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        if isinstance(state, QByteArray):
            self.restoreState(state)
        else:  # first start: the trees get most of the height, the docks what they need
            self._needs_dock_sizes = True

    @Slot()
    def _default_dock_sizes(self) -> None:
        self.resizeDocks([self.suggest_dock], [max(200, self.height() // 3)], Qt.Orientation.Vertical)
        self.resizeDocks([self.inspector_dock], [max(260, self.width() // 5)], Qt.Orientation.Horizontal)

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self.confirm_discard():
            event.ignore()
            return
        self.autosave.discard()  # saved or knowingly discarded: nothing to restore next time
        if self.train_panel is not None:
            try:
                self.train_panel.shutdown()
            except Exception:  # closing must always work
                pass
        self.progress.cancel_all()
        self.files.cancel_plan()
        self.pool.stop_all()
        store = settings.settings()
        store.setValue("window/geometry", self.saveGeometry())
        store.setValue("window/state", self.saveState())
        if self.doc.source is not None and self.doc.source.source is not None:
            self.doc.source.source.close()
        event.accept()
