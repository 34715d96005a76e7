"""Model-family adapters: Hugging Face config and weights → :class:`ModelDims` + our parameter names.

Contract of a family (:class:`BaseFamily`): given a Hugging Face config it
returns the :class:`ModelDims`; given the checkpoint's state dict it returns
the same tensors under :class:`~nas.models.transformer.TransformerModel`'s
names, unchanged in value, and raises :class:`~nas.errors.ModelError` naming
any missing key. Families are registered under a name with
:func:`register_family` and resolved from a config's ``model_type``.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import torch
from torch import Tensor

from nas.errors import ModelError
from nas.models.dims import ModelDims

_FAMILIES: dict[str, "BaseFamily"] = {}


def register_family(name: str):
    """Class decorator registering a family adapter under ``name``."""

    def deco(cls: type["BaseFamily"]) -> type["BaseFamily"]:
        cls.name = name
        _FAMILIES[name] = cls()
        return cls

    return deco


def get_family(name_or_model_type: str) -> "BaseFamily":
    """The family registered as ``name_or_model_type`` or claiming that HF ``model_type``."""
    if name_or_model_type in _FAMILIES:
        return _FAMILIES[name_or_model_type]
    for fam in _FAMILIES.values():
        if name_or_model_type in fam.model_types:
            return fam
    known = sorted({mt for f in _FAMILIES.values() for mt in f.model_types} | set(_FAMILIES))
    raise ModelError(f"family: unknown model family or model_type {name_or_model_type!r}; known: {', '.join(known)}")


class BaseFamily:
    """A model family: how to read its HF config and rename its weights."""

    name: ClassVar[str] = ""
    model_types: ClassVar[tuple[str, ...]] = ()

    def dims(self, config: Any) -> ModelDims:  # pragma: no cover - abstract
        raise NotImplementedError

    def rename(self, key: str) -> str | None:  # pragma: no cover - abstract
        """Our parameter name for an HF key, or ``None`` to drop it."""
        raise NotImplementedError

    def convert_state(self, hf_state: dict[str, Tensor], dims: ModelDims) -> dict[str, Tensor]:
        from nas.models.transformer import TransformerModel

        out: dict[str, Tensor] = {}
        for k, v in hf_state.items():
            new = self.rename(k)
            if new is not None:
                out[new] = v
        with torch.device("meta"):
            expected = set(TransformerModel(dims).state_dict().keys())
        missing = sorted(expected - set(out))
        if missing:
            raise ModelError(f"checkpoint: missing weight(s) for {self.name}: {', '.join(missing[:5])}")
        return {k: out[k] for k in sorted(expected)}


@register_family("bert")
class BertFamily(BaseFamily):
    """BERT-style encoders (BERT, MiniLM, ...): post-LN, GELU, learned positions."""

    model_types = ("bert",)
    _MAP = (
        (r"embeddings\.word_embeddings\.weight", "embed.word.weight"),
        (r"embeddings\.position_embeddings\.weight", "embed.position.weight"),
        (r"embeddings\.token_type_embeddings\.weight", "embed.token_type.weight"),
        (r"embeddings\.LayerNorm\.(weight|gamma)", "embed.norm.weight"),
        (r"embeddings\.LayerNorm\.(bias|beta)", "embed.norm.bias"),
        (r"encoder\.layer\.(\d+)\.attention\.self\.query\.(weight|bias)", r"layers.\1.attn.q.\2"),
        (r"encoder\.layer\.(\d+)\.attention\.self\.key\.(weight|bias)", r"layers.\1.attn.k.\2"),
        (r"encoder\.layer\.(\d+)\.attention\.self\.value\.(weight|bias)", r"layers.\1.attn.v.\2"),
        (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.(weight|bias)", r"layers.\1.attn.o.\2"),
        (r"encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.(weight|gamma)", r"layers.\1.attn_norm.weight"),
        (r"encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.(bias|beta)", r"layers.\1.attn_norm.bias"),
        (r"encoder\.layer\.(\d+)\.intermediate\.dense\.(weight|bias)", r"layers.\1.ffn.up.\2"),
        (r"encoder\.layer\.(\d+)\.output\.dense\.(weight|bias)", r"layers.\1.ffn.down.\2"),
        (r"encoder\.layer\.(\d+)\.output\.LayerNorm\.(weight|gamma)", r"layers.\1.ffn_norm.weight"),
        (r"encoder\.layer\.(\d+)\.output\.LayerNorm\.(bias|beta)", r"layers.\1.ffn_norm.bias"),
    )

    def dims(self, config: Any) -> ModelDims:
        act = getattr(config, "hidden_act", "gelu")
        if act not in ("gelu",):
            raise ModelError(f"hidden_act: {act!r} is not supported for bert (only 'gelu')")
        pos = getattr(config, "position_embedding_type", "absolute")
        if pos not in (None, "absolute"):
            raise ModelError(f"position_embedding_type: {pos!r} is not supported (only 'absolute')")
        return ModelDims(
            family="bert",
            num_layers=config.num_hidden_layers,
            hidden=config.hidden_size,
            num_heads=config.num_attention_heads,
            num_kv_heads=config.num_attention_heads,
            head_dim=config.hidden_size // config.num_attention_heads,
            intermediate=config.intermediate_size,
            vocab_size=config.vocab_size,
            max_positions=config.max_position_embeddings,
            type_vocab_size=config.type_vocab_size,
            norm_eps=config.layer_norm_eps,
            act="gelu",
            pad_token_id=getattr(config, "pad_token_id", 0) or 0,
        )

    def rename(self, key: str) -> str | None:
        key = re.sub(r"^(bert|model)\.", "", key)
        for pat, rep in self._MAP:
            if re.fullmatch(pat, key):
                return re.sub(pat, rep, key)
        return None


@register_family("llama")
class LlamaFamily(BaseFamily):
    """Llama-style decoders (Llama, Qwen2, Mistral): pre-RMSNorm, RoPE, gated SiLU, GQA."""

    model_types = ("llama", "qwen2", "mistral")
    _MAP = (
        (r"embed_tokens\.weight", "embed.word.weight"),
        (r"norm\.weight", "final_norm.weight"),
        (r"layers\.(\d+)\.self_attn\.(q|k|v|o)_proj\.(weight|bias)", r"layers.\1.attn.\2.\3"),
        (r"layers\.(\d+)\.input_layernorm\.weight", r"layers.\1.attn_norm.weight"),
        (r"layers\.(\d+)\.post_attention_layernorm\.weight", r"layers.\1.ffn_norm.weight"),
        (r"layers\.(\d+)\.mlp\.(gate|up|down)_proj\.(weight|bias)", r"layers.\1.ffn.\2.\3"),
    )

    def dims(self, config: Any) -> ModelDims:
        act = getattr(config, "hidden_act", "silu")
        if act != "silu":
            raise ModelError(f"hidden_act: {act!r} is not supported for llama (only 'silu')")
        rope = getattr(config, "rope_parameters", None) or {}
        if rope.get("rope_type", "default") not in ("default", None):
            raise ModelError(f"rope_parameters.rope_type: {rope.get('rope_type')!r} is not supported (only 'default')")
        theta = rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))
        qwen = config.model_type == "qwen2"
        heads = config.num_attention_heads
        return ModelDims(
            family="llama",
            num_layers=config.num_hidden_layers,
            hidden=config.hidden_size,
            num_heads=heads,
            num_kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
            intermediate=config.intermediate_size,
            vocab_size=config.vocab_size,
            max_positions=config.max_position_embeddings,
            norm_eps=config.rms_norm_eps,
            rope_theta=float(theta),
            attn_bias=True if qwen else bool(getattr(config, "attention_bias", False)),
            o_bias=False if qwen else bool(getattr(config, "attention_bias", False)),
            mlp_bias=False if qwen else bool(getattr(config, "mlp_bias", False)),
            act="silu",
            pad_token_id=getattr(config, "pad_token_id", 0) or 0,
        )

    def rename(self, key: str) -> str | None:
        key = re.sub(r"^model\.", "", key)
        for pat, rep in self._MAP:
            if re.fullmatch(pat, key):
                return re.sub(pat, rep, key)
        return None
