"""The Train panel's form, remembered between sessions in the app's QSettings (``train/...`` keys).

Only what a person sets up once and expects back: folders and hyperparameters. The target spec
and the weights come from the editor's session; run names are per run. A value that cannot be
read back (an edited INI, a choice that no longer exists) is skipped, leaving the default.
"""

from __future__ import annotations

from collections.abc import Mapping

from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QSpinBox, QWidget

from . import settings

GROUP = "train"


def remember(fields: Mapping[str, QWidget]) -> None:
    """Write each field's current value."""
    store = settings.settings()
    for key, widget in fields.items():
        store.setValue(f"{GROUP}/{key}", _value(widget))
    store.sync()


def restore(fields: Mapping[str, QWidget]) -> None:
    """Set each field from the stored value, where there is a readable one."""
    store = settings.settings()
    for key, widget in fields.items():
        value = store.value(f"{GROUP}/{key}")
        if value is not None:
            _set(widget, value)


def _value(widget: QWidget):
    if isinstance(widget, QLineEdit):
        return widget.text()
    if isinstance(widget, QComboBox):
        return widget.currentText()
    if isinstance(widget, QCheckBox):
        return widget.isChecked()
    if isinstance(widget, (QSpinBox, QDoubleSpinBox)):
        return widget.value()
    raise TypeError(f"no stored form value for a {type(widget).__name__}")


def _set(widget: QWidget, value) -> None:
    """INI files give strings back: each type is parsed, and a bad value leaves the field as it is."""
    text = str(value)
    try:
        if isinstance(widget, QLineEdit):
            widget.setText(text)
        elif isinstance(widget, QComboBox):
            if widget.findText(text) >= 0:
                widget.setCurrentText(text)
        elif isinstance(widget, QCheckBox):
            widget.setChecked(value is True or text.lower() == "true")
        elif isinstance(widget, QDoubleSpinBox):
            widget.setValue(float(text))
        elif isinstance(widget, QSpinBox):
            widget.setValue(int(float(text)))
    except ValueError:
        pass
