"""Files that are not torch.save checkpoints: read when that is safe, else named for what they are, with the fix."""

from __future__ import annotations

import importlib.util
import warnings
import zipfile

import numpy as np
import pytest
import torch
import torch.distributed.checkpoint as dcp

from spp_gui import load_source
from spp_gui.core.errors import SourceError, UnsafePickleError
from spp_gui.core.sources import DCPSource, NpzSource


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 6 * 6, 5))


def test_torchscript_is_named_and_read_only_when_trusted(tmp_path):
    model = _model().eval()
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    with zipfile.ZipFile(path) as zf:
        assert any(n.endswith("constants.pkl") for n in zf.namelist())  # the real TorchScript layout
    with pytest.raises(UnsafePickleError, match=r"TorchScript module \(torch.jit.save\)") as info:
        load_source(path)
    text = str(info.value)
    assert str(path) in text and "torch.jit.load(f, map_location='cpu').state_dict()" in text
    assert "corrupt" not in text and "--trust-pickle" in text
    with load_source(path, trust_pickle=True) as src:
        assert set(src.tensors) == set(model.state_dict())
        for key, value in model.state_dict().items():
            assert torch.equal(src.read(key), value)


def _dcp_save(state: dict, folder) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no process group": a single-process save, as intended here
        dcp.save(state, checkpoint_id=str(folder))


def test_dcp_folder_is_listed_from_its_metadata_and_read_lazily(tmp_path):
    model = _model()
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
    folder = tmp_path / "step_100"
    _dcp_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 100}, folder)
    assert (folder / ".metadata").is_file() and (folder / "__0_0.distcp").is_file()
    with load_source(folder) as src:
        assert isinstance(src, DCPSource) and src.container == "model"
        state = model.state_dict()
        assert list(src.tensors) == list(state)  # the optimizer's moments are not source tensors
        for key, value in state.items():
            assert src.tensors[key].shape == tuple(value.shape)
            assert torch.equal(src.read(key), value), key
        assert len(src.sha256()) == 64 and [p.name for p, _ in src.files()] == [".metadata", "__0_0.distcp"]


def test_dcp_metadata_naming_other_globals_is_refused_unrun(tmp_path):
    folder = tmp_path / "dcp"
    _dcp_save({"w": torch.ones(3)}, folder)
    marker = tmp_path / "ran"
    import pickle

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (folder / ".metadata").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(SourceError, match=r"names (io|builtins).open.*dcp_to_torch_save") as info:
        load_source(folder)
    assert not marker.exists() and str(folder) in str(info.value)


def test_npz_is_a_source_with_no_pickle(tmp_path):
    arrays = {"conv.weight": np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32),
              "fc.bias": np.arange(5, dtype=">f8"), "steps": np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3))}
    for save in (np.savez, np.savez_compressed):
        path = tmp_path / f"{save.__name__}.npz"
        save(path, **arrays)
        with load_source(path) as src:
            assert isinstance(src, NpzSource) and list(src.tensors) == list(arrays)
            assert src.tensors["fc.bias"].dtype == "float64" and src.tensors["steps"].shape == (2, 3)
            for key, value in arrays.items():
                assert np.array_equal(src.read(key).numpy(), value), key
    objects = tmp_path / "objects.npz"
    np.savez(objects, names=np.array(["a", None], dtype=object))
    with pytest.raises(SourceError, match="object values, not numbers"):
        load_source(objects)


@pytest.mark.skipif(importlib.util.find_spec("onnx") is not None, reason="onnx installed: see the export test")
def test_onnx_signature_is_named(tmp_path):
    # onnx is not installed here: a ModelProto's first bytes (ir_version 8, producer_name "pytorch")
    for name in ("model.onnx", "model.bin"):
        path = tmp_path / name
        path.write_bytes(b"\x08\x08\x12\x07pytorch\x1a\x052.4.0")
        with pytest.raises(SourceError, match="an ONNX model, not a PyTorch checkpoint") as info:
            load_source(path)
        assert "graph.initializer" in str(info.value) and "corrupt" not in str(info.value)


@pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="needs onnx for torch.onnx.export")
def test_onnx_export_is_named(tmp_path):
    path = tmp_path / "model.onnx"
    torch.onnx.export(_model().eval(), (torch.randn(1, 3, 8, 8),), str(path), dynamo=False)
    with pytest.raises(SourceError, match="an ONNX model"):
        load_source(path)


def test_keras_files_are_named(tmp_path):
    h5 = tmp_path / "model.weights.h5"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(504))  # the HDF5 superblock signature
    keras = tmp_path / "model.keras"
    with zipfile.ZipFile(keras, "w") as zf:
        zf.writestr("metadata.json", '{"keras_version": "3.5.0"}')
        zf.writestr("config.json", '{"class_name": "Sequential"}')
        zf.write(h5, "model.weights.h5")
    for path in (h5, keras, tmp_path / "renamed.pth"):
        if path.name == "renamed.pth":
            path.write_bytes(keras.read_bytes())
        with pytest.raises(SourceError, match="Keras") as info:
            load_source(path)
        assert str(path) in str(info.value) and "w.numpy() for w in model.weights" in str(info.value)
        assert "corrupt" not in str(info.value)


BERT = "hf:BertModel?hidden_size=32&num_hidden_layers=1&num_attention_heads=2&intermediate_size=64&vocab_size=50"


@pytest.mark.parametrize("layout", ["model.safetensors", "sharded", "pytorch_model.bin"])
def test_hf_folder_as_a_source_reads_its_weights(tmp_path, layout):
    from spp_gui.core.specs import build_model

    model = build_model(BERT, device="cpu", seed=1)
    if layout == "pytorch_model.bin":  # what transformers < 5 wrote by default
        model.config.save_pretrained(tmp_path)
        torch.save(model.state_dict(), tmp_path / layout)
    else:
        model.save_pretrained(tmp_path, max_shard_size="20KB" if layout == "sharded" else "5GB")
    assert (tmp_path / ("model.safetensors.index.json" if layout == "sharded" else layout)).is_file()
    with load_source(f"hf:{tmp_path}") as src:
        assert src.kind == {"model.safetensors": "safetensors", "sharded": "sharded", "pytorch_model.bin": "torch"}[layout]
        assert any("Hugging Face folder" in n for n in src.notes)
        state = model.state_dict()
        saved = set(src.tensors)
        assert saved and saved <= set(state)  # save_pretrained may leave out tied or non-persistent tensors
        for key in saved:
            assert torch.equal(src.read(key), state[key]), key
    # options build the architecture (random init), as before: they cannot apply to saved weights
    assert load_source(f"hf:{tmp_path}?num_hidden_layers=2").kind == "model"
