"""Small dialogs: choosing a source or target (file or spec with completion), About, errors."""

from __future__ import annotations

import platform

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QCompleter,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..core.specs import builtin_model_names, torchvision_model_names
from ..core.strategies import Role

CHECKPOINT_FILTER = "Checkpoints (*.pth *.pt *.bin *.ckpt *.safetensors *.json);;All files (*)"
MAPPING_FILTER = "Mappings (*.json);;All files (*)"
WEIGHTS_FILTER = "safetensors (*.safetensors);;PyTorch (*.pth)"


def spec_completions(role: Role) -> list[str]:
    """torchvision and built-in model names as specs; sources also get the ImageNet weights form."""
    names = [f"torchvision:{n}" for n in torchvision_model_names()]
    names += [f"spp_gui:{n}" for n in builtin_model_names()]
    if role == Role.SOURCE:
        names += ["torchvision:alexnet:IMAGENET1K_V1", "torchvision:resnet50:IMAGENET1K_V2"]
    return sorted(names)


class SpecDialog(QDialog):
    """A spec field with completion (torchvision names, built-ins) and a Browse button for files."""

    def __init__(self, role: Role, current: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.role = role
        self.setWindowTitle(f"Open {role}")
        self.field = QLineEdit(current)
        self.field.setObjectName("specField")
        self.field.setPlaceholderText("torchvision:resnet50?num_classes=20, spp_gui:alexnet_spp, or a file path")
        completer = QCompleter(spec_completions(role), self)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        completer.setFilterMode(Qt.MatchFlag.MatchContains)
        self.field.setCompleter(completer)
        browse = QPushButton("Browse\u2026")
        browse.clicked.connect(self._browse)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        row = QHBoxLayout()
        row.addWidget(self.field, 1)
        row.addWidget(browse)
        layout = QVBoxLayout(self)
        hint = ("A checkpoint file, torchvision pretrained weights (torchvision:NAME:WEIGHTS) or a model spec "
                "(its fresh initialisation)." if role == Role.SOURCE else
                "A model spec (built on the meta device: no memory, no init), or a checkpoint file.")
        text = QLabel(hint)
        text.setWordWrap(True)
        layout.addWidget(text)
        layout.addLayout(row)
        layout.addWidget(buttons)
        self.resize(560, 130)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, f"Open {self.role} checkpoint", "", CHECKPOINT_FILTER)
        if path:
            self.field.setText(path)

    def spec(self) -> str:
        return self.field.text().strip()


class ContainerDialog(QDialog):
    """Which weight container of a checkpoint to read (state_dict, state_dict_ema, ...), the preferred one chosen."""

    def __init__(self, path: str, containers: list[str], sizes: dict[str, int], current: str | None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("containerDialog")
        self.setWindowTitle("Which weights?")
        text = QLabel(f"{path} holds {len(containers)} sets of weights. Which one is the source? "
                      "(EMA weights are chosen first, as timm does; optimizer and other training state are "
                      "never offered.)")
        text.setWordWrap(True)
        self.combo = QComboBox()
        self.combo.setObjectName("containerCombo")
        for key in containers:
            count = sizes.get(key)
            self.combo.addItem(f"{key} ({count:,} tensors)" if count is not None else key, key)
        if current in containers:
            self.combo.setCurrentIndex(containers.index(current))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(text)
        layout.addWidget(self.combo)
        layout.addWidget(buttons)
        self.setWindowModality(Qt.WindowModality.WindowModal)
        self.resize(480, 140)

    def chosen(self) -> str:
        return self.combo.currentData()


def about_text() -> str:
    import PySide6
    import torch
    import torchvision
    from PySide6.QtCore import qVersion

    from .. import __version__

    return (f"<h3>spp-gui {__version__}</h3>"
            "<p>Map pretrained weights into a model that is not quite the same, then train it.</p>"
            f"<p>torch {torch.__version__}<br>torchvision {torchvision.__version__}<br>"
            f"Qt {qVersion()} (PySide6 {PySide6.__version__})<br>Python {platform.python_version()}</p>")


def show_about(parent: QWidget) -> QMessageBox:
    box = QMessageBox(QMessageBox.Icon.Information, "About spp-gui", about_text(), QMessageBox.StandardButton.Ok, parent)
    box.setObjectName("aboutBox")
    box.setTextFormat(Qt.TextFormat.RichText)
    box.open()
    return box


def ask_to_run_code(parent: QWidget, exc, on_yes) -> QMessageBox:
    """Model code nobody allowed for these bytes: ask, naming the file and its sha256; ``on_yes()`` after
    the file is trusted (exactly these bytes: a file changed again asks again)."""
    from ..core.trust import trust_file

    box = QMessageBox(QMessageBox.Icon.Warning, "Run code from this file?",
                      f"This would run the Python file\n\n{exc.path}\n\nsha256 {exc.sha256}\n\nIt is named by "
                      f"{exc.spec!r}, from a mapping or a saved session, or it changed since you allowed it. "
                      "Running it can do anything your account can do. Run it only if you know where it comes from.",
                      QMessageBox.StandardButton.Cancel, parent)
    box.setObjectName("codeTrustBox")
    run = box.addButton("Run this file", QMessageBox.ButtonRole.AcceptRole)
    run.setObjectName("runCodeButton")
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)

    def finished(_result: int) -> None:
        if box.clickedButton() is run:
            trust_file(exc.path, exc.sha256)
            on_yes()

    box.finished.connect(finished)
    box.open()
    return box


def error_box(parent: QWidget, title: str, text: str, detail: str = "") -> QMessageBox:
    """A non-blocking error dialog (window-modal); the caller may connect ``finished``."""
    box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok, parent)
    box.setObjectName("errorBox")
    if detail:
        box.setDetailedText(detail)
    box.open()
    return box
