from __future__ import annotations

import pytest

from spp_gui.training.config import ConfigError, RunConfig


def test_defaults_are_the_seeds():
    cfg = RunConfig()
    assert (cfg.optim.optimizer, cfg.optim.lr, cfg.optim.scheduler, cfg.optim.step_size, cfg.optim.gamma) == (
        "adam", 1e-3, "step", 15, 0.1)
    assert (cfg.run.epochs, cfg.run.batch_size, cfg.data.image_size, cfg.data.mean) == (50, 128, 227, [0.5] * 3)


def test_toml_round_trip(tmp_path):
    cfg = RunConfig()
    cfg.model.mapping = 'maps/my "best" mapping.json'
    cfg.optim.optimizer, cfg.optim.loaded_lr, cfg.optim.freeze_loaded = "sgd", 1e-4, True
    cfg.data.std = [0.229, 0.224, 0.225]
    cfg.save(tmp_path / "run.toml")
    again = RunConfig.load(tmp_path / "run.toml")
    assert again == cfg
    assert again.path == str(tmp_path / "run.toml")


def test_partial_file_keeps_defaults_and_resolves_paths(tmp_path):
    (tmp_path / "run.toml").write_text('[data]\ntrain = "voc/train"\n[optim]\nlr = 1\n')
    cfg = RunConfig.load(tmp_path / "run.toml")
    assert cfg.optim.lr == 1.0 and cfg.run.epochs == 50
    assert cfg.resolve(cfg.data.train) == str(tmp_path / "voc" / "train")
    assert cfg.resolve("spp_gui:alexnet_spp") == "spp_gui:alexnet_spp"


@pytest.mark.parametrize(("text", "words"), [
    ("[optim]\noptimizer = \"rmsprop\"\n", ["optim.optimizer", "rmsprop", "adam"]),
    ("[optim]\nlrr = 0.1\n", ["optim.lrr", "known"]),
    ("[training]\nepochs = 3\n", ["[training]"]),
    ("[run]\nepochs = \"ten\"\n", ["run.epochs", "integer"]),
    ("[run]\nbatch_size = 0\n", ["run.batch_size", "from 1 to"]),
    ("[run\n", ["not valid TOML"]),
])
def test_bad_values_name_the_key(tmp_path, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        RunConfig.load(path)
    for word in words:
        assert word in str(info.value)
    assert "bad.toml" in str(info.value)


def test_frozen_config_escapes_control_characters(tmp_path):
    """config.toml must read back exactly, whatever a path or name holds (TOML has escapes for all of it)."""
    import tomllib

    cfg = RunConfig()
    cfg.model.source = 'line1\nline2 "quoted" back\\slash \x1b[31mred\x00nul\ttab\r\x7f\x08\x0c \u2028 \U0001f600'
    cfg.data.train = "C:\\data\\train"
    cfg.save(tmp_path / "config.toml")
    text = (tmp_path / "config.toml").read_text(encoding="utf-8")
    assert "\x1b" not in text and "\x00" not in text and "\x7f" not in text and "\r" not in text
    assert tomllib.loads(text)["model"]["source"] == cfg.model.source
    assert RunConfig.load(tmp_path / "config.toml") == cfg
