"""HF <-> Meta Llama: the naming says the rotary rows of wq/wk are ordered differently.

Meta's reference llama (``model.py``) rotates consecutive pairs of a head's features as complex numbers;
HF's Llama rotates feature i with i + d/2 (``rotate_half``). transformers' conversion script
(``convert_llama_weights_to_hf.py``) therefore permutes each head's rows of wq and wk. Where one side is
named the HF way (``q_proj``, ``gate_proj``, ``embed_tokens``, ``input_layernorm`` ...) and the other the
Meta way (``wq``, ``w1``, ``tok_embeddings``, ``attention_norm`` ...), the q/k pairs ``auto`` found get a
``rope_permute`` with the head count their rows hold: n_heads for q, n_kv_heads for k (GQA), from the
head size. The head size is no shape: it comes from the ``head_dim`` option, an ``hf:`` spec's config or
a Meta ``params.json`` beside the checkpoint. Without it the permutation is only proposed, with a guess.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .strategies import Side, Suggestion

HF_NAMES = frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "embed_tokens",
                      "lm_head", "input_layernorm", "post_attention_layernorm"})
META_NAMES = frozenset({"wq", "wk", "wv", "wo", "w1", "w2", "w3", "tok_embeddings", "output", "attention_norm",
                        "ffn_norm"})
#: names of each convention a side must show (and at most one of the other's)
EVIDENCE = 6
_ROTARY = {"q_proj": ("q", "hf"), "k_proj": ("k", "hf"), "wq": ("q", "meta"), "wk": ("k", "meta")}
PARAMS_JSON_LIMIT = 1 << 20


def naming(keys) -> str | None:
    """'hf' or 'meta' when a key table is named the HF or the Meta Llama way, else None."""
    parts: set[str] = set()
    for key in keys:
        parts.update(key.split(".")[:-1])
    hf, meta = len(parts & HF_NAMES), len(parts & META_NAMES)
    if hf >= EVIDENCE and meta <= 1:
        return "hf"
    if meta >= EVIDENCE and hf <= 1:
        return "meta"
    return None


def _maybe(table) -> bool:
    """A cheap first look (a 46,000-key model pays one pass of ``endswith``)."""
    return any(k.endswith((".wq.weight", ".q_proj.weight")) for k in table)


def head_dim_of(side: Side) -> tuple[int | None, str]:
    """The attention head size a side tells (its hf: spec's config, a Meta params.json beside it), and where from."""
    if side.spec:
        try:
            from .specs import parse_spec

            spec = parse_spec(side.spec)
            if spec.kind == "hf":
                return _hf_head_dim(spec), f"the config of {side.spec}"
        except Exception:  # a spec auto cannot read says nothing about heads; the caller proposes only
            pass
    path = getattr(side.source, "path", None)
    if path is not None:
        params = Path(os.fspath(path)).parent / "params.json" if not Path(os.fspath(path)).is_dir() else \
            Path(os.fspath(path)) / "params.json"
        hd = _meta_params_head_dim(params)
        if hd is not None:
            return hd, str(params)
    return None, ""


def _hf_head_dim(spec) -> int | None:
    from .zoo import _transformers_model_class, read_config_json

    if spec.path is not None:
        data: dict[str, Any] = {**read_config_json(Path(spec.path).expanduser(), spec.text), **spec.kwargs}
    else:
        config = _transformers_model_class(spec.name, spec.text).config_class(**spec.kwargs)
        data = config.to_dict() if hasattr(config, "to_dict") else vars(config)
        data.setdefault("head_dim", getattr(config, "head_dim", None))
    hd = data.get("head_dim")
    if not isinstance(hd, int) or hd <= 0:
        dim, heads = data.get("hidden_size"), data.get("num_attention_heads")
        hd = dim // heads if isinstance(dim, int) and isinstance(heads, int) and heads > 0 else None
    return hd


def _meta_params_head_dim(path: Path) -> int | None:
    """Meta's params.json (``dim``, ``n_heads``) as plain, bounded data."""
    try:
        if not path.is_file() or path.stat().st_size > PARAMS_JSON_LIMIT:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    dim, heads = data.get("dim"), data.get("n_heads")
    if isinstance(dim, int) and isinstance(heads, int) and heads > 0 and dim % heads == 0:
        return dim // heads
    return None


def _own(key: str) -> str:
    return key.rpartition(".")[0].rpartition(".")[2]


def rope_permutations(items: list[Suggestion], source: Side, target: Side, head_dim: int | None = None
                      ) -> list[Suggestion]:
    """Give the q/k pairs between HF and Meta Llama naming their ``rope_permute`` (in place; returns items)."""
    if not (_maybe(source.table) and _maybe(target.table)):
        return items
    conv_s, conv_t = naming(source.table), naming(target.table)
    if conv_s is None or conv_t is None or conv_s == conv_t:
        return items
    where = "the head_dim option" if head_dim else ""
    if not head_dim:
        head_dim, where = head_dim_of(target)
        if not head_dim:
            head_dim, where = head_dim_of(source)
    for sug in items:
        if sug.transform is not None or not sug.source or sug.target.rpartition(".")[2] not in ("weight", "bias"):
            continue
        t_part, s_part = _ROTARY.get(_own(sug.target)), _ROTARY.get(_own(sug.source))
        if t_part is None or s_part is None or t_part[0] != s_part[0] or t_part[1] != conv_t or s_part[1] != conv_s:
            continue
        shape = target.table[sug.target].shape
        if not shape or source.table[sug.source].shape != shape:
            continue
        rows = shape[0]
        names = f"HF <-> Meta Llama naming ({_own(sug.source)}~{_own(sug.target)}): each head's rotary rows are " \
                f"{'interleaved pairs in Meta' if conv_t == 'meta' else 'two halves in HF'}'s layout " \
                "(convert_llama_weights_to_hf.py's permute)"
        if head_dim and head_dim % 2 == 0 and rows % head_dim == 0:
            heads = rows // head_dim
            sug.transform = {"op": "rope_permute", "heads": heads, "to": conv_t}
            sug.reason = f"{sug.reason}; {names}: rope_permute {heads} heads of {head_dim} (head size from {where})"
            continue
        guess = next((d for d in (128, 64) if rows % d == 0), None)
        sug.accepted = False
        sug.confidence = min(sug.confidence, 0.4)
        if guess is None:
            sug.reason = f"{sug.reason}; {names}: rope_permute needs the head size (give head_dim)"
            continue
        sug.transform = {"op": "rope_permute", "heads": rows // guess, "to": conv_t}
        sug.reason = (f"{sug.reason}; {names}: rope_permute, head size unknown, {guess} assumed; check it (give "
                      "head_dim, or the HF side as an hf: spec)")
    return items
