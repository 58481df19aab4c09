"""timm and HF transformers models from a spec: random init only, never a download.

    timm:vit_base_patch16_224?num_classes=10                 timm.create_model(pretrained=False, ...)
    hf:ViTForImageClassification?hidden_size=192             the class's config_class(**options)
    hf:path/to/folder                                        config.json: its architecture, from that config

Both libraries are the optional ``zoo`` extra; a spec that needs one that is missing says how to
install it. A folder's config.json is read as data (bounded, plain JSON): no ``auto_map`` code, no
``trust_remote_code``, the class must be one transformers itself defines.
"""

from __future__ import annotations

import difflib
import importlib
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import SpecError

INSTALL_HINT = "pip install 'spp-gui[zoo]'"
#: a config.json bigger than this is not a config
MAX_CONFIG_BYTES = 1 << 20
#: options that would make timm fetch or read weights: sources of weights are checkpoints, not specs
TIMM_REFUSED = ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path", "cache_dir")


def _library(name: str, spec_text: str) -> Any:
    if name == "transformers":  # spp_gui never fetches from a hub; building from a config needs nothing
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        raise SpecError(f"spec {spec_text!r} needs {name}, which is not installed: {INSTALL_HINT}") from None


def _closest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def timm_model_names(spec_text: str = "timm:") -> list[str]:
    return list(_library("timm", spec_text).list_models())


def timm_constructor(name: str, spec_text: str) -> Callable[..., Any]:
    timm = _library("timm", spec_text)
    if not timm.is_model(name):
        raise SpecError(f"unknown timm model {name!r}{_closest(name, timm.list_models())}")

    def build(**kwargs: Any) -> Any:
        refused = [k for k in kwargs if k in TIMM_REFUSED]
        if refused:
            raise SpecError(f"spec {spec_text!r}: {refused[0]} is not an option here; a spec builds a model with "
                            "random init (load pretrained weights as a source: a checkpoint file)")
        return timm.create_model(name, pretrained=False, **kwargs)

    return build


def _transformers_model_class(name: str, spec_text: str) -> type[Any]:  # transformers is imported on demand
    transformers = _library("transformers", spec_text)
    cls = getattr(transformers, name, None) if name.isidentifier() else None
    if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
        models = [n for n in dir(transformers) if n[:1].isupper() and (n.endswith("Model") or "For" in n)
                  and not n.endswith(("Config", "Tokenizer", "TokenizerFast", "Processor"))]
        raise SpecError(f"transformers has no model class {name!r}{_closest(name, models)}")
    if getattr(cls, "config_class", None) is None:
        raise SpecError(f"transformers' {name} names no config_class; give a folder with config.json (hf:path)")
    return cls


def hf_class_constructor(name: str, spec_text: str) -> Callable[..., Any]:
    """``hf:ClassName?option=value``: the class's own config built from the options."""
    cls = _transformers_model_class(name, spec_text)

    def build(**kwargs: Any) -> Any:
        config = cls.config_class(**kwargs)
        config.architectures = [name]  # what model.save_pretrained writes: the folder spec reads it back
        return cls(config)

    return build


def read_config_json(folder: Path, spec_text: str) -> dict[str, Any]:
    """A folder's config.json as plain data: a regular file, at most 1 MiB, a JSON object."""
    path = folder / "config.json"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        what = "folder" if folder.is_dir() else "path"
        raise SpecError(f"spec {spec_text!r}: no config.json in {what} {folder}") from None
    except OSError as exc:
        raise SpecError(f"spec {spec_text!r}: cannot read {path} ({exc.strerror})") from exc
    if not stat.S_ISREG(st.st_mode):
        raise SpecError(f"spec {spec_text!r}: {path} is not a regular file")
    if st.st_size > MAX_CONFIG_BYTES:
        raise SpecError(f"spec {spec_text!r}: {path} is {st.st_size:,} bytes; a config is at most "
                        f"{MAX_CONFIG_BYTES:,}")
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read(MAX_CONFIG_BYTES + 1))
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise SpecError(f"spec {spec_text!r}: {path} is not valid JSON ({type(exc).__name__})") from None
    except OSError as exc:
        raise SpecError(f"spec {spec_text!r}: cannot read {path} ({exc.strerror})") from exc
    if not isinstance(data, dict):
        raise SpecError(f"spec {spec_text!r}: {path} holds {type(data).__name__}, not a JSON object")
    return data


def hf_folder_constructor(folder: str, spec_text: str) -> Callable[..., Any]:
    """``hf:path/to/folder``: the first of config.json's ``architectures``, built from that config.

    Options after ``?`` override config fields (``hf:folder?num_hidden_layers=2``).
    """
    data = read_config_json(Path(folder).expanduser(), spec_text)
    archs = data.get("architectures")
    if not (isinstance(archs, list) and archs and all(isinstance(a, str) for a in archs)):
        raise SpecError(f"spec {spec_text!r}: config.json names no architectures (a list of class names such as "
                        "[\"BertModel\"])")
    model_type = data.get("model_type")
    if not isinstance(model_type, str):
        raise SpecError(f"spec {spec_text!r}: config.json has no model_type")
    transformers = _library("transformers", spec_text)
    mapping = transformers.CONFIG_MAPPING
    if model_type not in mapping:
        raise SpecError(f"spec {spec_text!r}: transformers knows no model_type {model_type!r} (a model with its "
                        "own code, which spp_gui does not run)" + _closest(model_type, list(mapping.keys())))
    cls = _transformers_model_class(archs[0], spec_text)
    config_cls = mapping[model_type]
    fields = {k: v for k, v in data.items() if k not in ("auto_map", "architectures", "model_type",
                                                         "transformers_version")}

    def build(**kwargs: Any) -> Any:
        config = config_cls.from_dict({**fields, **kwargs})
        config.architectures = list(archs)
        return cls(config)

    return build
