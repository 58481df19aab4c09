"""Model pairs with known truth, shared by the auto-strategy tests and benchmarks/auto_eval.py.

Truth is by construction: each target is built around the very module instances of its source
(re-registered under new names, in a new order, with new parts around them), so a target key's
true source is the source key holding the identical tensor object. Real torchvision
architectures are built on the meta device: no weights, no downloads, milliseconds each.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torchvision
from torch import nn

from spp_gui.core.specs import module_classes
from spp_gui.core.strategies import Side
from spp_gui.core.tensors import KeyTable, table_of
from spp_gui.models.spp import AlexNet_SPP

tv = torchvision.models


@dataclass
class Case:
    name: str
    source: Side  # as a checkpoint gives it: no module classes
    target: Side  # a model: with module classes
    truth: dict[str, str]  # target key -> source key


def identity_truth(source: nn.Module, target: nn.Module, source_keys: Callable[[str], str] = str) -> dict[str, str]:
    """Target key -> source key for tensors that are the same object in both models."""
    by_id = {id(t): source_keys(k) for k, t in source.state_dict(keep_vars=True).items()}
    return {k: by_id[id(t)] for k, t in target.state_dict(keep_vars=True).items() if id(t) in by_id}


def case(name: str, source: nn.Module, target: nn.Module, prefix: str = "") -> Case:
    src_table = {prefix + k: v for k, v in table_of(source.state_dict()).items()}
    src_table = {k: type(v)(k, v.shape, v.dtype) for k, v in src_table.items()}
    truth = identity_truth(source, target, lambda k: prefix + k)
    return Case(name, Side(src_table), Side(table_of(target.state_dict()), module_classes(target)), truth)


class Wrapper(nn.Module):
    def __init__(self, parts: dict[str, nn.Module] | None = None, **more: nn.Module) -> None:
        super().__init__()
        for k, v in {**(parts or {}), **more}.items():
            self.add_module(k, v)


def _vgg16_to_bn() -> Case:
    src = tv.vgg16()
    tgt = tv.vgg16_bn()
    convs = iter(m for m in src.features if isinstance(m, nn.Conv2d))
    for i, m in enumerate(tgt.features):
        if isinstance(m, nn.Conv2d):
            tgt.features[i] = next(convs)
    tgt.classifier = src.classifier
    return case("vgg16 -> vgg16_bn", src, tgt)


def _dataparallel() -> Case:
    src = tv.resnet18()
    return case("module. prefix (DataParallel) resnet18", src, src, prefix="module.")


def _nested_head_first() -> Case:
    src = tv.resnet50()
    backbone = tv.resnet50()
    for name, child in src.named_children():
        if name != "fc":
            setattr(backbone, name, child)
    backbone.fc = nn.Identity()
    return case("resnet50 nested as 'backbone.', new head first", src, Wrapper(head=nn.Linear(2048, 10), backbone=backbone))


class _Block(nn.Module):
    """A BasicBlock refactored: other names, convs registered before norms."""

    def __init__(self, b: nn.Module) -> None:
        super().__init__()
        self.conv_a, self.conv_b, self.norm_a, self.norm_b = b.conv1, b.conv2, b.bn1, b.bn2
        if b.downsample is not None:
            self.shortcut = Wrapper(proj=b.downsample[0], norm=b.downsample[1])


def _refactored() -> Case:
    src = tv.resnet18()
    stages = nn.ModuleList(Wrapper(blocks=nn.ModuleList(_Block(b) for b in layer))
                           for layer in (src.layer1, src.layer2, src.layer3, src.layer4))
    tgt = Wrapper(stem=Wrapper(conv=src.conv1, norm=src.bn1), stages=stages, classifier=src.fc)
    return case("resnet18 refactored (stages.N.blocks.M.conv_a, reordered)", src, tgt)


class _BertLayer(nn.Module):
    def __init__(self, d: int = 64) -> None:
        super().__init__()
        self.attention = Wrapper({"self": Wrapper(query=nn.Linear(d, d), key=nn.Linear(d, d), value=nn.Linear(d, d))},
                                 output=Wrapper(dense=nn.Linear(d, d), LayerNorm=nn.LayerNorm(d)))
        self.intermediate = Wrapper(dense=nn.Linear(d, 4 * d))
        self.output = Wrapper(dense=nn.Linear(4 * d, d), LayerNorm=nn.LayerNorm(d))


def _qkv_names() -> Case:
    d = 64
    src = Wrapper(embeddings=Wrapper(word_embeddings=nn.Embedding(100, d), LayerNorm=nn.LayerNorm(d)),
                  encoder=Wrapper(layer=nn.ModuleList(_BertLayer(d) for _ in range(3))))
    layers = nn.ModuleList()
    for b in src.encoder.layer:
        a = b.attention
        # k before q before v: order alone would pair them wrongly; the names must speak
        layers.append(Wrapper(self_attn=Wrapper(k_proj=a.self.key, q_proj=a.self.query, v_proj=a.self.value,
                                                out_proj=a.output.dense),
                              norm1=a.output.LayerNorm, fc1=b.intermediate.dense, fc2=b.output.dense,
                              norm2=b.output.LayerNorm))
    tgt = Wrapper(embed_tokens=src.embeddings.word_embeddings, embed_norm=src.embeddings.LayerNorm, layers=layers)
    return case("BERT names -> q_proj/k_proj/v_proj (k registered first)", src, tgt)


def _new_classes() -> Case:
    src = tv.resnet18()
    tgt = tv.resnet18(num_classes=20)
    for name, child in src.named_children():
        if name != "fc":
            setattr(tgt, name, child)
    return case("resnet18 -> 20 classes", src, tgt)


def _alexnet_spp() -> Case:
    src = tv.alexnet()
    tgt = AlexNet_SPP(num_classes=20)
    tgt.features = src.features
    tgt.classifier[4] = src.classifier[4]
    tgt.classifier[1].bias = src.classifier[1].bias
    return case("alexnet -> AlexNet_SPP(20)", src, tgt)


def _in_channels() -> Case:
    src = tv.resnet18()
    tgt = tv.resnet18()
    for name, child in src.named_children():
        if name != "conv1":
            setattr(tgt, name, child)
    tgt.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    return case("resnet18 -> 1 input channel", src, tgt)


def _vit_head() -> Case:
    src = tv.vit_b_16()
    tgt = tv.vit_b_16(num_classes=10)
    for name, child in src.named_children():
        if name != "heads":
            setattr(tgt, name, child)
    tgt.class_token, tgt.encoder = src.class_token, src.encoder
    return case("vit_b_16 -> 10 classes", src, tgt)


def _convnext_prefix() -> Case:
    src = tv.convnext_tiny()
    return case("convnext_tiny 'model.' prefix", src, src, prefix="model.")


def _densenet_renamed() -> Case:
    src = tv.densenet121()
    tgt = Wrapper(encoder=src.features, head=nn.Linear(1024, 5))
    return case("densenet121 features -> 'encoder.' + new head", src, tgt)


def _truncated_encoder() -> Case:
    src = tv.resnet50()
    tgt = Wrapper(encoder=Wrapper(stem=nn.Sequential(src.conv1, src.bn1), layer1=src.layer1, layer2=src.layer2,
                                  layer3=src.layer3), decoder=nn.Conv2d(1024, 21, 1))
    return case("resnet50 stem..layer3 as 'encoder.' + new 1x1 decoder", src, tgt)


def _vgg_bn_prefix_classes() -> Case:
    src = tv.vgg11()
    tgt = tv.vgg11_bn(num_classes=10)
    convs = iter(m for m in src.features if isinstance(m, nn.Conv2d))
    for i, m in enumerate(tgt.features):
        if isinstance(m, nn.Conv2d):
            tgt.features[i] = next(convs)
    tgt.classifier[0], tgt.classifier[3] = src.classifier[0], src.classifier[3]
    return case("module.vgg11 -> vgg11_bn, 10 classes", src, tgt, prefix="module.")


def _swin_dp_head() -> Case:
    src = tv.swin_t()
    tgt = tv.swin_t(num_classes=7)
    tgt.features, tgt.norm = src.features, src.norm
    return case("module.swin_t -> swin_t, 7 classes", src, tgt, prefix="module.")


def _efficientnet_backbone() -> Case:
    src = tv.efficientnet_b0()
    tgt = Wrapper(head=nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 3)), backbone=Wrapper(body=src.features))
    return case("efficientnet_b0 features as 'backbone.body.', head first", src, tgt)


def _mobilenet_renamed() -> Case:
    src = tv.mobilenet_v2()
    blocks = {f"block{i}": m for i, m in enumerate(src.features)}
    tgt = Wrapper(trunk=Wrapper(blocks), classifier=nn.Linear(1280, 5))
    return case("mobilenet_v2 features.N -> trunk.blockN, new head", src, tgt)


def moe_tables(layers: int, experts: int, d: int = 64, ffn: int = 32, vocab: int = 1000, kv: int = 16
               ) -> tuple[KeyTable, KeyTable, dict[str, str]]:
    """Two naming conventions of one MoE transformer (Mixtral-style and GPT-style), meta tensors.

    Returns (source table, target table, truth). Orders differ too: Mixtral registers the norms
    after the blocks and the experts' matrices as w1, w2, w3; the other as gate, up, down.
    """
    src: dict[str, tuple[int, ...]] = {}
    tgt: dict[str, tuple[int, ...]] = {}
    truth: dict[str, str] = {}
    src["model.embed_tokens.weight"] = (vocab, d)
    tgt["transformer.wte.weight"] = (vocab, d)
    truth["transformer.wte.weight"] = "model.embed_tokens.weight"
    for i in range(layers):
        s, t = f"model.layers.{i}.", f"transformer.h.{i}."
        attn = {"q": (d, d), "k": (kv, d), "v": (kv, d), "o": (d, d)}
        t_attn = {"q": "query", "k": "key", "v": "value", "o": "out"}
        for n, shape in attn.items():
            src[f"{s}self_attn.{n}_proj.weight"] = shape
        src[f"{s}block_sparse_moe.gate.weight"] = (experts, d)
        mats = {"w1": (ffn, d), "w2": (d, ffn), "w3": (ffn, d)}
        t_mats = {"w1": "gate_proj", "w3": "up_proj", "w2": "down_proj"}
        for j in range(experts):
            for n, shape in mats.items():
                src[f"{s}block_sparse_moe.experts.{j}.{n}.weight"] = shape
        src[f"{s}input_layernorm.weight"] = (d,)
        src[f"{s}post_attention_layernorm.weight"] = (d,)
        tgt[f"{t}ln_1.weight"] = (d,)
        truth[f"{t}ln_1.weight"] = f"{s}input_layernorm.weight"
        for n in ("k", "q", "v", "o"):
            tgt[f"{t}attn.{t_attn[n]}.weight"] = attn[n]
            truth[f"{t}attn.{t_attn[n]}.weight"] = f"{s}self_attn.{n}_proj.weight"
        tgt[f"{t}ln_2.weight"] = (d,)
        truth[f"{t}ln_2.weight"] = f"{s}post_attention_layernorm.weight"
        tgt[f"{t}moe.router.weight"] = (experts, d)
        truth[f"{t}moe.router.weight"] = f"{s}block_sparse_moe.gate.weight"
        for j in range(experts):
            for n in ("w1", "w3", "w2"):
                key = f"{t}moe.experts.{j}.{t_mats[n]}.weight"
                tgt[key] = mats[n]
                truth[key] = f"{s}block_sparse_moe.experts.{j}.{n}.weight"
    src["model.norm.weight"] = (d,)
    src["lm_head.weight"] = (vocab, d)
    tgt["transformer.ln_f.weight"] = (d,)
    tgt["lm_head.weight"] = (vocab, d)
    truth["transformer.ln_f.weight"] = "model.norm.weight"
    truth["lm_head.weight"] = "lm_head.weight"
    from spp_gui.core.tensors import TensorInfo

    def table(shapes: dict[str, tuple[int, ...]]) -> KeyTable:
        return {k: TensorInfo(k, v, "bfloat16") for k, v in shapes.items()}

    return table(src), table(tgt), truth


def _moe_small() -> Case:
    s, t, truth = moe_tables(layers=3, experts=8)
    return Case("MoE Mixtral names -> GPT names (3 layers x 8 experts)", Side(s), Side(t), truth)


def with_query_bias(table: KeyTable) -> KeyTable:
    """The target convention with a bias on every query projection: layers no longer match whole."""
    from spp_gui.core.tensors import TensorInfo

    out: KeyTable = {}
    for k, v in table.items():
        out[k] = v
        if k.endswith("attn.query.weight"):
            b = k[: -len("weight")] + "bias"
            out[b] = TensorInfo(b, v.shape[:1], v.dtype)
    return out


def _moe_query_bias() -> Case:
    s, t, truth = moe_tables(layers=3, experts=8)
    return Case("MoE renamed, target queries gain a bias (layers differ)", Side(s), Side(with_query_bias(t)), truth)


def _unrelated(a: str, b: str) -> Case:
    return Case(f"unrelated {a} -> {b}", Side(table_of(getattr(tv, a)().state_dict())),
                Side(table_of(getattr(tv, b)().state_dict())), {})


CASES: list[Callable[[], Case]] = [
    _vgg16_to_bn, _dataparallel, _nested_head_first, _refactored, _qkv_names, _new_classes, _alexnet_spp,
    _in_channels, _vit_head, _convnext_prefix, _densenet_renamed, _moe_small, _truncated_encoder,
    _vgg_bn_prefix_classes, _swin_dp_head, _efficientnet_backbone, _mobilenet_renamed, _moe_query_bias,
    lambda: _unrelated("resnet18", "vgg11"), lambda: _unrelated("resnet18", "mobilenet_v2"),
    lambda: _unrelated("vgg11", "densenet121"), lambda: _unrelated("efficientnet_b0", "resnet50"),
]


def build_cases() -> list[Case]:
    with torch.device("meta"):
        return [make() for make in CASES]


# ---------------------------------------------------------------------------------------------
# scoring, and the baselines auto must beat


def score(pairs: dict[str, str], truth: dict[str, str]) -> tuple[float, float, int]:
    """(precision, recall, wrong pairs) of accepted ``pairs`` against ``truth``."""
    right = sum(1 for t, s in pairs.items() if truth.get(t) == s)
    wrong = len(pairs) - right
    precision = right / len(pairs) if pairs else 1.0
    recall = right / len(truth) if truth else 1.0
    return precision, recall, wrong


def suffix_baseline(source: KeyTable, target: KeyTable) -> dict[str, str]:
    """detectron2's align_and_update_state_dicts: the longest source key the target key ends with.

    As there, a ``module.`` prefix is stripped first, ties are dropped, and shapes must agree.
    """
    strip = {re.sub(r"^module\.", "", k): k for k in source}
    by_last: dict[str, list[str]] = {}
    for k in strip:
        by_last.setdefault(k.rsplit(".", 1)[-1], []).append(k)
    out = {}
    for t in target:
        cands = [k for k in by_last.get(t.rsplit(".", 1)[-1], []) if t == k or t.endswith("." + k)]
        if not cands:
            continue
        best = max(len(k) for k in cands)
        top = [k for k in cands if len(k) == best]
        if len(top) == 1 and source[strip[top[0]]].shape == target[t].shape:
            out[t] = strip[top[0]]
    return out


def zip_shape_baseline(source: KeyTable, target: KeyTable) -> dict[str, str]:
    """Keys zipped by position, kept where shapes agree whatever the names (the seed's zip without its name check)."""
    return {t: s for s, t in zip(source, target, strict=False) if source[s].shape == target[t].shape}


def run_strategy(name: str, c: Case) -> dict[str, str]:
    """Accepted pairs of a registered strategy (or the suffix / zip-by-shape baseline) on a case."""
    if name == "suffix":
        return suffix_baseline(c.source.table, c.target.table)
    if name == "zip_shape":
        return zip_shape_baseline(c.source.table, c.target.table)
    from spp_gui.core.strategies import suggest

    return suggest(c.source, c.target, name).to_mapping().pairs()
