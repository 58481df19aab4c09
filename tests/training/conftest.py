"""Tiny drawn datasets and configs: a real run of the real engine in about a second."""

from __future__ import annotations

import pytest

from spp_gui.training.config import RunConfig
from spp_gui.training.demo_data import write_split

TINY_SPEC = "spp_gui:alexnet_spp?num_classes=3&width=0.0625&dropout=0.0"
CLASSES = ("circle", "square", "star")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """train/ and val/ with three shape classes, 32x32 pixels."""
    root = tmp_path_factory.mktemp("tiny_data")
    write_split(root / "train", CLASSES, 8, 32, seed=0, cluttered=False)
    write_split(root / "val", CLASSES, 4, 32, seed=1, cluttered=False)
    return root


@pytest.fixture
def make_config(tiny_data, tmp_path):
    def make(**overrides) -> RunConfig:
        cfg = RunConfig()
        cfg.model.spec = TINY_SPEC
        cfg.data.train, cfg.data.val = str(tiny_data / "train"), str(tiny_data / "val")
        cfg.data.image_size = 32
        cfg.run.epochs, cfg.run.batch_size, cfg.run.log_every = 2, 8, 1
        cfg.run.out, cfg.run.name = str(tmp_path / "runs"), "tiny"
        for key, value in overrides.items():
            section, _, field = key.partition("__")
            setattr(getattr(cfg, section), field, value)
        return cfg

    return make
