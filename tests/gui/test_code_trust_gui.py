"""Opening or dropping a mapping that names a ``.py`` model asks before any of it runs."""

from __future__ import annotations

from faultgen import EVIL_PY as EVIL  # a model file that leaves a marker when imported
from PySide6.QtWidgets import QMessageBox

from spp_gui.core.mapping import Mapping

EMPTY = ["torchvision:alexnet", "spp_gui:alexnet_spp?num_classes=20", "--strategy", "none"]


def _boxes(window) -> list[QMessageBox]:
    return [b for b in window.findChildren(QMessageBox) if b.isVisible() and b.objectName() == "codeTrustBox"]


def test_a_dropped_mapping_naming_code_asks_first(open_window, qtbot, tmp_path, wait_idle):
    marker = tmp_path / "MARKER"
    code = tmp_path / "evil.py"
    code.write_text(EVIL.format(marker=str(marker)))
    sent = tmp_path / "sent.json"
    Mapping("torchvision:alexnet", f"{code}:Net").save(sent)
    window = open_window(EMPTY)
    before = window.doc.target

    window.files.open_file("target", str(sent))  # what dropping the file on a tree does
    qtbot.waitUntil(lambda: bool(_boxes(window)), timeout=30000)
    box = _boxes(window)[0]
    assert str(code) in box.text() and "sha256" in box.text()
    assert not marker.exists(), "nothing ran before the user answered"
    box.reject()  # Cancel
    wait_idle(window)
    assert not marker.exists() and window.doc.target is before

    window.files.open_file("target", str(sent))
    qtbot.waitUntil(lambda: bool(_boxes(window)), timeout=30000)
    run = [b for b in _boxes(window)[0].buttons() if b.objectName() == "runCodeButton"]
    run[0].click()
    qtbot.waitUntil(lambda: window.doc.target is not before and window.files.plan is None, timeout=30000)
    assert marker.exists() and window.doc.target.spec == f"{code}:Net"
    assert set(window.doc.target.side.table) == {"fc.weight", "fc.bias"}


def test_a_model_file_changed_after_it_was_allowed_asks_again_on_export(open_window, qtbot, tmp_path, wait_idle):
    import torch

    marker = tmp_path / "MARKER"
    code = tmp_path / "mine.py"
    code.write_text(EVIL.format(marker=str(marker)))
    source = tmp_path / "src.pth"
    torch.save({"fc.weight": torch.randn(2, 4), "fc.bias": torch.randn(2)}, source)
    window = open_window([str(source), f"{code}:Net", "--strategy", "exact"])  # named by the user: runs
    assert marker.exists() and len(window.session.mapping) == 2
    marker.unlink()
    code.write_text(code.read_text() + "\n# edited after it was allowed\n")
    out = tmp_path / "out.safetensors"
    window.files.export(str(out))
    qtbot.waitUntil(lambda: bool(_boxes(window)), timeout=30000)
    assert not marker.exists() and str(code) in _boxes(window)[0].text()
    [run] = [b for b in _boxes(window)[0].buttons() if b.objectName() == "runCodeButton"]
    run.click()
    qtbot.waitUntil(lambda: out.exists() and window.files.last_report is not None, timeout=30000)
    assert marker.exists()
