"""Files and long jobs: save/reopen, export, cancel a load, bad files, closing with unsaved changes."""

from __future__ import annotations

import torch
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox
from safetensors.torch import load_file

from spp_gui.core.specs import build_model
from spp_gui.gui.app import open_window as build_window

EMPTY = ["torchvision:alexnet", "spp_gui:alexnet_spp?num_classes=20", "--strategy", "none"]


def message_boxes(window) -> list[QMessageBox]:
    return [b for b in window.findChildren(QMessageBox) if b.isVisible()]


def test_save_then_reopen_gives_the_same_mapping(open_window, tmp_path, wait_idle):
    window = open_window()
    window.edits.map_paths(["features.8.bias"], "features.10.bias")  # a renamed, manual entry
    path = tmp_path / "m.json"
    assert window.files.save_mapping(str(path))
    assert not window.modified and not window.isWindowModified()
    again = open_window(["--mapping", str(path)])
    assert again.doc.mapping == window.doc.mapping
    assert again.doc.mapping.get("features.10.bias").source == "features.8.bias"
    assert again.doc.target_status("features.10.bias") == "renamed"
    assert again.session.path == str(path)


def test_export_writes_weights_that_load(open_window, qtbot, tmp_path):
    window = open_window()
    out = tmp_path / "out.safetensors"
    job = window.files.export(str(out))
    with qtbot.waitSignal(job.ended, timeout=60000):
        pass
    state = load_file(str(out))
    model = build_model("spp_gui:alexnet_spp?num_classes=20", device="cpu")
    model.load_state_dict(state)
    source = build_model("torchvision:alexnet", device="cpu", seed=0).state_dict()
    assert torch.equal(state["features.0.weight"], source["features.0.weight"])
    assert window.files.last_report.share > 0.2
    assert "Exported" in window.statusBar().currentMessage()


def test_cancelling_an_export_leaves_the_file_as_it_was(open_window, qtbot, tmp_path):
    window = open_window()
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"the user's earlier export")
    job = window.files.export(str(out))
    assert window.progress.busy and window.progress.label.text().startswith("Exporting")
    window.progress.cancel_button.click()  # the worker closes the export generator at its next step
    with qtbot.waitSignal(job.ended, timeout=60000):
        pass
    qtbot.waitUntil(lambda: not window.pool.busy, timeout=10000)
    assert out.read_bytes() == b"the user's earlier export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.safetensors"]  # no temporary file left
    assert window.statusBar().currentMessage() == "Export cancelled"
    assert window.files.last_report is None


def test_cancelling_a_long_load_keeps_the_session(open_window, qtbot):
    window = open_window()
    before = (window.doc.source, window.doc.target, window.doc.mapping.copy())
    window.files.open_session("torchvision:vit_h_14", "torchvision:vit_h_14?num_classes=3")
    assert window.progress.isVisibleTo(window) and window.progress.busy
    window.progress.cancel_button.click()
    qtbot.waitUntil(lambda: not window.pool.busy and not window.progress.busy, timeout=60000)
    assert (window.doc.source, window.doc.target) == before[:2]
    assert window.doc.mapping == before[2]
    assert window.source_model.tree is before[0].tree


def test_a_bad_file_shows_an_error_and_the_session_stays(open_window, qtbot, tmp_path):
    window = open_window()
    before = (window.doc.source, window.doc.mapping.copy())
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    window.files.open_file("source", str(bad))
    qtbot.waitUntil(lambda: bool(message_boxes(window)), timeout=30000)
    box = message_boxes(window)[0]
    assert "broken.pth" in box.text() and "unchanged" in box.text()
    box.accept()
    assert window.doc.source is before[0] and window.doc.mapping == before[1]
    assert window.source_model.tree is before[0].tree


class Custom(torch.nn.Module):  # pickled whole: needs full unpickling to load
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)


def test_an_unsafe_pickle_offers_to_trust_the_file(open_window, qtbot, tmp_path):
    window = open_window()
    path = tmp_path / "whole_model.pth"
    torch.save(Custom(), path)
    window.files.open_file("source", str(path))
    qtbot.waitUntil(lambda: bool(message_boxes(window)), timeout=30000)
    box = message_boxes(window)[0]
    trust = [b for b in box.buttons() if b.text() == "Trust this file"]
    assert trust, "the dialog offers to trust the file"
    trust[0].click()
    # the session has a mapping for the old source: the editor asks what becomes of it
    qtbot.waitUntil(lambda: any(b.objectName() == "replaceSideBox" for b in message_boxes(window)), timeout=30000)
    [keep] = [b for b in message_boxes(window)[0].buttons() if b.objectName() == "clearButton"]
    keep.click()
    qtbot.waitUntil(lambda: window.doc.source.spec == str(path), timeout=30000)
    assert set(window.doc.source.side.table) == {"conv.weight", "conv.bias"}
    assert window.doc.source.trust_pickle


def test_trust_holds_for_the_bytes_trusted_not_for_a_file_put_in_their_place(open_window, qtbot, tmp_path):
    """Export reopens the source: a pickle swapped in under the trusted name is refused, never run."""
    from faultgen import malicious

    window = open_window()
    path = tmp_path / "whole_model.pth"
    torch.save(Custom(), path)
    window.files.open_file("source", str(path))
    qtbot.waitUntil(lambda: bool(message_boxes(window)), timeout=30000)
    [trust] = [b for b in message_boxes(window)[0].buttons() if b.text() == "Trust this file"]
    trust.click()
    qtbot.waitUntil(lambda: any(b.objectName() == "replaceSideBox" for b in message_boxes(window)), timeout=30000)
    [clear] = [b for b in message_boxes(window)[0].buttons() if b.objectName() == "clearButton"]
    clear.click()
    qtbot.waitUntil(lambda: window.doc.source.spec == str(path), timeout=30000)
    first = tmp_path / "first.safetensors"
    job = window.files.export(str(first))
    with qtbot.waitSignal(job.ended, timeout=60000):
        pass
    assert first.exists() and not message_boxes(window)  # the trusted bytes: exported as before

    marker = tmp_path / "ran.txt"
    _name, evil = next(malicious(tmp_path / "evil", marker))
    path.write_bytes(evil.read_bytes())  # same name, other bytes
    second = tmp_path / "second.safetensors"
    job = window.files.export(str(second))
    with qtbot.waitSignal(job.ended, timeout=60000):
        pass
    qtbot.waitUntil(lambda: bool(message_boxes(window)), timeout=30000)
    box = message_boxes(window)[0]
    assert "changed since you trusted it" in box.text() and "whole_model.pth" in box.text()
    box.accept()
    assert not marker.exists() and not second.exists()


def test_closing_with_unsaved_changes_asks_to_save(qtbot, tmp_path, wait_idle):
    window = build_window(EMPTY)
    window.show()
    wait_idle(window)
    window.edits.map_paths(["features.0.weight"], "features.0.weight")
    assert window.modified

    def answer(button):
        def click():
            box = QApplication.activeModalWidget()
            assert isinstance(box, QMessageBox) and "unsaved" in box.text()
            box.button(button).click()
        return click

    QTimer.singleShot(0, answer(QMessageBox.StandardButton.Cancel))
    assert not window.close()
    assert window.isVisible()
    QTimer.singleShot(0, answer(QMessageBox.StandardButton.Discard))
    assert window.close()
    window.deleteLater()


def test_export_mapping_as_other_loaders_formats(open_window, qtbot, tmp_path):
    """File > Export mapping as: python, HF key_mapping, MMEngine revise_keys, each checked like the CLI's."""
    window = open_window()  # AlexNet -> AlexNet_SPP by `order`: 13 plain renames-or-copies
    source = build_model("torchvision:alexnet", device="cpu", seed=0).state_dict()
    target = build_model("spp_gui:alexnet_spp?num_classes=20", device="meta").state_dict()
    out = tmp_path / "remap.py"
    job = window.files.export_mapping_as("python", str(out))
    with qtbot.waitSignal(job.ended, timeout=30000):
        pass
    namespace: dict = {}
    exec(compile(out.read_text(), str(out), "exec"), namespace)  # the snippet runs without spp_gui
    remapped = namespace["remap"](source, target)
    assert set(remapped) == set(window.session.mapping.entries)
    assert all(torch.equal(remapped[t], source[e.source]) for t, e in window.session.mapping.entries.items())
    for fmt in ("hf-key-mapping", "mmengine-revise-keys"):
        job = window.files.export_mapping_as(fmt, str(tmp_path / f"{fmt}.py"))
        with qtbot.waitSignal(job.ended, timeout=30000):
            pass
        compile((tmp_path / f"{fmt}.py").read_text(), fmt, "exec")
        assert window.files.last_mapping_export.format == fmt
    assert "Exported the mapping as" in window.statusBar().currentMessage()
