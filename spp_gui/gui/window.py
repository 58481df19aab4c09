"""The main window: composes the editor page (trees, links, docks), the Training page, menus and status bar.

The session has one owner, :class:`MappingSession`; behaviour lives in controllers that get the
session and a :class:`Services` (never this window): :class:`EditController` (edits),
:class:`SuggestController`, :class:`FileController` (files, loads, export), :class:`VerifyController`,
:class:`Autosaver`. This module only builds the widgets and wires them together.
"""

from __future__ import annotations

from PySide6.QtCore import QByteArray, QModelIndex, Qt, QTimer, Slot
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMenu,
    QMessageBox,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..core.mapping import INVALID
from ..core.strategies import Role, Suggestion
from . import settings
from .autosave import Autosaver
from .dialogs import error_box, show_about
from .document import Loaded
from .editing import EditController
from .files import FileController
from .inspector import Inspector
from .link_canvas import LinkCanvas
from .problems import ProblemsPanel
from .progress import ProgressArea
from .session import MappingSession, Services
from .style import STATUS_ORDER, STATUS_STYLE, app_icon, status_icon
from .suggest_control import SuggestController
from .suggest_panel import SuggestPanel
from .train_panel import TrainPanel
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
        text = QLabel(status if status != INVALID else "incompatible")
        for w in (icon, text):
            w.setToolTip(STATUS_STYLE[status][2])
        row.addWidget(icon)
        row.addWidget(text)
        row.addSpacing(8)
    row.addStretch(1)
    return box


class MainWindow(QMainWindow):
    """One mapping session: the editor page (source tree | links | target tree, with its docks) and Training."""

    def __init__(self, allow_download: bool = False) -> None:
        super().__init__()
        self.setWindowIcon(app_icon())
        self.session = MappingSession(self)
        self.pool = WorkerPool(self)
        self.progress = ProgressArea()
        self.services = Services(self.pool, self.progress, self.message, self._error, self)
        self.source_model = ParamTreeModel(self.session.doc, Role.SOURCE, self)
        self.target_model = ParamTreeModel(self.session.doc, Role.TARGET, self)
        self.source_panel = TreePanel(self.source_model, "Source")
        self.target_panel = TreePanel(self.target_model, "Target")
        self.canvas = LinkCanvas(self.session.doc, self.source_panel.view, self.target_panel.view)
        self.canvas.setObjectName("linkCanvas")
        self.edits = EditController(self.session, self.message, self)
        self.suggest = SuggestPanel(self.session)
        self.suggester = SuggestController(self.session, self.services, self.suggest, self.edits, self)
        self.files = FileController(self.session, self.services, self.suggester, allow_download, self)
        self.autosave = Autosaver(self.session, self.services, self)
        self.verify = VerifyController(self.session, self.services, self)
        self.problems = ProblemsPanel(self.session)
        self.inspector = Inspector(self.session)
        self.summary = QLabel("")
        self.summary.setObjectName("summary")
        self._revealing = False  # selecting a partner must not bounce back

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
        # the editor is a page with docks of its own, so Training gets the whole window when shown
        self.editor = QMainWindow()
        self.editor.setObjectName("editorPage")
        self.editor.setCentralWidget(central)
        self.suggest_dock = self._dock("Auto-suggest", self.suggest, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.problems_dock = self._dock("Problems", self.problems, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.editor.tabifyDockWidget(self.suggest_dock, self.problems_dock)
        inspector_scroll = QScrollArea()  # wrapped labels need their height: scroll rather than overlap
        inspector_scroll.setWidgetResizable(True)
        inspector_scroll.setFrameShape(QFrame.Shape.NoFrame)
        inspector_scroll.setWidget(self.inspector)
        self.inspector_dock = self._dock("Inspector", inspector_scroll, Qt.DockWidgetArea.RightDockWidgetArea)
        self.train_panel = TrainPanel()
        self.train_panel.set_session_reader(self.session.snapshot)
        self.pages = QTabWidget()
        self.pages.setObjectName("pages")
        self.pages.setDocumentMode(True)
        self.pages.addTab(self.editor, "Editor")
        self.pages.addTab(self.train_panel, "Training")
        self.setCentralWidget(self.pages)
        self.statusBar().addWidget(self.summary, 1)
        self.statusBar().addPermanentWidget(self.progress)

        self._wire()
        self._menus()
        self.resize(1400, 900)
        self._restore_layout()
        self._session_changed()
        self.update_title()

    # -- construction ---------------------------------------------------------------------------
    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self.editor)
        dock.setObjectName(title.replace(" ", "").replace("-", "") + "Dock")
        dock.setWidget(widget)
        self.editor.addDockWidget(area, dock)
        return dock

    def _wire(self) -> None:
        session = self.session
        session.changed.connect(self._session_changed)
        session.sidesChanged.connect(self._sides_loaded)
        session.modifiedChanged.connect(self.update_title)
        session.pathChanged.connect(self.update_title)
        session.stack.indexChanged.connect(self.update_title)
        self.files.recentChanged.connect(self.refresh_recent)
        self.files.problemsRequested.connect(self.show_problems)
        self.target_model.on_drop_keys = self.edits.map_paths
        self.source_model.on_drop_files = lambda files: self.files.open_file(Role.SOURCE, files[0])
        self.target_model.on_drop_files = lambda files: self.files.open_file(Role.TARGET, files[0])
        self.source_panel.view.selectionModel().currentChanged.connect(self._source_current)
        self.target_panel.view.selectionModel().currentChanged.connect(self._target_current)
        self.source_panel.filterChanged.connect(self.canvas.invalidate)
        self.target_panel.filterChanged.connect(self.canvas.invalidate)
        self.canvas.linkClicked.connect(self.select_link)
        self.suggest.suggestionSelected.connect(self._suggestion_selected)
        self.inspector.transformRequested.connect(self.edits.set_transform)
        self.inspector.removeRequested.connect(lambda key: self.edits.unmap([key]))
        self.inspector.suggestionChosen.connect(lambda s: self.edits.accept([s], f"Use {' + '.join(s.sources)} for {s.target}"))
        self.inspector.message.connect(self.message)
        self.problems.removeRequested.connect(self._remove_problems)
        self.problems.entrySelected.connect(self.select_link)
        self.verify.coloursChanged.connect(self.canvas.set_verify)
        self.verify.layerActivated.connect(self.select_link)
        self.pages.currentChanged.connect(self._page_changed)

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
        a(f, "Open &source checkpoint\u2026", lambda: self.files.open_side_file(Role.SOURCE), QKeySequence.StandardKey.Open)
        a(f, "Source from s&pec\u2026", lambda: self.files.open_side_dialog(Role.SOURCE), "Ctrl+L",
          "A torchvision name, weights or model spec as the source")
        a(f, "Open &target checkpoint\u2026", lambda: self.files.open_side_file(Role.TARGET), "Ctrl+Shift+O")
        a(f, "Target from sp&ec\u2026", lambda: self.files.open_side_dialog(Role.TARGET), "Ctrl+Shift+L")
        f.addSeparator()
        a(f, "Open &mapping\u2026", self.files.open_mapping_dialog, "Ctrl+Shift+M")
        a(f, "Sa&ve mapping", self.files.save_mapping, QKeySequence.StandardKey.Save)
        a(f, "Save mapping &as\u2026", self.files.save_mapping_as, QKeySequence.StandardKey.SaveAs)
        a(f, "E&xport weights\u2026", self.files.export_dialog, "Ctrl+E",
          "Apply the mapping to the target and write .safetensors or .pth")
        as_menu = f.addMenu("Export mappin&g as")
        for fmt, label in (("python", "&Python remap() function\u2026"),
                           ("hf-key-mapping", "&Hugging Face key_mapping\u2026"),
                           ("mmengine-revise-keys", "&MMEngine revise_keys\u2026")):
            a(as_menu, label, lambda _=False, f=fmt: self.files.export_mapping_dialog(f), None,
              f"The mapping as a {fmt} snippet another loader uses, without spp_gui")
        self.recent_menu = f.addMenu("&Recent")
        f.addSeparator()
        a(f, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        e = bar.addMenu("&Edit")
        undo = self.session.stack.createUndoAction(self, "&Undo")
        undo.setShortcut(QKeySequence.StandardKey.Undo)
        redo = self.session.stack.createRedoAction(self, "&Redo")
        redo.setShortcuts([QKeySequence(QKeySequence.StandardKey.Redo), QKeySequence("Ctrl+Y")])
        e.addActions([undo, redo])
        self.addActions([undo, redo])
        e.addSeparator()
        a(e, "&Map selected", self.map_selected, "M", "Map the selected source key onto the selected target key")
        a(e, "&Remove entry", self.remove_selected, QKeySequence.StandardKey.Delete,
          "Unmap the selected keys of the tree that has the focus")
        a(e, "&Clear mapping", self.clear_mapping, None, "Unmap everything (one undo step)")

        v = bar.addMenu("&View")
        a(v, "Filter &source keys", lambda: self._focus(self.source_panel.filter), "Ctrl+F")
        a(v, "Filter &target keys", lambda: self._focus(self.target_panel.filter), "Ctrl+Shift+F")
        a(v, "&Expand all", self.expand_all, "Ctrl+Shift+E")
        a(v, "&Collapse all", self.collapse_all, "Ctrl+Shift+C")
        v.addSeparator()
        a(v, "E&ditor page", lambda: self.pages.setCurrentWidget(self.editor), "Ctrl+1")
        a(v, "&Training page", lambda: self.pages.setCurrentWidget(self.train_panel), "Ctrl+2")
        v.addSeparator()
        for dock in self.editor.findChildren(QDockWidget):
            v.addAction(dock.toggleViewAction())

        s = bar.addMenu("&Suggest")
        a(s, "&Run strategy", self.suggest.request_run, "Ctrl+R", "Run the chosen strategy and preview its suggestions")
        a(s, "&Apply suggestions", self.suggest.accept_all.click, "Ctrl+Shift+A",
          "Put the rows that read 'will apply' into the mapping (one undo step)")
        s.addSeparator()
        self.verify_action = a(s, "&Verify mapping", self.verify.run, "Ctrl+Shift+V", VERIFY_TIP)
        self.verify.bind_action(self.verify_action)
        s.addSeparator()
        a(s, "Cancel running job", self.progress.cancel_all, "Esc")

        h = bar.addMenu("&Help")
        a(h, "&Keyboard shortcuts", self.show_shortcuts, "F1")
        a(h, "&About spp-gui", lambda: show_about(self))
        self.refresh_recent()

    # -- the session as the views show it ----------------------------------------------------------
    @property
    def doc(self):
        return self.session.doc

    @property
    def stack(self):
        return self.session.stack

    @property
    def modified(self) -> bool:
        return self.session.modified

    def _sides_loaded(self) -> None:
        for model, panel, side in ((self.source_model, self.source_panel, self.session.source),
                                   (self.target_model, self.target_panel, self.session.target)):
            if side is not None and model.tree is not side.tree:
                model.set_tree(side.tree)
                panel.reset()
                panel.set_heading(side.spec, self._note(side))
        self.inspector.show_target(None)
        self.update_title()

    @staticmethod
    def _note(side: Loaded) -> str:
        if side.source is not None and side.source.random_init:
            return "random init: no pretrained weights"
        notes = [n for n in side.notes if not n.startswith("torchvision weights from")]
        return "; ".join(notes)

    def _session_changed(self) -> None:
        s = self.session.doc.summary()
        text = (f"{s.headline()} \u00b7 {s.share:.1%} of target parameters from the source \u00b7 "
                f"{s.unused} source tensors unused")
        if s.invalid:
            text += f" \u00b7 {s.invalid} cannot be applied (see Problems)"
        self.summary.setText(text)
        problems = self.problems.count()
        self.problems_dock.setWindowTitle(f"Problems ({problems})" if problems else "Problems")
        for panel in (self.source_panel, self.target_panel):
            panel.view.viewport().update()
        self.update_title()

    def update_title(self, *_args) -> None:
        session = self.session
        name = session.path or "untitled mapping"
        source, target = session.source, session.target
        sides = f"{source.spec} \u2192 {target.spec}" if source is not None and target is not None else "no session"
        self.setWindowTitle(f"{name}[*] \u2014 {sides} \u2014 spp-gui")
        self.setWindowModified(session.modified)

    def message(self, text: str) -> None:
        self.statusBar().showMessage(text, 10000)

    def _error(self, title: str, text: str, detail: str = "") -> None:
        error_box(self, title, text, detail)

    def show_problems(self) -> None:
        self.pages.setCurrentWidget(self.editor)
        self.problems_dock.show()
        self.problems_dock.raise_()

    def _remove_problems(self, keys: list[str]) -> None:
        self.edits.push(dict.fromkeys(keys), f"Remove {len(keys)} entries that cannot be applied")

    def _page_changed(self, index: int) -> None:
        if self.pages.widget(index) is self.train_panel:
            self.train_panel.refresh_session()

    # -- selection ------------------------------------------------------------------------------
    def _source_current(self, current: QModelIndex, previous: QModelIndex) -> None:
        node = self.source_model.node(current) if current.isValid() else None
        leaf = node if node is not None and node.tensor is not None else None
        self.target_model.set_highlight(leaf.info.shape if leaf is not None else None,
                                        near=leaf.path if leaf is not None else None)
        self.source_model.set_highlight(None)
        self.target_panel.view.viewport().update()
        self.source_panel.view.viewport().update()
        if leaf is not None and not self._revealing:
            users = self.session.doc.status.source_used_by.get(leaf.path)
            if users:
                self._reveal(self.target_panel, users[0])
                self.inspector.show_target(users[0])

    def _target_current(self, current: QModelIndex, previous: QModelIndex) -> None:
        node = self.target_model.node(current) if current.isValid() else None
        leaf = node if node is not None and node.tensor is not None else None
        self.source_model.set_highlight(leaf.info.shape if leaf is not None else None,
                                        near=leaf.path if leaf is not None else None)
        self.target_model.set_highlight(None)
        self.source_panel.view.viewport().update()
        self.target_panel.view.viewport().update()
        self.inspector.show_target(leaf.path if leaf is not None else None)
        if leaf is not None and not self._revealing:
            entry = self.session.mapping.get(leaf.path)
            source = self.session.source
            if entry is not None and source is not None and entry.source in source.side.table:
                self._reveal(self.source_panel, entry.source)

    def _reveal(self, panel: TreePanel, path: str) -> None:
        self._revealing = True
        try:
            panel.reveal(path)
        finally:
            self._revealing = False

    def select_link(self, target: str, source: str) -> None:
        """A clicked link (or problem, or verified layer) selects its entry: both rows, and the inspector."""
        self._revealing = True
        try:
            if source:
                self.source_panel.reveal(source, current=True)
            self.target_panel.reveal(target, current=True)
        finally:
            self._revealing = False
        self.inspector.show_target(target if target in self.session.mapping else None)

    def _suggestion_selected(self, s: Suggestion | None) -> None:
        if s is not None:
            self.select_link(s.target, s.source)

    def _selected_paths(self, panel: TreePanel) -> list[str]:
        rows = panel.view.selectionModel().selectedRows(0)
        return [node.path for i in rows if (node := panel.model.node(i)) is not None]

    # -- edits ----------------------------------------------------------------------------------
    def map_selected(self) -> bool:
        sources, targets = self._selected_paths(self.source_panel), self._selected_paths(self.target_panel)
        if len(sources) != 1 or len(targets) != 1:
            self.message("Select one key (or module) in each tree, then press M")
            return False
        return self.edits.map_paths(sources, targets[0])

    def remove_selected(self) -> bool:
        """Delete: unmap what is selected in the tree that has the focus (the target tree otherwise)."""
        source, target = self.session.source, self.session.target
        if source is None or target is None:
            return False
        if self.source_panel.view.hasFocus():
            keys = []
            for path in self._selected_paths(self.source_panel):
                keys += [leaf.path for leaf in source.tree.node(path).leaves()]
            return self.edits.unmap_sources(keys)
        keys = []
        for path in self._selected_paths(self.target_panel):
            keys += [leaf.path for leaf in target.tree.node(path).leaves()]
        return self.edits.unmap(keys)

    def clear_mapping(self) -> None:
        if self.session.mapping.entries:
            self.edits.push(dict.fromkeys(self.session.mapping.entries), "Clear mapping")

    def _focus(self, widget: QLineEdit) -> None:
        widget.setFocus()
        widget.selectAll()

    def expand_all(self) -> None:
        for panel in (self.source_panel, self.target_panel):
            panel.expand_all()
        self.canvas.invalidate()

    def collapse_all(self) -> None:
        for panel in (self.source_panel, self.target_panel):
            panel.collapse_all()
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
        for kind, role in (("mappings", None), ("source", Role.SOURCE), ("target", Role.TARGET)):
            for path in settings.recent(kind):
                label = f"{'mapping' if role is None else role}: {path}"
                action = self.recent_menu.addAction(label)
                if role is None:
                    action.triggered.connect(lambda _=False, p=path: self.files.open_file(Role.SOURCE, p))
                else:
                    action.triggered.connect(lambda _=False, p=path, r=role: self.files.open_file(r, p))
        self.recent_menu.setEnabled(not self.recent_menu.isEmpty())

    # -- layout and closing ---------------------------------------------------------------------
    def _restore_layout(self) -> None:
        store = settings.settings()
        geometry, state = store.value("window/geometry"), store.value("window/editorState")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        if isinstance(state, QByteArray):
            self.editor.restoreState(state)
        else:  # first start: the trees get most of the height, the docks what they need
            self._needs_dock_sizes = True

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if getattr(self, "_needs_dock_sizes", False):
            self._needs_dock_sizes = False
            QTimer.singleShot(0, self._default_dock_sizes)
        if not getattr(self, "_focused_once", False):
            self._focused_once = True  # where the keys work: M, Delete, Ctrl+E, Ctrl+Z act on the trees
            self.suggest_dock.raise_()
            self.target_panel.view.setFocus()

    @Slot()
    def _default_dock_sizes(self) -> None:
        self.editor.resizeDocks([self.suggest_dock], [max(200, self.height() // 3)], Qt.Orientation.Vertical)
        self.editor.resizeDocks([self.inspector_dock], [max(260, self.width() // 5)], Qt.Orientation.Horizontal)

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.train_panel.busy:
            answer = self.train_panel.ask_to_stop()
            if answer != "stop":
                if answer == "keep":
                    self.pages.setCurrentWidget(self.train_panel)
                event.ignore()
                return
        if not self.files.confirm_discard():
            event.ignore()
            return
        # first what could still change the session (a load finishing, a suggest, the autosave timer),
        # then the run, whose shutdown waits with an event loop
        self.files.cancel_plan()
        self.suggester.cancel()
        self.progress.cancel_all()
        self.autosave.stop()
        self.autosave.discard()  # saved or knowingly discarded: nothing to restore next time
        try:
            self.train_panel.shutdown()
        except Exception:  # noqa: BLE001 - closing must always work
            pass
        self.pool.stop_all()
        store = settings.settings()
        store.setValue("window/geometry", self.saveGeometry())
        store.setValue("window/editorState", self.editor.saveState())
        self.session.close()
        event.accept()
