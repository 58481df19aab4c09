"""Damaged and malicious checkpoints opened in the editor: an error dialog, the session intact.

(Bit flips inside tensor data are not here: opening lists keys without reading data; the CRC
check catches them when the tensors are read, at export — see tests/core/test_faults.py.)
"""

from __future__ import annotations

import random

from faultgen import base_files, crafted_safetensors, malicious, truncations, zip_damage
from PySide6.QtWidgets import QMessageBox


def _boxes(window) -> list[QMessageBox]:
    return [b for b in window.findChildren(QMessageBox) if b.isVisible()]


def test_fault_cases_keep_the_session(open_window, qtbot, tmp_path):
    window = open_window()
    source, mapping = window.doc.source, window.doc.mapping.copy()
    files = base_files(tmp_path / "base")
    rng = random.Random(3)
    cases = [*truncations(files["pth"], 3, rng), *truncations(files["safetensors"], 3, rng),
             *list(crafted_safetensors())[:4], *zip_damage(files["pth"])]
    paths = []
    for i, (name, blob) in enumerate(cases):
        path = tmp_path / f"case{i}{'.safetensors' if 'safetensors' in name else '.pth'}"
        path.write_bytes(blob)
        paths.append((name, path))
    marker = tmp_path / "PWNED"
    paths += list(malicious(tmp_path / "evil", marker))[:3]
    errors = 0
    for name, path in paths:
        window.files.open_file("source", str(path))
        qtbot.waitUntil(lambda: bool(_boxes(window)), timeout=30000)
        box = _boxes(window)[0]
        assert path.name in box.text() or "Trust this file" in [b.text() for b in box.buttons()], name
        box.reject()
        qtbot.waitUntil(lambda: window.files.plan is None and not _boxes(window), timeout=30000)
        assert window.doc.source is source and window.doc.mapping == mapping, name
        errors += 1
    assert not marker.exists()
    assert errors == len(paths) == 16
