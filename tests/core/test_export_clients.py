"""Exports loaded by the real clients: transformers 5.x (.venv), transformers 4.x (beside it, in a
subprocess) and MMEngine, every tensor compared with what ``apply_mapping`` writes for the mapping."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spp_gui.core.apply import apply_mapping
from spp_gui.core.export import TESTED_WITH, export_mapping
from spp_gui.core.mapping import Mapping

transformers = pytest.importorskip("transformers")
from safetensors.torch import save_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TF4 = ROOT / ".venv" / "transformers4"

RESNET = {"embedding_size": 8, "hidden_sizes": [8, 16], "depths": [2, 1], "num_labels": 3}
GPT2 = {"n_embd": 8, "n_head": 2, "n_positions": 16, "vocab_size": 32}


def _model(cls_name: str, config: dict):
    cls = getattr(transformers, cls_name)
    torch.manual_seed(0)
    return cls(cls.config_class(**config))


def _gpt2_shift():
    """A 3-layer GPT-2's blocks into a 4-layer one, a layer inserted at the front: h.N -> h.N+1."""
    small = _model("GPT2Model", {**GPT2, "n_layer": 3}).state_dict()
    big = _model("GPT2Model", {**GPT2, "n_layer": 4})
    pairs = {}
    for k in small:
        parts = k.split(".")
        pairs[".".join(["h", str(int(parts[1]) + 1), *parts[2:]]) if parts[0] == "h" else k] = k
    return "GPT2Model", {**GPT2, "n_layer": 4}, small, big, pairs


def _resnet_renamed():
    """A ResNet saved under other names (a backbone with stage and block indices, another head):
    a changed prefix, three index groups in one name, and unused keys named like target keys."""
    model = _model("ResNetForImageClassification", RESNET)
    target = model.state_dict()
    source, pairs = {}, {}
    for k, v in target.items():
        name = (k.replace("resnet.embedder.embedder.", "net.stem.")
                 .replace("resnet.encoder.stages.", "net.stage.")
                 .replace(".layers.", ".block.").replace(".layer.", ".conv.")
                 .replace("classifier.1.", "head.fc."))
        source[name] = torch.randn_like(v) if v.is_floating_point() else v.clone()
        pairs[k] = name
    # unused source keys that carry target names: they must not land there
    source["classifier.1.weight"] = torch.randn_like(target["classifier.1.weight"])
    source["resnet.embedder.embedder.convolution.weight"] = torch.randn_like(
        target["resnet.embedder.embedder.convolution.weight"])
    return "ResNetForImageClassification", RESNET, source, model, pairs


def _resnet_from_base():
    """A source saved from the base model (no ``resnet.`` prefix) into the task model, head renamed."""
    model = _model("ResNetForImageClassification", RESNET)
    target = model.state_dict()
    source, pairs = {}, {}
    for k, v in target.items():
        name = k.removeprefix("resnet.") if k.startswith("resnet.") else k.replace("classifier.1.", "fc.")
        source[name] = torch.randn_like(v) if v.is_floating_point() else v.clone()
        pairs[k] = name
    return "ResNetForImageClassification", RESNET, source, model, pairs


def _resnet_task_into_base():
    """The reverse: a task model's checkpoint (``resnet.`` keys and a head) into the base model."""
    model = _model("ResNetModel", RESNET)
    task = _model("ResNetForImageClassification", RESNET).state_dict()
    source = {k: torch.randn_like(v) if v.is_floating_point() else v.clone() for k, v in task.items()}
    pairs = {k: "resnet." + k for k in model.state_dict()}
    return "ResNetModel", RESNET, source, model, pairs


CASES = {"gpt2_layer_inserted": _gpt2_shift, "resnet_renamed_multi_index": _resnet_renamed,
         "resnet_from_base_model": _resnet_from_base, "resnet_task_into_base": _resnet_task_into_base}


def _prepare(name: str, tmp_path: Path):
    cls_name, config, source, model, pairs = CASES[name]()
    mapping = Mapping.from_pairs(pairs)
    target_keys = list(model.state_dict())
    result = export_mapping(mapping, "hf-key-mapping", list(source), target_keys,
                            base_model_prefix=model.base_model_prefix)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    cls = getattr(transformers, cls_name)
    config_obj = cls.config_class(**config)
    config_obj.architectures = [cls_name]
    config_obj.save_pretrained(folder)
    save_file({k: v.contiguous() for k, v in source.items()}, str(folder / "model.safetensors"),
              metadata={"format": "pt"})
    want = {k: v.clone() for k, v in model.state_dict().items()}
    apply_mapping(want, source, mapping)  # what spp_gui writes for the same mapping
    return cls_name, folder, result, want, mapping


def _snippet_rules(text: str, major: int) -> dict[str, str]:
    import ast

    (statement,) = ast.parse(text).body
    value = statement.value
    if isinstance(value, ast.Subscript):
        return ast.literal_eval(value.value)[major]
    return ast.literal_eval(value)


def _loaded_as_expected(state: dict, missing: set[str], want: dict, mapping: Mapping, lost: set[str]) -> None:
    for key, tensor in want.items():
        if key in lost:
            continue  # reported in the snippet as not loaded
        if key in mapping.entries:
            assert torch.equal(state[key], tensor), key
        else:
            assert key in missing, key  # nothing from the source landed there


def _lost(result, version: str) -> set[str]:
    return {line.split(" <- ")[0] for line in result.not_loaded if version in line}


@pytest.mark.parametrize("name", list(CASES))
def test_transformers5_loads_the_export(name, tmp_path):
    assert transformers.__version__ == TESTED_WITH["transformers5"]
    cls_name, folder, result, want, mapping = _prepare(name, tmp_path)
    assert f"loaded with {TESTED_WITH['transformers5']}" in result.text
    key_mapping = _snippet_rules(result.text, 5)
    namespace: dict = {}
    exec(compile(result.text, "<export>", "exec"), namespace)  # noqa: S102 - the snippet as a user runs it
    assert namespace["key_mapping"] == key_mapping
    model, info = getattr(transformers, cls_name).from_pretrained(folder, key_mapping=key_mapping,
                                                                   output_loading_info=True)
    lost = _lost(result, ">= 5.0")
    if name == "resnet_renamed_multi_index":
        # 5.x loads a checkpoint key that is a model key under its own name whatever the rules say, the
        # first in its key order winning: 'classifier.1.weight' comes before 'head.fc.weight'
        assert lost == {"classifier.1.weight", "(unused)"}
        lost.add("classifier.1.weight")
    else:
        assert not lost
    _loaded_as_expected(model.state_dict(), set(info["missing_keys"]), want, mapping, lost)


TF4_SCRIPT = r"""
import json, sys, torch, transformers
folder, cls_name, rules = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
model, info = getattr(transformers, cls_name).from_pretrained(folder, key_mapping=rules, output_loading_info=True)
torch.save({"version": transformers.__version__, "state": model.state_dict(),
            "missing": sorted(info["missing_keys"])}, sys.argv[4])
"""


@pytest.mark.skipif(not TF4.is_dir(), reason=f"{TF4} absent: `make .venv/transformers4` installs transformers 4.x there")
@pytest.mark.parametrize("name", list(CASES))
def test_transformers4_loads_the_export(name, tmp_path):
    cls_name, folder, result, want, mapping = _prepare(name, tmp_path)
    assert f"loaded with {TESTED_WITH['transformers4']}" in result.text
    key_mapping = _snippet_rules(result.text, 4)
    out = tmp_path / "loaded.pt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TF4), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", TF4_SCRIPT, str(folder), cls_name, json.dumps(key_mapping), str(out)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = torch.load(out, weights_only=True)
    assert loaded["version"] == TESTED_WITH["transformers4"]
    lost = _lost(result, "4.x")
    if name == "resnet_from_base_model":  # 4.x adds the prefix to every key: the head cannot be loaded
        assert lost == {"classifier.1.weight", "classifier.1.bias"}
    else:
        assert not lost
    _loaded_as_expected(loaded["state"], set(loaded["missing"]), want, mapping, lost)


def test_mmengine_loads_the_export(tmp_path):
    mmengine = pytest.importorskip("mmengine")
    from mmengine.runner import load_checkpoint

    assert mmengine.__version__ == TESTED_WITH["mmengine"]
    for name in CASES:
        _, _, source, model, pairs = CASES[name]()
        mapping = Mapping.from_pairs(pairs)
        result = export_mapping(mapping, "mmengine-revise-keys", list(source), list(model.state_dict()))
        assert f"mmengine {TESTED_WITH['mmengine']}" in result.text
        namespace: dict = {}
        exec(compile(result.text, "<export>", "exec"), namespace)  # noqa: S102
        path = tmp_path / f"{name}.pth"
        torch.save(source, path)
        want = {k: v.clone() for k, v in model.state_dict().items()}
        apply_mapping(want, source, mapping)
        with torch.no_grad():
            for p in model.state_dict().values():
                p.fill_(float("nan")) if p.is_floating_point() else p.fill_(-7)
        load_checkpoint(model, str(path), map_location="cpu", revise_keys=namespace["revise_keys"])
        state = model.state_dict()
        for key, tensor in want.items():
            if key in mapping.entries:
                assert torch.equal(state[key], tensor), (name, key)
            else:  # untouched by the load: still the fill
                assert (state[key].isnan().all() if state[key].is_floating_point() else (state[key] == -7).all()), key
