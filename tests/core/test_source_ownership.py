"""Who closes a Source: the function that opened it, never one that was handed it (issue 15).

Open files are counted in /proc/self/fd, so each test sees the real descriptors, not a flag; a file
left for the garbage collector to close is caught by the ResourceWarning it then gives.
"""

from __future__ import annotations

import gc
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import torchvision

from spp_gui import apply_mapping, load_source, suggest_mapping
from spp_gui.cli import main
from spp_gui.core.apply import apply_to_file
from spp_gui.core.sources import opened_source
from spp_gui.core.strategies import source_side, suggest, target_side
from spp_gui.core.verify import source_model, verify_mapping

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors in /proc/self/fd")

RESNET = "torchvision:resnet18?num_classes=4"
SHAPE = (1, 3, 32, 32)


def open_on(path: Path) -> int:
    """How many of this process's descriptors are open on ``path``."""
    want, count = str(Path(path).resolve()), 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == want
        except OSError:  # the descriptor listdir itself used, gone by now
            pass
    return count


@contextmanager
def closes_its_files() -> Iterator[None]:
    """Fail if a file opened inside is left to the garbage collector (which warns as it closes it)."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", ResourceWarning)
        yield
        gc.collect()
    leaked = [str(w.message) for w in seen if issubclass(w.category, ResourceWarning)]
    assert not leaked, leaked


def test_the_leak_check_sees_a_leak(ckpt):
    with pytest.raises(AssertionError, match="unclosed file"), closes_its_files():
        open(ckpt, "rb").read(1)  # noqa: SIM115 - the leak this check must see


@pytest.fixture
def ckpt(tmp_path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "resnet.pth"
    torch.save(torchvision.models.resnet18(num_classes=4).state_dict(), path)
    return path


def test_opened_source_closes_what_it_opened_and_leaves_a_callers_source_open(ckpt):
    with opened_source(ckpt) as src:
        src.read("conv1.weight")
        assert open_on(ckpt) == 1
    assert open_on(ckpt) == 0
    with load_source(ckpt) as mine:
        mine.read("conv1.weight")
        with opened_source(mine) as same:
            assert same is mine
        assert open_on(ckpt) == 1  # still the caller's
    assert open_on(ckpt) == 0


def test_a_side_owns_the_source_it_opened(ckpt):
    with source_side(ckpt) as side:
        assert side.owns_source
        side.source.read("fc.weight")
        assert open_on(ckpt) == 1
    assert open_on(ckpt) == 0
    with load_source(ckpt) as mine:
        mine.read("fc.weight")
        side = source_side(mine)
        assert not side.owns_source and side.source is mine
        side.close()
        assert open_on(ckpt) == 1  # closing the side left the caller's Source alone
    checkpoint_target = target_side(ckpt)  # a checkpoint as target is held the same way
    assert checkpoint_target.owns_source
    checkpoint_target.source.read("fc.bias")
    checkpoint_target.close()
    assert open_on(ckpt) == 0


def test_suggest_and_suggest_mapping_close_their_sides_not_the_callers(ckpt):
    with closes_its_files():
        mapping = suggest_mapping(ckpt, RESNET)
    assert len(mapping) == 122 and mapping.source_sha256
    assert open_on(ckpt) == 0
    with source_side(ckpt) as side:
        side.source.read("conv1.weight")
        result = suggest(side, RESNET, "exact")
        assert len(result.accepted) == 122
        assert open_on(ckpt) == 1  # the caller's side is still open after suggest
        assert suggest_mapping(side, RESNET).source_sha256 == mapping.source_sha256
        assert open_on(ckpt) == 1
    assert open_on(ckpt) == 0


def test_verify_and_source_model_close_a_checkpoint_they_opened(ckpt):
    mapping = suggest_mapping(ckpt, RESNET)
    with closes_its_files():
        report = verify_mapping(mapping, source_model_spec=RESNET, input_shape=SHAPE)  # reads every tensor
    assert report.ok
    assert open_on(ckpt) == 0
    with closes_its_files():
        model = source_model(str(ckpt), RESNET)
    assert torch.equal(model.state_dict()["fc.bias"], torch.load(ckpt, weights_only=True)["fc.bias"])
    assert open_on(ckpt) == 0
    with load_source(ckpt) as mine:
        assert verify_mapping(mapping, source=mine, source_model_spec=RESNET, input_shape=SHAPE).ok
        assert open_on(ckpt) == 1  # the caller's, still open for its next read
    assert open_on(ckpt) == 0


def test_apply_closes_a_checkpoint_it_opened_and_leaves_a_callers_open(ckpt, tmp_path):
    mapping = suggest_mapping(ckpt, RESNET)
    model = torchvision.models.resnet18(num_classes=4)
    with closes_its_files():
        assert apply_mapping(model, ckpt, mapping).share == 1.0  # reads every tensor
        assert apply_to_file(mapping, tmp_path / "out.safetensors").share == 1.0
    assert open_on(ckpt) == 0
    with load_source(ckpt) as mine:
        apply_mapping(model, mine, mapping)
        assert open_on(ckpt) == 1  # still the caller's
        apply_to_file(mapping, tmp_path / "out.pth", source=mine)  # (the file copy lets go of its descriptor)
        assert torch.equal(mine.read("fc.bias"), model.state_dict()["fc.bias"])  # and the Source still reads
    assert open_on(ckpt) == 0


def test_cli_commands_leave_no_file_open(ckpt, tmp_path, capsys):
    out = tmp_path / "m.json"
    with closes_its_files():
        assert main(["inspect", str(ckpt), "-q"]) == 0
        assert main(["map", str(ckpt), RESNET, "-o", str(out), "-q", "--strategy", "auto", "--verify",
                     "--source-model", RESNET, "--input-shape", "1,3,32,32"]) == 0  # verify reads the checkpoint
        assert main(["verify", str(out), "--input-shape", "1,3,32,32", "--source-model", RESNET, "-q"]) == 0
        assert main(["export", str(out)]) == 0
    assert "122 of 122 target tensors mapped" in capsys.readouterr().out
    assert open_on(ckpt) == 0
