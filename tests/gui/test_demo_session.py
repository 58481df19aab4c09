"""The default session: the seed article's AlexNet -> AlexNet_SPP(20) case, ready offline."""

from __future__ import annotations

from spp_gui.gui.app import DEFAULT_TARGET, default_source

SEED_KEYS = {
    *(f"features.{i}.{p}" for i in (0, 3, 6, 8, 10) for p in ("weight", "bias")),
    "classifier.1.bias", "classifier.4.weight", "classifier.4.bias",
}


def test_default_source_is_random_alexnet_without_cache():
    assert default_source() == "torchvision:alexnet"


def test_demo_session_maps_the_seeds_13_keys_by_order(open_window):
    window = open_window(["--strategy", "order"])
    assert window.doc.source.spec == "torchvision:alexnet"
    assert window.doc.target.spec == DEFAULT_TARGET
    assert set(window.doc.mapping.pairs()) == SEED_KEYS
    assert "random init" in window.source_panel.spec.text()
    assert "13 of 16 target tensors mapped" in window.summary.text()
    assert not window.modified
    assert window.suggest.table_model.rowCount() >= 13


def test_demo_session_with_auto_maps_more(open_window):
    window = open_window([])
    assert window.suggest.strategy.currentText() == "auto"
    assert set(window.doc.mapping.pairs()) >= SEED_KEYS
    adapted = len(window.doc.mapping) + sum(1 for s in window.suggest.table_model.items if not s.accepted)
    assert adapted > 13
