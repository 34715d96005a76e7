"""The subnet in transformers' own classes, where their configs can express its shapes.

transformers 5 configs give every layer the same head count, head width and
FFN width (head pruning is gone from ``BertModel``), so a subnet is expressible
when every kept layer keeps all heads and the kept layers share one FFN width.
Layers dropped by depth search are simply absent (``num_hidden_layers`` = kept).

The folder holds ``config.json`` + ``model.safetensors`` in the Hugging Face
names; load it with ``AutoModel.from_pretrained(dir)`` (BERT: pass
``add_pooling_layer=False``; the subnet has no pooler).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

_BERT = {
    "embed.word.weight": "embeddings.word_embeddings.weight",
    "embed.position.weight": "embeddings.position_embeddings.weight",
    "embed.token_type.weight": "embeddings.token_type_embeddings.weight",
    "embed.norm.weight": "embeddings.LayerNorm.weight",
    "embed.norm.bias": "embeddings.LayerNorm.bias",
}
_BERT_LAYER = {
    "attn.q": "attention.self.query", "attn.k": "attention.self.key", "attn.v": "attention.self.value",
    "attn.o": "attention.output.dense", "attn_norm": "attention.output.LayerNorm",
    "ffn.up": "intermediate.dense", "ffn.down": "output.dense", "ffn_norm": "output.LayerNorm",
}
_LLAMA_LAYER = {
    "attn.q": "self_attn.q_proj", "attn.k": "self_attn.k_proj", "attn.v": "self_attn.v_proj",
    "attn.o": "self_attn.o_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "ffn.gate": "mlp.gate_proj", "ffn.up": "mlp.up_proj", "ffn.down": "mlp.down_proj",
}


def expressible(subnet: Any) -> tuple[bool, str]:
    """Whether transformers' config can express ``subnet``, and why not if it cannot."""
    dims = subnet.space.dims
    lds = subnet.model.layer_dims
    partial = [f"layer{ld.index}" for ld in lds if ld.num_heads != dims.num_heads]
    if partial:
        return False, f"not expressible: {', '.join(partial)} keep fewer than {dims.num_heads} heads (per-layer head counts)"
    widths = sorted({ld.intermediate for ld in lds})
    if len(widths) > 1:
        return False, f"not expressible: kept layers have FFN widths {widths} (transformers needs one width)"
    if dims.family == "llama" and dims.attn_bias != dims.o_bias:
        return False, "not expressible: q/k/v bias without o bias (Qwen2-style) is not a LlamaConfig"
    return True, "expressible"


def hf_config(subnet: Any) -> dict[str, Any]:
    d = subnet.space.dims
    lds = subnet.model.layer_dims
    common = dict(
        vocab_size=d.vocab_size, hidden_size=d.hidden, num_hidden_layers=len(lds), num_attention_heads=d.num_heads,
        intermediate_size=lds[0].intermediate, max_position_embeddings=d.max_positions, pad_token_id=d.pad_token_id,
    )
    if d.family == "bert":
        return dict(common, model_type="bert", architectures=["BertModel"], type_vocab_size=max(d.type_vocab_size, 1),
                    hidden_act="gelu", layer_norm_eps=d.norm_eps, position_embedding_type="absolute")
    return dict(common, model_type="llama", architectures=["LlamaModel"], num_key_value_heads=d.num_kv_heads,
                head_dim=d.head_dim, hidden_act="silu", rms_norm_eps=d.norm_eps, attention_bias=d.attn_bias,
                mlp_bias=d.mlp_bias, rope_theta=d.rope_theta, tie_word_embeddings=False)


def hf_state(subnet: Any) -> dict[str, Any]:
    """The subnet's weights under the Hugging Face names."""
    family = subnet.space.dims.family
    table = _BERT_LAYER if family == "bert" else _LLAMA_LAYER
    prefix = "encoder.layer" if family == "bert" else "layers"
    out = {}
    for name, t in subnet.model.state_dict().items():
        m = re.fullmatch(r"layers\.(\d+)\.(attn\.\w|ffn\.\w+|attn_norm|ffn_norm)\.(weight|bias)", name)
        if m:
            out[f"{prefix}.{m[1]}.{table[m[2]]}.{m[3]}"] = t
        elif family == "llama":
            out[{"embed.word.weight": "embed_tokens.weight", "final_norm.weight": "norm.weight"}[name]] = t
        else:
            out[_BERT[name]] = t
    return {k: v.detach().contiguous().clone() for k, v in out.items()}


def save_hf(subnet: Any, directory: str | Path) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (HF names) into ``directory`` (which must be new)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True)
    save_file(hf_state(subnet), str(directory / "model.safetensors"), metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps(hf_config(subnet), indent=1))
    return directory


def load_hf(directory: str | Path):
    """``AutoModel.from_pretrained`` of a folder written by :func:`save_hf` (eager attention)."""
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    cfg = AutoConfig.from_pretrained(directory)
    kwargs = {"add_pooling_layer": False} if cfg.model_type == "bert" else {}
    return AutoModel.from_pretrained(directory, attn_implementation="eager", **kwargs).eval()
