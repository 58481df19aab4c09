"""Cross-library model pairs (torchvision, timm, HF transformers) with truth checked by function.

Each pair builds both models with random init from the libraries' own model lists (small configs),
and writes down a truth mapping by hand: target key <- source key (+ transform) as regex rules. The
truth is not taken on trust: :func:`function_check` maps the source's (randomised) weights into the
target by it, runs both on one input, and the outputs must agree. auto's output is never used to
write a truth. Shared by benchmarks/auto_eval.py and tests/core/test_auto.py.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torchvision
from torch import nn

from spp_gui.core.combine import apply_combine
from spp_gui.core.specs import module_classes
from spp_gui.core.strategies import Side
from spp_gui.core.tensors import table_of
from spp_gui.core.transforms import Transform, apply_transform

#: target regex, source template (a tuple of them: sources joined by the transform), transform (or a
#: callable of the match)
Rule = tuple[str, Any, Any]
TruthEntry = tuple[str | tuple[str, ...], Transform | None]  # (a tuple of sources: a joined, many-to-one entry)


@dataclass
class ZooPair:
    name: str
    source: Callable[[], nn.Module]
    target: Callable[[], nn.Module]
    rules: list[Rule]
    inputs: Callable[[], Any]
    #: model, input -> the output compared; default model(input), logits/last_hidden_state when a dataclass
    run: Callable[[nn.Module, Any], torch.Tensor] | None = None
    #: called on (source, target) after randomising the source, before mapping (e.g. zero token types)
    prepare: Callable[[nn.Module, nn.Module], None] | None = None
    #: why the truth cannot be written as v1 entries (then no function check), or ""
    inexpressible: str = ""
    unrelated: bool = False
    why: str = ""  # what makes the truth right, in a line
    _built: tuple | None = field(default=None, repr=False)

    def build(self) -> tuple[nn.Module, nn.Module]:
        """(source, target), seeded; the source's tensors randomised so every value is distinct."""
        if self._built is None:
            torch.manual_seed(0)
            src = self.source().eval()
            randomise(src)
            torch.manual_seed(1)
            tgt = self.target().eval()
            if self.prepare is not None:
                self.prepare(src, tgt)
            self._built = (src, tgt)
        return self._built

    def sides(self) -> tuple[Side, Side]:
        src, tgt = self.build()  # an HF side carries its spec, as the user would give it
        return (Side(table_of(src.state_dict()), spec=getattr(self.source, "spec", "")),
                Side(table_of(tgt.state_dict()), module_classes(tgt), getattr(self.target, "spec", "")))

    def truth(self) -> dict[str, TruthEntry]:
        src, tgt = self.build()
        return apply_rules(self.rules, list(src.state_dict()), list(tgt.state_dict()))


def randomise(model: nn.Module) -> None:
    """Every float tensor gets fresh values (LayerNorm ones and zero biases would all look alike)."""
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.2)


def apply_rules(rules: list[Rule], source_keys: list[str], target_keys: list[str]) -> dict[str, TruthEntry]:
    """Target key -> (source key, transform) by the first rule whose regex matches the whole target key."""
    have = set(source_keys)
    out: dict[str, TruthEntry] = {}
    compiled = [(re.compile(p), repl, tr) for p, repl, tr in rules]
    for t in target_keys:
        for pattern, repl, tr in compiled:
            m = pattern.fullmatch(t)
            if m is None:
                continue
            if repl is None:  # explicitly without a source (keeps its init)
                break
            s = tuple(m.expand(r) for r in repl) if isinstance(repl, tuple) else m.expand(repl)
            for key in s if isinstance(s, tuple) else (s,):
                if key not in have:
                    raise AssertionError(f"truth rule {pattern.pattern!r} -> {repl!r}: no source key {key!r} for {t!r}")
            out[t] = (s, tr(m) if callable(tr) else tr)
            break
    return out


def made(ss: dict[str, torch.Tensor], entry: TruthEntry, base: torch.Tensor) -> torch.Tensor:
    """The tensor ``entry`` gives a target whose current value is ``base``."""
    s, tr = entry
    if isinstance(s, tuple):
        assert tr is not None  # a joined entry's combining op
        return apply_combine(tr, [ss[k] for k in s], base)
    return apply_transform(tr, ss[s], base)


def mapped_state(src: nn.Module, tgt: nn.Module, entries: dict[str, TruthEntry]) -> dict[str, torch.Tensor]:
    ss, ts = src.state_dict(), tgt.state_dict()
    state = dict(ts)
    for t, entry in entries.items():
        state[t] = made(ss, entry, ts[t]).to(ts[t].dtype)
    return state


def _output(pair: ZooPair, model: nn.Module, x: Any) -> torch.Tensor:
    if pair.run is not None:
        return pair.run(model, x)
    out = model(x)
    for attr in ("logits", "last_hidden_state"):
        if hasattr(out, attr):
            return getattr(out, attr)
    return out


def function_check(pair: ZooPair, entries: dict[str, TruthEntry]) -> tuple[bool, float]:
    """(equal, relative error): the target loaded by ``entries`` against the source, on one input."""
    src, tgt = pair.build()
    state = mapped_state(src, tgt, entries)
    torch.manual_seed(2)
    x = pair.inputs()
    twin = _copy_of(pair, tgt)
    twin.load_state_dict(state)
    with torch.no_grad():
        a, b = _output(pair, src, x), _output(pair, twin, x)
    if a.shape != b.shape:
        return False, math.inf
    err = float((a - b).abs().max() / a.abs().max().clamp_min(1e-12))
    return err < 1e-4, err


def _copy_of(pair: ZooPair, tgt: nn.Module) -> nn.Module:
    torch.manual_seed(1)
    twin = pair.target().eval()
    twin.load_state_dict(tgt.state_dict())
    return twin


def entry_right(src: nn.Module, tgt: nn.Module, key: str, got: TruthEntry, truth: dict[str, TruthEntry]) -> bool:
    """An accepted entry is right when it gives the target exactly the tensor the truth gives it.

    Values, not names: a tied copy (``lm_head`` = ``wte``) is as right as the original, a missing
    transpose is wrong. Integer buffers (``num_batches_tracked``) compare by source key.
    """
    want = truth.get(key)
    if want is None:
        return False
    ss, ts = src.state_dict(), tgt.state_dict()
    keys = got[0] if isinstance(got[0], tuple) else (got[0],)
    if any(k not in ss for k in keys):
        return False
    if not ss[keys[0]].is_floating_point():
        return got[0] == want[0]
    try:
        a = made(ss, got, ts[key])
    except Exception:
        return False
    return a.shape == ts[key].shape and torch.equal(a, made(ss, want, ts[key]))


# ---------------------------------------------------------------------------------------------
# the models (small configs of entries in timm.list_models(), transformers' classes, torchvision's list)

IMG = 32


def _timm(name: str, **kw: Any) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        import timm

        return timm.create_model(name, pretrained=False, **kw)

    return make


def _hf(cls: str, config: str, **kw: Any) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        import transformers

        return getattr(transformers, cls)(getattr(transformers, config)(**kw))

    make.spec = f"hf:{cls}?" + "&".join(f"{k}={v}" for k, v in kw.items())  # type: ignore[attr-defined]
    return make


def tv_vit() -> nn.Module:  # the class behind torchvision's vit_b_16, at toy size
    from torchvision.models.vision_transformer import VisionTransformer

    return VisionTransformer(image_size=IMG, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                             num_classes=10)


timm_vit = _timm("vit_tiny_patch16_224", img_size=IMG, patch_size=8, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2,
                 num_classes=10)
hf_vit = _hf("ViTForImageClassification", "ViTConfig", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
             intermediate_size=64, image_size=IMG, patch_size=8, num_labels=10, layer_norm_eps=1e-6)


def tv_convnext() -> nn.Module:  # torchvision's convnext_tiny class, one block per stage
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    return ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, 64, 1), CNBlockConfig(64, 128, 1),
                     CNBlockConfig(128, None, 1)], num_classes=10)


timm_convnext = _timm("convnext_tiny", depths=(1, 1, 1, 1), dims=(16, 32, 64, 128), num_classes=10)
gpt2 = _hf("GPT2LMHeadModel", "GPT2Config", n_embd=32, n_layer=2, n_head=2, vocab_size=50, n_positions=16,
           activation_function="gelu_new")
# one head: GPTBigCode's c_attn interleaves (q, k, v) per head, which with one head is GPT-2's block order;
# with more heads c_attn needs a transpose and a row permutation together (no single v1 transform)
bigcode = _hf("GPTBigCodeForCausalLM", "GPTBigCodeConfig", n_embd=32, n_layer=2, n_head=1, vocab_size=50,
              n_positions=16, multi_query=False, activation_function="gelu_new")
gpt2_1h = _hf("GPT2LMHeadModel", "GPT2Config", n_embd=32, n_layer=2, n_head=1, vocab_size=50, n_positions=16,
              activation_function="gelu_new")
opt = _hf("OPTForCausalLM", "OPTConfig", hidden_size=32, num_hidden_layers=2, num_attention_heads=2, ffn_dim=128,
          vocab_size=50, max_position_embeddings=16, word_embed_proj_dim=32, activation_function="gelu_new")
bert = _hf("BertModel", "BertConfig", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
           intermediate_size=64, vocab_size=50, max_position_embeddings=16)
distilbert = _hf("DistilBertModel", "DistilBertConfig", dim=32, n_layers=2, n_heads=2, hidden_dim=64, vocab_size=50,
                 max_position_embeddings=16)


def _image() -> torch.Tensor:
    return torch.randn(2, 3, IMG, IMG)


def _image224() -> torch.Tensor:
    return torch.randn(1, 3, 64, 64)


def _tokens() -> torch.Tensor:
    return torch.randint(0, 50, (2, 12))


def _qkv(m: re.Match, group: str = "qkv", dim: int = 0) -> Transform:
    return {"op": "chunk", "dim": dim, "chunks": 3, "index": "qkv".index(m.group(group))}


T = {"op": "transpose", "dims": [1, 0]}
R = {"op": "reshape"}

# tv ViT <-> timm ViT: one encoder block each, nn.MultiheadAttention's packed in_proj is timm's qkv
# (both q, k, v row blocks in that order, heads contiguous inside).
TV_TIMM_VIT: list[Rule] = [
    (r"cls_token", "class_token", None),
    (r"pos_embed", "encoder.pos_embedding", None),
    (r"patch_embed\.proj\.(\w+)", r"conv_proj.\1", None),
    (r"blocks\.(\d+)\.norm1\.(\w+)", r"encoder.layers.encoder_layer_\1.ln_1.\2", None),
    (r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)", r"encoder.layers.encoder_layer_\1.self_attention.in_proj_\2", None),
    (r"blocks\.(\d+)\.attn\.proj\.(\w+)", r"encoder.layers.encoder_layer_\1.self_attention.out_proj.\2", None),
    (r"blocks\.(\d+)\.norm2\.(\w+)", r"encoder.layers.encoder_layer_\1.ln_2.\2", None),
    (r"blocks\.(\d+)\.mlp\.fc1\.(\w+)", r"encoder.layers.encoder_layer_\1.mlp.0.\2", None),
    (r"blocks\.(\d+)\.mlp\.fc2\.(\w+)", r"encoder.layers.encoder_layer_\1.mlp.3.\2", None),
    (r"norm\.(\w+)", r"encoder.ln.\1", None),
    (r"head\.(\w+)", r"heads.head.\1", None),
]
TIMM_TV_VIT: list[Rule] = [
    (r"class_token", "cls_token", None),
    (r"encoder\.pos_embedding", "pos_embed", None),
    (r"conv_proj\.(\w+)", r"patch_embed.proj.\1", None),
    (r"encoder\.layers\.encoder_layer_(\d+)\.ln_1\.(\w+)", r"blocks.\1.norm1.\2", None),
    (r"encoder\.layers\.encoder_layer_(\d+)\.self_attention\.in_proj_(weight|bias)", r"blocks.\1.attn.qkv.\2", None),
    (r"encoder\.layers\.encoder_layer_(\d+)\.self_attention\.out_proj\.(\w+)", r"blocks.\1.attn.proj.\2", None),
    (r"encoder\.layers\.encoder_layer_(\d+)\.ln_2\.(\w+)", r"blocks.\1.norm2.\2", None),
    (r"encoder\.layers\.encoder_layer_(\d+)\.mlp\.0\.(\w+)", r"blocks.\1.mlp.fc1.\2", None),
    (r"encoder\.layers\.encoder_layer_(\d+)\.mlp\.3\.(\w+)", r"blocks.\1.mlp.fc2.\2", None),
    (r"encoder\.ln\.(\w+)", r"norm.\1", None),
    (r"heads\.head\.(\w+)", r"head.\1", None),
]
# timm ViT -> HF ViT: HF keeps q, k, v apart: rows [0,D), [D,2D), [2D,3D) of timm's qkv.
TIMM_HF_VIT: list[Rule] = [
    (r"vit\.embeddings\.cls_token", "cls_token", None),
    (r"vit\.embeddings\.position_embeddings", "pos_embed", None),
    (r"vit\.embeddings\.patch_embeddings\.projection\.(\w+)", r"patch_embed.proj.\1", None),
    (r"vit\.layers\.(\d+)\.attention\.(?P<qkv>[qkv])_proj\.(\w+)", r"blocks.\1.attn.qkv.\3", _qkv),
    (r"vit\.layers\.(\d+)\.attention\.o_proj\.(\w+)", r"blocks.\1.attn.proj.\2", None),
    (r"vit\.layers\.(\d+)\.layernorm_before\.(\w+)", r"blocks.\1.norm1.\2", None),
    (r"vit\.layers\.(\d+)\.layernorm_after\.(\w+)", r"blocks.\1.norm2.\2", None),
    (r"vit\.layers\.(\d+)\.mlp\.(fc\d)\.(\w+)", r"blocks.\1.mlp.\2.\3", None),
    (r"vit\.layernorm\.(\w+)", r"norm.\1", None),
    (r"classifier\.(\w+)", r"head.\1", None),
]
TV_HF_VIT: list[Rule] = [
    (r"vit\.embeddings\.cls_token", "class_token", None),
    (r"vit\.embeddings\.position_embeddings", "encoder.pos_embedding", None),
    (r"vit\.embeddings\.patch_embeddings\.projection\.(\w+)", r"conv_proj.\1", None),
    (r"vit\.layers\.(\d+)\.attention\.(?P<qkv>[qkv])_proj\.(weight|bias)",
     r"encoder.layers.encoder_layer_\1.self_attention.in_proj_\3", _qkv),
    (r"vit\.layers\.(\d+)\.attention\.o_proj\.(\w+)", r"encoder.layers.encoder_layer_\1.self_attention.out_proj.\2",
     None),
    (r"vit\.layers\.(\d+)\.layernorm_before\.(\w+)", r"encoder.layers.encoder_layer_\1.ln_1.\2", None),
    (r"vit\.layers\.(\d+)\.layernorm_after\.(\w+)", r"encoder.layers.encoder_layer_\1.ln_2.\2", None),
    (r"vit\.layers\.(\d+)\.mlp\.fc1\.(\w+)", r"encoder.layers.encoder_layer_\1.mlp.0.\2", None),
    (r"vit\.layers\.(\d+)\.mlp\.fc2\.(\w+)", r"encoder.layers.encoder_layer_\1.mlp.3.\2", None),
    (r"vit\.layernorm\.(\w+)", r"encoder.ln.\1", None),
    (r"classifier\.(\w+)", r"heads.head.\1", None),
]
# HF ViT -> timm ViT: timm's fused qkv is HF's q, k and v joined (many-to-one: mapping format v2).
HF_TIMM_VIT: list[Rule] = [
    (r"blocks\.(\d+)\.attn\.qkv\.(\w+)", tuple(rf"vit.layers.\1.attention.{p}_proj.\2" for p in "qkv"),
     {"op": "concat", "dim": 0}),
    (r"cls_token", "vit.embeddings.cls_token", None),
    (r"pos_embed", "vit.embeddings.position_embeddings", None),
    (r"patch_embed\.proj\.(\w+)", r"vit.embeddings.patch_embeddings.projection.\1", None),
    (r"blocks\.(\d+)\.attn\.proj\.(\w+)", r"vit.layers.\1.attention.o_proj.\2", None),
    (r"blocks\.(\d+)\.norm1\.(\w+)", r"vit.layers.\1.layernorm_before.\2", None),
    (r"blocks\.(\d+)\.norm2\.(\w+)", r"vit.layers.\1.layernorm_after.\2", None),
    (r"blocks\.(\d+)\.mlp\.(fc\d)\.(\w+)", r"vit.layers.\1.mlp.\2.\3", None),
    (r"norm\.(\w+)", r"vit.layernorm.\1", None),
    (r"head\.(\w+)", r"classifier.\1", None),
]
# torchvision ConvNeXt <-> timm ConvNeXt: features.(2i+1) are stage i's blocks, features.(2i) (i >= 1) its
# downsample (norm, conv); layer_scale (C, 1, 1) is timm's gamma (C,): the same elements.
def _convnext_tv_to_timm() -> list[Rule]:
    rules: list[Rule] = [(r"stem\.(\d)\.(\w+)", r"features.0.\1.\2", None)]
    for i in range(4):
        f = 2 * i + 1
        rules += [
            (rf"stages\.{i}\.blocks\.(\d+)\.gamma", rf"features.{f}.\1.layer_scale", R),
            (rf"stages\.{i}\.blocks\.(\d+)\.conv_dw\.(\w+)", rf"features.{f}.\1.block.0.\2", None),
            (rf"stages\.{i}\.blocks\.(\d+)\.norm\.(\w+)", rf"features.{f}.\1.block.2.\2", None),
            (rf"stages\.{i}\.blocks\.(\d+)\.mlp\.fc1\.(\w+)", rf"features.{f}.\1.block.3.\2", None),
            (rf"stages\.{i}\.blocks\.(\d+)\.mlp\.fc2\.(\w+)", rf"features.{f}.\1.block.5.\2", None),
        ]
        if i:
            rules.append((rf"stages\.{i}\.downsample\.(\d)\.(\w+)", rf"features.{2 * i}.\1.\2", None))
    rules += [(r"head\.norm\.(\w+)", r"classifier.0.\1", None), (r"head\.fc\.(\w+)", r"classifier.2.\1", None)]
    return rules


def _convnext_timm_to_tv() -> list[Rule]:
    rules: list[Rule] = [(r"features\.0\.(\d)\.(\w+)", r"stem.\1.\2", None)]
    for i in range(4):
        f = 2 * i + 1
        rules += [
            (rf"features\.{f}\.(\d+)\.layer_scale", rf"stages.{i}.blocks.\1.gamma", R),
            (rf"features\.{f}\.(\d+)\.block\.0\.(\w+)", rf"stages.{i}.blocks.\1.conv_dw.\2", None),
            (rf"features\.{f}\.(\d+)\.block\.2\.(\w+)", rf"stages.{i}.blocks.\1.norm.\2", None),
            (rf"features\.{f}\.(\d+)\.block\.3\.(\w+)", rf"stages.{i}.blocks.\1.mlp.fc1.\2", None),
            (rf"features\.{f}\.(\d+)\.block\.5\.(\w+)", rf"stages.{i}.blocks.\1.mlp.fc2.\2", None),
        ]
        if i:
            rules.append((rf"features\.{2 * i}\.(\d)\.(\w+)", rf"stages.{i}.downsample.\1.\2", None))
    rules += [(r"classifier\.0\.(\w+)", r"head.norm.\1", None), (r"classifier\.2\.(\w+)", r"head.fc.\1", None)]
    return rules


# RegNetY-400MF: torchvision's trunk_output.blockI.blockI-J is timm's sI.b(J+1); proj (the shortcut,
# defined first in torchvision) is timm's downsample (defined last); f.a/f.b/f.se/f.c are conv1/conv2/se/conv3.
_RG = {"a": "conv1", "b": "conv2", "c": "conv3"}


def _regnet_rules(to_timm: bool) -> list[Rule]:
    rules: list[Rule] = []
    for part, sub in (("0", "conv"), ("1", "bn")):
        tv_stem, timm_stem = rf"stem.{part}.\1", rf"stem.{sub}.\1"
        rules.append((rf"stem\.{sub}\.(\w+)", tv_stem, None) if to_timm else (rf"stem\.{part}\.(\w+)", timm_stem, None))
    for i in range(1, 5):
        for j in range(0, 16):
            tv = f"trunk_output.block{i}.block{i}-{j}"
            tm = f"s{i}.b{j + 1}"
            pairs = [("proj.0", "downsample.conv"), ("proj.1", "downsample.bn"), ("f.se.fc1", "se.fc1"),
                     ("f.se.fc2", "se.fc2")]
            pairs += [(f"f.{k}.0", f"{v}.conv") for k, v in _RG.items()]
            pairs += [(f"f.{k}.1", f"{v}.bn") for k, v in _RG.items()]
            for a, b in pairs:
                if to_timm:
                    rules.append((re.escape(f"{tm}.{b}.") + r"(\w+)", f"{tv}.{a}.\\1", None))
                else:
                    rules.append((re.escape(f"{tv}.{a}.") + r"(\w+)", f"{tm}.{b}.\\1", None))
    rules.append((r"head\.fc\.(\w+)", r"fc.\1", None) if to_timm else (r"fc\.(\w+)", r"head.fc.\1", None))
    return rules


def _regnet_timm() -> nn.Module:
    import timm

    return timm.create_model("regnety_004", pretrained=False, num_classes=10)


def _regnet_tv() -> nn.Module:
    return torchvision.models.regnet_y_400mf(num_classes=10)


# GPT-2 (Conv1D: weight (in, out), x @ W) <-> GPTBigCode without multi-query (nn.Linear: (out, in)):
# the same names, every matrix in a block transposed, the square attn.c_proj included.
_CONV1D = r"transformer\.h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight"
GPT2_BIGCODE: list[Rule] = [(_CONV1D, r"\g<0>", T), (r".*", r"\g<0>", None)]

# GPT-2 -> OPT: OPT keeps q/k/v apart as Linear layers: column blocks of GPT-2's Conv1D c_attn, transposed;
# OPT's learned positions sit 2 rows down (OPTLearnedPositionalEmbedding's offset).
def _chunk_t(m: re.Match) -> Transform:
    return {"op": "chunk", "dim": 1, "chunks": 3, "index": "qkv".index(m.group("qkv")), "transpose": True}


_L = r"model\.decoder\.layers\.(\d+)\."
GPT2_OPT: list[Rule] = [
    (r"model\.decoder\.embed_tokens\.weight", "transformer.wte.weight", None),
    (r"model\.decoder\.embed_positions\.weight", "transformer.wpe.weight",
     {"op": "select_rows", "rows": [None, None, *range(16)]}),
    (_L + r"self_attn\.(?P<qkv>[qkv])_proj\.weight", r"transformer.h.\1.attn.c_attn.weight", _chunk_t),
    (_L + r"self_attn\.(?P<qkv>[qkv])_proj\.bias", r"transformer.h.\1.attn.c_attn.bias", _qkv),
    (_L + r"self_attn\.out_proj\.weight", r"transformer.h.\1.attn.c_proj.weight", T),
    (_L + r"self_attn\.out_proj\.bias", r"transformer.h.\1.attn.c_proj.bias", None),
    (_L + r"self_attn_layer_norm\.(\w+)", r"transformer.h.\1.ln_1.\2", None),
    (_L + r"final_layer_norm\.(\w+)", r"transformer.h.\1.ln_2.\2", None),
    (_L + r"fc1\.weight", r"transformer.h.\1.mlp.c_fc.weight", T),
    (_L + r"fc1\.bias", r"transformer.h.\1.mlp.c_fc.bias", None),
    (_L + r"fc2\.weight", r"transformer.h.\1.mlp.c_proj.weight", T),
    (_L + r"fc2\.bias", r"transformer.h.\1.mlp.c_proj.bias", None),
    (r"model\.decoder\.final_layer_norm\.(\w+)", r"transformer.ln_f.\1", None),
    (r"lm_head\.weight", "lm_head.weight", None),
]

# BERT <-> DistilBERT: the same post-norm encoder; DistilBERT has no token types (BERT's are zeroed
# for the check: they add nothing then) and no pooler.
_BERT_DISTIL = [
    ("embeddings.word_embeddings", "embeddings.word_embeddings"),
    ("embeddings.position_embeddings", "embeddings.position_embeddings"),
    ("embeddings.LayerNorm", "embeddings.LayerNorm"),
    ("encoder.layer.{}.attention.self.query", "transformer.layer.{}.attention.q_lin"),
    ("encoder.layer.{}.attention.self.key", "transformer.layer.{}.attention.k_lin"),
    ("encoder.layer.{}.attention.self.value", "transformer.layer.{}.attention.v_lin"),
    ("encoder.layer.{}.attention.output.dense", "transformer.layer.{}.attention.out_lin"),
    ("encoder.layer.{}.attention.output.LayerNorm", "transformer.layer.{}.sa_layer_norm"),
    ("encoder.layer.{}.intermediate.dense", "transformer.layer.{}.ffn.lin1"),
    ("encoder.layer.{}.output.dense", "transformer.layer.{}.ffn.lin2"),
    ("encoder.layer.{}.output.LayerNorm", "transformer.layer.{}.output_layer_norm"),
]


def _bert_rules(to_distil: bool) -> list[Rule]:
    rules: list[Rule] = []
    for b, d in _BERT_DISTIL:
        t, s = (d, b) if to_distil else (b, d)
        if "{}" in t:
            (t0, t1), (s0, s1) = t.split("{}"), s.split("{}")
            rules.append((re.escape(t0) + r"(\d+)" + re.escape(t1) + r"\.(\w+)", s0 + r"\1" + s1 + r".\2", None))
        else:
            rules.append((re.escape(t) + r"\.(\w+)", s + r".\1", None))
    return rules


def _zero_token_types(src: nn.Module, tgt: nn.Module) -> None:
    for m in (src, tgt):
        emb = getattr(getattr(m, "embeddings", None), "token_type_embeddings", None)
        if emb is not None:
            with torch.no_grad():
                emb.weight.zero_()


def _stem(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return m.maxpool(m.act1(m.bn1(m.conv1(x))) if hasattr(m, "act1") else m.relu(m.bn1(m.conv1(x))))


RESNET_STEM: list[Rule] = [(r"(conv1\.weight|bn1\.\w+)", r"\1", None)]


# HF Llama <-> Meta's reference llama (model.py): the same model under other names, and per head the rotary
# pairs of wq/wk are interleaved rows (2i, 2i+1) in Meta's layout, rows i and i + d/2 in HF's (rotate_half):
# the permutation convert_llama_weights_to_hf.py applies. GQA: 4 query heads, 2 key/value heads.
LLAMA = {"dim": 32, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "vocab": 50, "hidden": 64, "max_seq": 16}
hf_llama = _hf("LlamaForCausalLM", "LlamaConfig", hidden_size=LLAMA["dim"], num_hidden_layers=LLAMA["n_layers"],
               num_attention_heads=LLAMA["n_heads"], num_key_value_heads=LLAMA["n_kv_heads"],
               intermediate_size=LLAMA["hidden"], vocab_size=LLAMA["vocab"], max_position_embeddings=LLAMA["max_seq"],
               rms_norm_eps=1e-5)


class _RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps, self.weight = eps, nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def _rotary(x: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
    """Meta's apply_rotary_emb: consecutive pairs of a head's features are one complex number."""
    xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(xc * freqs_cis[None, :, None, :]).flatten(3).type_as(x)


class _MetaAttention(nn.Module):
    def __init__(self, dim: int, n_heads: int, n_kv_heads: int) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, dim // n_heads
        self.wq = nn.Linear(dim, n_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(dim, n_kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(dim, n_kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(n_heads * self.head_dim, dim, bias=False)

    def forward(self, x: torch.Tensor, freqs_cis: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q = _rotary(self.wq(x).view(b, n, self.n_heads, self.head_dim), freqs_cis)
        k = _rotary(self.wk(x).view(b, n, self.n_kv_heads, self.head_dim), freqs_cis)
        v = self.wv(x).view(b, n, self.n_kv_heads, self.head_dim)
        rep = self.n_heads // self.n_kv_heads  # repeat_kv: each key/value head serves rep query heads in a row
        q, k, v = q.transpose(1, 2), k.repeat_interleave(rep, 2).transpose(1, 2), v.repeat_interleave(rep, 2).transpose(1, 2)
        scores = (q @ k.transpose(2, 3)) / math.sqrt(self.head_dim) + mask
        out = scores.float().softmax(-1).type_as(q) @ v
        return self.wo(out.transpose(1, 2).reshape(b, n, -1))


class _MetaFeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w1, self.w2, self.w3 = nn.Linear(dim, hidden, bias=False), nn.Linear(hidden, dim, bias=False), \
            nn.Linear(dim, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(nn.functional.silu(self.w1(x)) * self.w3(x))


class _MetaBlock(nn.Module):
    def __init__(self, dim: int, n_heads: int, n_kv_heads: int, hidden: int) -> None:
        super().__init__()
        self.attention = _MetaAttention(dim, n_heads, n_kv_heads)
        self.feed_forward = _MetaFeedForward(dim, hidden)
        self.attention_norm, self.ffn_norm = _RMSNorm(dim), _RMSNorm(dim)


class MetaLlama(nn.Module):
    """Meta's reference llama ``model.py`` (Transformer) at toy size: its names, complex rotary on interleaved pairs."""

    def __init__(self, dim: int, n_layers: int, n_heads: int, n_kv_heads: int, vocab: int, hidden: int, max_seq: int,
                 theta: float = 10000.0) -> None:
        super().__init__()
        self.tok_embeddings = nn.Embedding(vocab, dim)
        self.layers = nn.ModuleList(_MetaBlock(dim, n_heads, n_kv_heads, hidden) for _ in range(n_layers))
        self.norm = _RMSNorm(dim)
        self.output = nn.Linear(dim, vocab, bias=False)
        hd = dim // n_heads
        freqs = 1.0 / theta ** (torch.arange(0, hd, 2).float() / hd)
        angles = torch.outer(torch.arange(max_seq).float(), freqs)
        self.freqs_cis = torch.polar(torch.ones_like(angles), angles)  # a plain attribute, as in Meta's code

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n = tokens.shape[1]
        h = self.tok_embeddings(tokens)
        mask = torch.full((n, n), float("-inf")).triu(1)
        for layer in self.layers:
            h = h + layer.attention(layer.attention_norm(h), self.freqs_cis[:n], mask)
            h = h + layer.feed_forward(layer.ffn_norm(h))
        return self.output(self.norm(h)).float()


def meta_llama() -> nn.Module:
    return MetaLlama(**LLAMA)


_META_HF = [("tok_embeddings", "model.embed_tokens"), ("norm", "model.norm"), ("output", "lm_head")]
_META_HF_LAYER = [("attention.wq", "self_attn.q_proj"), ("attention.wk", "self_attn.k_proj"),
                  ("attention.wv", "self_attn.v_proj"), ("attention.wo", "self_attn.o_proj"),
                  ("feed_forward.w1", "mlp.gate_proj"), ("feed_forward.w3", "mlp.up_proj"),
                  ("feed_forward.w2", "mlp.down_proj"), ("attention_norm", "input_layernorm"),
                  ("ffn_norm", "post_attention_layernorm")]


def _llama_rules(to_meta: bool) -> list[Rule]:
    rules: list[Rule] = []
    for meta, hf in _META_HF:
        rules.append((re.escape(meta) + r"\.weight", hf + ".weight", None) if to_meta else
                     (re.escape(hf) + r"\.weight", meta + ".weight", None))
    for meta, hf in _META_HF_LAYER:
        heads = {"wq": LLAMA["n_heads"], "wk": LLAMA["n_kv_heads"]}.get(meta.rpartition(".")[2])
        tr = None if heads is None else {"op": "rope_permute", "heads": heads, "to": "meta" if to_meta else "hf"}
        if to_meta:
            rules.append((r"layers\.(\d+)\." + re.escape(meta) + r"\.weight", r"model.layers.\1." + hf + ".weight", tr))
        else:
            rules.append((r"model\.layers\.(\d+)\." + re.escape(hf) + r"\.weight", r"layers.\1." + meta + ".weight", tr))
    return rules


def zoo_pairs() -> list[ZooPair]:
    import timm  # noqa: F401  (the zoo extra: a clear ImportError before anything is built)
    import transformers  # noqa: F401

    return [
        ZooPair("torchvision vit -> timm vit", tv_vit, timm_vit, TV_TIMM_VIT, _image,
                why="in_proj = qkv (q,k,v rows), class_token = cls_token"),
        ZooPair("timm vit -> torchvision vit", timm_vit, tv_vit, TIMM_TV_VIT, _image,
                why="the same, reversed"),
        ZooPair("timm vit -> HF ViT", timm_vit, hf_vit, TIMM_HF_VIT, _image,
                why="HF's q/k/v are the three row blocks of qkv"),
        ZooPair("torchvision vit -> HF ViT", tv_vit, hf_vit, TV_HF_VIT, _image,
                why="HF's q/k/v are the three row blocks of in_proj"),
        ZooPair("HF ViT -> timm vit", hf_vit, timm_vit, HF_TIMM_VIT, _image,
                why="all but qkv one to one"),
        ZooPair("torchvision convnext -> timm convnext", tv_convnext, timm_convnext, _convnext_tv_to_timm(),
                _image224, why="features.2i+1 = stages.i.blocks, layer_scale (C,1,1) = gamma (C,)"),
        ZooPair("timm convnext -> torchvision convnext", timm_convnext, tv_convnext, _convnext_timm_to_tv(),
                _image224, why="the same, reversed"),
        ZooPair("torchvision regnet_y_400mf -> timm regnety_004", _regnet_tv, _regnet_timm, _regnet_rules(True),
                _image224, why="proj = downsample (shortcut; defined first vs last), f.a/b/c = conv1/2/3"),
        ZooPair("timm regnety_004 -> torchvision regnet_y_400mf", _regnet_timm, _regnet_tv, _regnet_rules(False),
                _image224, why="the same, reversed"),
        ZooPair("timm resnet50 -> torchvision resnet18 (stem only)", _timm("resnet50", num_classes=10),
                lambda: torchvision.models.resnet18(num_classes=10), RESNET_STEM, _image224, run=_stem,
                why="only the 7x7 stem is shared; checked on the stem's output"),
        ZooPair("torchvision resnet18 -> timm resnet18", lambda: torchvision.models.resnet18(num_classes=10),
                _timm("resnet18", num_classes=10), [(r".*", r"\g<0>", None)], _image224,
                why="timm's ResNet keeps torchvision's names"),
        ZooPair("HF GPT-2 -> HF GPTBigCode (1 head)", gpt2_1h, bigcode, GPT2_BIGCODE, _tokens,
                why="Conv1D (in, out) = Linear (out, in) transposed, square c_proj too"),
        ZooPair("HF GPTBigCode -> HF GPT-2 (1 head)", bigcode, gpt2_1h, GPT2_BIGCODE, _tokens, why="the same, reversed"),
        ZooPair("HF GPT-2 -> HF OPT", gpt2, opt, GPT2_OPT, _tokens,
                why="q/k/v = column blocks of c_attn transposed, positions offset by 2"),
        ZooPair("HF BERT -> HF DistilBERT", bert, distilbert, _bert_rules(True), _tokens, prepare=_zero_token_types,
                why="query/key/value/dense = q_lin/k_lin/v_lin/out_lin, token types zeroed"),
        ZooPair("HF DistilBERT -> HF BERT", distilbert, bert, _bert_rules(False), _tokens, prepare=_zero_token_types,
                why="the same, reversed; BERT's token types zeroed, pooler keeps its init"),
        ZooPair("HF Llama -> Meta llama", hf_llama, meta_llama, _llama_rules(True), _tokens,
                why="wq/wk rows per head from HF's halves to Meta's interleaved pairs (rope_permute), q_proj = wq ..."),
        ZooPair("Meta llama -> HF Llama", meta_llama, hf_llama, _llama_rules(False), _tokens,
                why="the conversion script's permute (rope_permute to hf), w1/w3/w2 = gate/up/down_proj"),
        ZooPair("unrelated torchvision resnet18 -> HF BERT", lambda: torchvision.models.resnet18(num_classes=10), bert,
                [], _tokens, unrelated=True),
        ZooPair("unrelated HF GPT-2 -> timm convnext", gpt2, timm_convnext, [], _image224, unrelated=True),
        ZooPair("unrelated timm vit -> torchvision regnet_y_400mf", timm_vit, _regnet_tv, [], _image224,
                unrelated=True),
    ]
