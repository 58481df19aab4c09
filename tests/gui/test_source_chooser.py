"""The editor asks which weights to read when a checkpoint holds several (state_dict, state_dict_ema, ...)."""

from __future__ import annotations

import argparse

import pytest
import torch
from safetensors.torch import load_file

from spp_gui.core.mapping import Mapping
from spp_gui.core.specs import build_model
from spp_gui.gui.dialogs import ContainerDialog


@pytest.fixture
def training_ckpt(tmp_path):
    """A timm-style training checkpoint of AlexNet: weights, their EMA (other values), optimizer, args."""
    model = build_model("torchvision:alexnet", device="cpu", seed=0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    ema = {k: v * 0.5 for k, v in state.items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(1, 3, 64, 64)).sum().backward()
    opt.step()
    path = tmp_path / "last.pth.tar"
    torch.save({"epoch": 1, "arch": "alexnet", "state_dict": state, "state_dict_ema": ema,
                "optimizer": opt.state_dict(), "args": argparse.Namespace(lr=0.1)}, path)
    return path, state, ema


def _chooser(qtbot, window) -> ContainerDialog:
    qtbot.waitUntil(lambda: window.files.container_dialog is not None and window.files.container_dialog.isVisible(),
                    timeout=30000)
    return window.files.container_dialog


def _clear_mapping_if_asked(qtbot, window) -> None:
    """Replacing the source of a session with a mapping asks what becomes of it: clear it."""
    from PySide6.QtWidgets import QMessageBox

    def box():
        return next((b for b in window.findChildren(QMessageBox) if b.isVisible()
                     and b.objectName() == "replaceSideBox"), None)

    qtbot.waitUntil(lambda: box() is not None, timeout=30000)
    [clear] = [b for b in box().buttons() if b.objectName() == "clearButton"]
    clear.click()


def test_choosing_the_other_container_loads_it_and_the_mapping_keeps_it(open_window, qtbot, wait_idle,
                                                                        training_ckpt, tmp_path):
    path, state, ema = training_ckpt
    window = open_window()
    window.files.open_file("source", str(path))
    dialog = _chooser(qtbot, window)
    combo = dialog.combo
    assert [combo.itemData(i) for i in range(combo.count())] == ["state_dict_ema", "state_dict"]
    assert combo.currentData() == "state_dict_ema"  # the preferred one, as timm chooses
    assert combo.itemText(0) == f"state_dict_ema ({len(ema)} tensors)"
    combo.setCurrentIndex(1)
    dialog.accept()
    _clear_mapping_if_asked(qtbot, window)
    qtbot.waitUntil(lambda: window.doc.source.spec.endswith("#state_dict"), timeout=30000)
    wait_idle(window)
    source = window.doc.source.source
    assert source.container == "state_dict" and set(source.tensors) == set(state)
    assert torch.equal(source.read("features.0.weight"), state["features.0.weight"])
    window.edits.map_paths(["features.0.weight"], "features.0.weight")
    saved = tmp_path / "m.json"
    assert window.files.save_mapping(str(saved), even_with_problems=True)
    assert Mapping.load(saved).source_spec.endswith("#state_dict")
    out = tmp_path / "out.safetensors"
    job = window.files.export(str(out))  # export reads the container the session shows
    with qtbot.waitSignal(job.ended, timeout=60000):
        pass
    assert torch.equal(load_file(str(out))["features.0.weight"], state["features.0.weight"])
    again = open_window(["--mapping", str(saved)])  # a named container is not asked again
    assert window.files.container_dialog is None and again.files.container_dialog is None
    assert again.doc.source.source.container == "state_dict"


def test_the_default_is_kept_and_cancel_leaves_the_session(open_window, qtbot, wait_idle, training_ckpt):
    path, state, ema = training_ckpt
    window = open_window()
    before = window.doc.source
    window.files.open_file("source", str(path))
    _chooser(qtbot, window).reject()
    qtbot.waitUntil(lambda: window.files.container_dialog is None and not window.files.busy, timeout=30000)
    assert window.doc.source is before and "unchanged" in window.statusBar().currentMessage()

    window.files.open_file("source", str(path))
    _chooser(qtbot, window).accept()  # the preferred container, already loaded: no second load
    _clear_mapping_if_asked(qtbot, window)
    qtbot.waitUntil(lambda: window.doc.source is not before, timeout=30000)
    wait_idle(window)
    source = window.doc.source.source
    assert source.container == "state_dict_ema" and window.doc.source.spec.endswith("#state_dict_ema")
    assert torch.equal(source.read("features.0.weight"), ema["features.0.weight"])
    assert not any("momentum" in k for k in window.doc.source.side.table)
