"""Checkpoint containers: which state dict of a training checkpoint is read, chosen how, and kept in the mapping."""

from __future__ import annotations

import argparse
import json

import pytest
import timm
import torch

from spp_gui import load_source
from spp_gui.cli import main
from spp_gui.core.errors import SourceError, UnsafePickleError
from spp_gui.core.mapping import Mapping
from spp_gui.core.sources import split_source_key


def _trained(model: torch.nn.Module) -> tuple[dict, dict, dict]:
    """A model after one optimizer step, its EMA (different values) and the optimizer's state."""
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    opt.step()
    ema = {k: (v * 0.5 if v.is_floating_point() else v).clone() for k, v in model.state_dict().items()}
    return {k: v.clone() for k, v in model.state_dict().items()}, ema, opt.state_dict()


@pytest.fixture(scope="module")
def timm_parts():
    torch.manual_seed(0)
    return _trained(timm.create_model("test_resnet", pretrained=False, num_classes=10))


@pytest.fixture
def timm_ckpt(tmp_path, timm_parts):
    """What timm's train.py saves: epoch, arch, state_dict, state_dict_ema, optimizer, args (a Namespace)."""
    state, ema, optim = timm_parts
    path = tmp_path / "checkpoint-3.pth.tar"
    torch.save({"epoch": 3, "arch": "test_resnet", "state_dict": state, "state_dict_ema": ema,
                "optimizer": optim, "version": 2,
                "args": argparse.Namespace(model="test_resnet", lr=0.1, epochs=10, model_ema=True)}, path)
    return path


def _same(src, state: dict) -> None:
    assert list(src.tensors) == list(state)
    for key, value in state.items():
        assert torch.equal(src.read(key), value), key


def test_timm_training_checkpoint_reads_the_ema_and_says_so(timm_ckpt, timm_parts):
    state, ema, _ = timm_parts
    with load_source(timm_ckpt) as src:
        _same(src, ema)  # timm's load_checkpoint(use_ema=True) takes the EMA
    assert src.container == "state_dict_ema" and src.containers == ["state_dict_ema", "state_dict"]
    assert any("using state_dict_ema (timm's preference" in n and "also in the file: state_dict" in n
               and "--source-key" in n for n in src.notes)
    assert not any("exp_avg" in k or k.startswith(("optimizer", "args")) for k in src.tensors)
    assert src.spec.endswith("#state_dict_ema")  # what a mapping records
    assert src.container_sizes == {"state_dict_ema": len(ema), "state_dict": len(state)}


def test_the_other_container_by_key_or_spec(timm_ckpt, timm_parts):
    state, _, _ = timm_parts
    with load_source(timm_ckpt, source_key="state_dict") as by_key, load_source(f"{timm_ckpt}#state_dict") as by_spec:
        _same(by_key, state)
        _same(by_spec, state)
    assert by_spec.spec == by_key.spec and split_source_key(by_spec.spec) == (str(timm_ckpt), "state_dict")
    assert load_source(by_spec.spec).container == "state_dict"  # the spec opens the same container again
    # the argument wins over the spec's suffix
    assert load_source(f"{timm_ckpt}#state_dict", source_key="state_dict_ema").container == "state_dict_ema"


def test_an_unknown_key_lists_the_containers(timm_ckpt):
    with pytest.raises(SourceError, match=r"no weight container 'ema'.*'state_dict_ema', 'state_dict'") as info:
        load_source(timm_ckpt, source_key="ema")
    assert str(timm_ckpt) in str(info.value)
    with pytest.raises(SourceError, match="no weight container 'optimizer'"):
        load_source(f"{timm_ckpt}#optimizer")


def test_optimizer_state_is_never_a_source_tensor(tmp_path, timm_parts):
    state, ema, optim = timm_parts
    path = tmp_path / "ema_only.pth"
    torch.save({"model_ema": ema, "optimizer": optim}, path)
    with load_source(path) as src:
        _same(src, ema)
    assert src.containers == ["model_ema"] and src.spec == str(path)  # nothing to choose: the spec is the file
    # a flat state dict saved beside its optimizer and scheduler: the weights alone
    flat = tmp_path / "flat.pth"
    torch.save({**state, "optimizer": optim, "lr_scheduler": {"last_epoch": 3}, "scaler": {"scale": 65536.0}}, flat)
    src = load_source(flat)
    assert list(src.tensors) == list(state)
    assert any("left out training state: optimizer, lr_scheduler, scaler" in n for n in src.notes)
    # an optimizer's state under any name is recognised by its shape
    odd = tmp_path / "odd.pth"
    torch.save({"net": state, "my_opt_state": optim}, odd)
    assert load_source(odd).containers == ["net"]


def test_namespace_is_allowed_only_while_spp_gui_loads(timm_ckpt):
    load_source(timm_ckpt)
    assert argparse.Namespace not in torch.serialization.get_safe_globals()
    with pytest.raises(Exception, match="argparse.Namespace"):
        torch.load(timm_ckpt, weights_only=True)  # the process-wide allowlist is as it was


class Marker:  # a class of the training script, pickled into its checkpoint
    def __init__(self, value: int) -> None:
        self.value = value


def test_a_custom_class_is_named_in_the_refusal(tmp_path):
    path = tmp_path / "custom.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}, "meta": Marker(3)}, path)
    with pytest.raises(UnsafePickleError, match="arbitrary code.*--trust-pickle") as info:
        load_source(path)
    assert f"`{Marker.__module__}.Marker`" in str(info.value) and str(path) in str(info.value)
    assert list(load_source(path, trust_pickle=True).tensors) == ["w"]


def test_single_state_formats_refuse_a_key(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.ones(2)}, tmp_path / "w.safetensors")
    with pytest.raises(SourceError, match="single state dict"):
        load_source(tmp_path / "w.safetensors", source_key="state_dict")
    with pytest.raises(SourceError, match="model spec has no weight containers"):
        load_source("spp_gui:alexnet_spp", source_key="state_dict")


def test_a_file_name_with_a_hash_is_still_a_file(tmp_path, timm_parts):
    path = tmp_path / "run#2.pth"
    torch.save(timm_parts[0], path)
    assert split_source_key(str(path)) == (str(path), None)
    assert list(load_source(path).tensors) == list(timm_parts[0])


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_source_key_on_inspect_map_apply_verify(capsys, tmp_path, timm_ckpt, timm_parts):
    state, ema, _ = timm_parts
    code, out, _ = run(capsys, "inspect", str(timm_ckpt), "--json")
    assert code == 0 and any("using state_dict_ema" in n for n in json.loads(out)["notes"])
    code, out, _ = run(capsys, "inspect", str(timm_ckpt), "--source-key", "state_dict")
    assert code == 0 and "using state_dict (as asked)" in out and "exp_avg" not in out
    code, _, err = run(capsys, "inspect", str(timm_ckpt), "--source-key", "nope")
    assert code != 0 and "'state_dict_ema', 'state_dict'" in err

    target = "timm:test_resnet?num_classes=10"
    mapping = tmp_path / "m.json"
    code, out, _ = run(capsys, "map", str(timm_ckpt), target, "-o", str(mapping), "--source-key", "state_dict")
    assert code == 0 and "0 source tensors unused" in out  # no optimizer tensor is offered as a source
    saved = Mapping.load(mapping)
    assert saved.source_spec.endswith("#state_dict")
    out_file = tmp_path / "out.safetensors"
    code, _, _ = run(capsys, "apply", str(mapping), "-o", str(out_file), "-q")
    assert code == 0
    with load_source(out_file) as written:
        assert torch.equal(written.read("conv1.0.weight"), state["conv1.0.weight"])  # the container the mapping names
    code, _, _ = run(capsys, "apply", str(mapping), "-o", str(out_file), "-q", "--source-key", "state_dict_ema")
    assert code == 0
    with load_source(out_file) as written:
        assert torch.equal(written.read("conv1.0.weight"), ema["conv1.0.weight"])
    code, out, _ = run(capsys, "verify", str(mapping), "--source-model", target, "--input-shape", "1,3,32,32",
                       "--source-key", "state_dict_ema", "-q")
    assert code == 0 and "0 disagree" in out


def test_cli_export_reads_the_container_asked_for(capsys, tmp_path, timm_ckpt):
    target = "timm:test_resnet?num_classes=10"
    mapping = tmp_path / "m.json"
    assert run(capsys, "map", str(timm_ckpt), target, "-o", str(mapping), "-q")[0] == 0
    code, out, _ = run(capsys, "export", str(mapping), "--as", "hf-key-mapping", "--source-key", "state_dict")
    assert code == 0 and "key_mapping" in out
    code, _, err = run(capsys, "export", str(mapping), "--as", "hf-key-mapping", "--source-key", "nope")
    assert code != 0 and "'state_dict_ema', 'state_dict'" in err  # an unknown container is an error, not a note
