"""One spec grammar for CLI, GUI and mapping files.

    torchvision:resnet50?num_classes=20
    torchvision:alexnet:IMAGENET1K_V1          (as a source: torchvision's pretrained weights)
    spp_gui:alexnet_spp?num_classes=20&levels=1,4,9,36&mode=max
    path/to/net.py:Net?width=2                 (the user's own class)
    timm:vit_base_patch16_224?num_classes=10   (the zoo extra: timm, random init)
    hf:ViTForImageClassification?hidden_size=192&num_hidden_layers=2   (transformers: the class's config)
    hf:path/to/folder                          (a folder's config.json: its architecture; hf:./name for a
                                                folder whose name is a bare identifier)

Models are built on the meta device for inspection (no memory, no init cost) and for real
when weights are applied.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import sys
import threading
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import SpecError
from .trust import code_to_run, trust_file

SCHEMES = ("torchvision", "spp_gui", "timm", "hf")
#: a classifier head bigger than this is a typo (and a memory bomb), not a data set
MAX_CLASSES = 1_000_000


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec. ``kind`` is 'torchvision', 'spp_gui', 'timm', 'hf' or 'file'.

    An ``hf`` spec names a transformers class (``name``) or a folder with config.json (``path``).
    """

    kind: str
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None
    path: str | None = None
    text: str = ""

    def __str__(self) -> str:
        return self.text


def parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    if "," in text:
        return tuple(parse_value(part) for part in text.split(",") if part != "")
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def looks_like_model_spec(text: str) -> bool:
    head = text.split("?", 1)[0]
    if head.split(":", 1)[0] in SCHEMES:
        return True
    return ".py:" in head


def parse_spec(text: str) -> ModelSpec:
    """Parse a model spec string; raise SpecError naming the part that is wrong."""
    text = text.strip()
    if not text:
        raise SpecError("empty model spec")
    head, _, query = text.partition("?")
    kwargs: dict[str, Any] = {}
    if query:
        for item in query.split("&"):
            if not item:
                continue
            key, eq, value = item.partition("=")
            if not eq or not key.isidentifier():
                raise SpecError(f"bad option {item!r} in spec {text!r}: expected key=value")
            kwargs[key] = parse_value(value)
    scheme, _, rest = head.partition(":")
    if scheme == "hf":
        if not rest:
            raise SpecError(f"spec {text!r} names no model after 'hf:' (a transformers class or a folder)")
        if rest.isidentifier():
            return ModelSpec("hf", rest, kwargs, None, None, text)
        return ModelSpec("hf", Path(rest).name or rest, kwargs, None, rest, text)
    if scheme in SCHEMES:
        name, _, weights = rest.partition(":")
        if not name:
            raise SpecError(f"spec {text!r} names no model after '{scheme}:'")
        if weights and scheme != "torchvision":
            raise SpecError(f"only torchvision specs take a weights name, got {text!r}")
        return ModelSpec(scheme, name, kwargs, weights or None, None, text)
    if ".py:" in head:
        path, _, cls = head.rpartition(":")
        if not cls.isidentifier():
            raise SpecError(f"spec {text!r}: {cls!r} is not a class name")
        return ModelSpec("file", cls, kwargs, None, path, text)
    raise SpecError(
        f"cannot read model spec {text!r}: expected torchvision:NAME, spp_gui:NAME, timm:NAME, hf:Class, "
        "hf:path/to/folder or path/to/file.py:Class (options after '?', e.g. torchvision:resnet50?num_classes=20)"
    )


def _closest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def torchvision_model_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models())


def builtin_model_names() -> list[str]:
    from ..models import BUILTIN_MODELS

    return sorted(BUILTIN_MODELS)


_IMPORT_LOCK = threading.RLock()


def _load_user_class(spec: ModelSpec) -> type[nn.Module]:
    """Import the user's file, only if they trust it (see :mod:`.trust`), and return the named class."""
    path = Path(spec.path or "").expanduser()
    if not path.is_file():
        raise SpecError(f"model file not found: {path} (from spec {spec.text!r})")
    source, digest = code_to_run(path, spec.text)  # raises UntrustedCodeError unless the user agreed
    module_name = f"spp_gui_user_{path.stem if path.stem.isidentifier() else 'model'}_{digest[:12]}"
    with _IMPORT_LOCK:  # two sides loading at once must not see each other's half-run module
        module = sys.modules.get(module_name)
        if module is None:
            module = types.ModuleType(module_name)
            module.__file__ = str(path.resolve())
            sys.modules[module_name] = module  # during exec, as an import would (dataclasses look it up)
            try:  # the very bytes that were checked are compiled, not the file read again
                exec(compile(source, str(path.resolve()), "exec"), module.__dict__)  # noqa: S102 - trusted by the user
            except BaseException as exc:  # SystemExit too: never cache a half-run module
                sys.modules.pop(module_name, None)
                if isinstance(exc, KeyboardInterrupt):
                    raise
                if not isinstance(exc, Exception):
                    raise SpecError(f"importing {path} stopped: it raised {type(exc).__name__}") from exc
                raise SpecError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    cls = getattr(module, spec.name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        names = [n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, nn.Module)]
        raise SpecError(f"{path} has no nn.Module class {spec.name!r}{_closest(spec.name, names)}")
    return cls


def check_options(spec: ModelSpec) -> None:
    """Refuse options torch would fail on deep inside (``num_classes=-5``) or build nonsense from (``inf``).

    A user's own class (``file.py:Class``) decides what its options mean; only non-finite numbers are refused.
    """
    for key, value in spec.kwargs.items():
        values = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise SpecError(f"spec {spec.text!r}: {key}={value!r} is not a finite number; give a number such as 1.0")
    for option in ("num_classes", "num_labels"):  # num_labels: transformers' name for it
        if spec.kind == "file" or option not in spec.kwargs:
            continue
        n = spec.kwargs[option]
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CLASSES:
            raise SpecError(f"spec {spec.text!r}: {option}={n!r} is not valid; use a whole number from 1 to "
                            f"{MAX_CLASSES:,}, e.g. {option}=20")


def _regnet_widths_on_cpu() -> None:
    """Let torchvision's RegNets build on the meta device.

    Their builders work out the block widths with torch ops (``BlockParams.from_init_params``) and read
    them back with ``.tolist()``; under ``torch.device("meta")`` those tensors have no data, so the build
    failed ("Cannot copy out of meta tensor"). That arithmetic is about the config, not the weights, and
    ends in Python numbers, so it runs on the CPU whatever device the model is built on (an inner
    ``torch.device`` wins over the outer one); the layers themselves are still made on meta, and a CPU
    build is unchanged. A thin wrapper on the class method, installed once.
    """
    from torchvision.models import regnet

    with _IMPORT_LOCK:
        current = regnet.BlockParams.from_init_params
        if getattr(current, "_spp_gui_on_cpu", False):
            return
        original = current.__func__

        def on_cpu(cls, *args, **kwargs):
            with torch.device("cpu"):
                return original(cls, *args, **kwargs)

        on_cpu._spp_gui_on_cpu = True  # type: ignore[attr-defined]
        regnet.BlockParams.from_init_params = classmethod(on_cpu)


def model_constructor(spec: ModelSpec):
    if spec.kind == "torchvision":
        import torchvision

        names = torchvision_model_names()
        if spec.name not in names:
            raise SpecError(f"unknown torchvision model {spec.name!r}{_closest(spec.name, names)}")
        if spec.name.startswith("regnet_"):
            _regnet_widths_on_cpu()
        return lambda **kw: torchvision.models.get_model(spec.name, weights=None, **kw)
    if spec.kind == "spp_gui":
        from ..models import BUILTIN_MODELS

        if spec.name not in BUILTIN_MODELS:
            raise SpecError(
                f"unknown built-in model {spec.name!r}{_closest(spec.name, list(BUILTIN_MODELS))}; "
                f"built-ins: {', '.join(sorted(BUILTIN_MODELS))}"
            )
        return BUILTIN_MODELS[spec.name]
    if spec.kind == "timm":
        from .zoo import timm_constructor

        return timm_constructor(spec.name, spec.text)
    if spec.kind == "hf":
        from .zoo import hf_class_constructor, hf_folder_constructor

        if spec.path is not None:
            return hf_folder_constructor(spec.path, spec.text)
        return hf_class_constructor(spec.name, spec.text)
    return _load_user_class(spec)


def build_model(spec: str | ModelSpec, device: str | torch.device = "cpu", seed: int | None = None,
                *, trust_code: bool = False) -> nn.Module:
    """Build the model a spec names. ``device='meta'`` costs no memory and no initialisation.

    ``seed`` makes the random initialisation reproducible (mapping apply and the GUI's
    "source from a spec" use it so the same spec always yields the same tensors).
    A ``file.py:Class`` spec runs that file: only when it was trusted (:func:`spp_gui.trust_code`)
    or ``trust_code=True`` says the caller names it themselves.
    """
    if isinstance(spec, str):
        spec = parse_spec(spec)
    check_options(spec)
    if trust_code and spec.kind == "file" and spec.path:
        trust_file(spec.path)
    ctor = model_constructor(spec)
    rng = torch.random.fork_rng() if seed is not None else contextlib.nullcontext()
    with rng, torch.device(device):
        if seed is not None:
            torch.manual_seed(seed)
        try:
            model = ctor(**spec.kwargs)
        except (MemoryError, SpecError):
            raise
        except Exception as exc:  # options the model cannot take: torchvision raises anything from TypeError on
            raise SpecError(f"cannot build {spec.text!r}: {exc}; check the spec's options") from exc
    if not isinstance(model, nn.Module):
        raise SpecError(f"{spec.text!r} built a {type(model).__name__}, not a torch.nn.Module")
    return model.eval()


def module_classes(model: nn.Module) -> dict[str, str]:
    """Dotted module path -> class name, for labelling tree nodes."""
    return {name: type(mod).__name__ for name, mod in model.named_modules()}
