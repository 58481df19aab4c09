"""Suggest (auto) checks its pairs by running both models when both sides are model specs."""

from __future__ import annotations

import torch

SOURCE = "torchvision:resnet18"
TARGET = "torchvision:resnet18?num_classes=10"


def _suggest(window, qtbot):
    window.suggest.strategy.setCurrentText("auto")
    window.suggest.request_run()
    qtbot.waitUntil(lambda: window.session.suggestions is not None and not window.suggester.busy, timeout=120000)


def test_suggest_verifies_and_says_what_verify_changed(open_window, qtbot):
    window = open_window([SOURCE, TARGET, "--strategy", "none"])
    assert window.suggest.verify_box.isVisibleTo(window.suggest) is False  # 'none' is no auto
    window.suggest.strategy.setCurrentText("auto")
    assert window.suggest.verify_box.isVisibleTo(window.suggest) and window.suggest.verify_box.isChecked()
    assert window.suggester.verifies("auto", window.session.source.side, window.session.target.side)
    _suggest(window, qtbot)
    line = window.suggest.verify_line
    assert line.isVisibleTo(window.suggest)
    assert line.text().startswith("Verify: ") and "modules agree" in line.text() and "nothing changed" in line.text()
    notes = window.session.suggestions.notes
    assert any(n.startswith("verify:") for n in notes)
    assert len(window.session.mapping) == 0, "verify changes suggestions, never the mapping"
    head = next(s for s in window.session.suggestions.items if s.target == "fc.weight")
    assert not head.accepted  # a new class count stays a candidate, verified or not


def test_unchecked_or_unrunnable_sides_suggest_without_verify(open_window, qtbot, tmp_path):
    window = open_window([SOURCE, TARGET, "--strategy", "none"])
    window.suggest.strategy.setCurrentText("auto")
    window.suggest.verify_box.setChecked(False)
    _suggest(window, qtbot)
    assert not window.suggest.verify_line.isVisibleTo(window.suggest)
    assert not any(n.startswith("verify:") for n in window.session.suggestions.notes)

    path = tmp_path / "resnet18.pt"
    import torchvision

    torch.save(torchvision.models.resnet18().state_dict(), path)
    other = open_window([str(path), TARGET, "--strategy", "none"])
    assert not other.suggester.verifies("auto", other.session.source.side, other.session.target.side)
    _suggest(other, qtbot)
    assert not other.suggest.verify_line.isVisibleTo(other.suggest)


def test_cancel_during_verify_keeps_the_session_as_it_was(open_window, qtbot):
    window = open_window([SOURCE, TARGET, "--strategy", "none"])
    window.suggest.strategy.setCurrentText("auto")
    texts = []
    window.suggest.request_run()
    job = window.suggester.job
    assert job is not None
    job.progressed.connect(lambda _d, _t, text: texts.append(text))

    def cancel_at_verify(_d, _t, text):
        if text.startswith("Verify:"):
            window.suggest.cancel_button.click()

    job.progressed.connect(cancel_at_verify)
    qtbot.waitUntil(lambda: not window.suggester.busy, timeout=120000)
    assert any(t.startswith("Verify:") for t in texts)
    assert window.session.suggestions is None and len(window.session.mapping) == 0
    assert window.suggest.run_button.isEnabled()
