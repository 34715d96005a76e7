"""Shapes of a transformer: the full model's and each kept layer's."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from nas.errors import ModelError

FAMILIES = ("bert", "llama")
SYNTHETIC_ID_CAP = 30000


def synthetic_id_high(vocab_size: int) -> int:
    """Exclusive upper bound of the random token ids fed to time or check a model (latency tables, parity checks,
    measured points): ids in ``[1, min(vocab, 30000))`` — never 0 (BERT's padding), within every embedded vocabulary."""
    return min(int(vocab_size), SYNTHETIC_ID_CAP)


@dataclass(frozen=True)
class ModelDims:
    """Shapes of a pretrained model, independent of any Hugging Face class.

    Attributes:
        family: ``"bert"`` (post-LN encoder, GELU FFN, learned positions) or
            ``"llama"`` (pre-RMSNorm decoder, rotary positions, gated SiLU FFN,
            grouped-query attention).
        num_layers: transformer blocks.
        hidden: model width.
        num_heads: query heads per layer.
        num_kv_heads: key/value heads (== ``num_heads`` without GQA).
        head_dim: width of one head.
        intermediate: FFN width.
        vocab_size, max_positions, type_vocab_size: embedding table sizes
            (``type_vocab_size`` is 0 for llama).
        norm_eps: LayerNorm / RMSNorm epsilon.
        rope_theta: rotary base (llama only).
        attn_bias: whether q/k/v carry a bias (BERT and Qwen2 do).
        act: FFN activation, ``"gelu"`` or ``"silu"``.
    """

    family: str
    num_layers: int
    hidden: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int = 0
    norm_eps: float = 1e-12
    rope_theta: float = 10000.0
    attn_bias: bool = True
    o_bias: bool = True
    mlp_bias: bool = True
    act: str = "gelu"
    pad_token_id: int = 0

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ModelError(f"family: unknown model family {self.family!r}; known: {', '.join(FAMILIES)}")
        for name in ("num_layers", "hidden", "num_heads", "num_kv_heads", "head_dim", "intermediate", "vocab_size"):
            if int(getattr(self, name)) <= 0:
                raise ModelError(f"{name}: must be positive, got {getattr(self, name)}")
        if self.num_heads % self.num_kv_heads:
            raise ModelError(
                f"num_kv_heads: {self.num_kv_heads} does not divide num_heads {self.num_heads}"
            )

    @property
    def group_size(self) -> int:
        """Query heads per key/value head (1 without grouped-query attention)."""
        return self.num_heads // self.num_kv_heads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelDims":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise ModelError(f"model dims: unknown field(s) {sorted(unknown)}")
        return cls(**d)


@dataclass(frozen=True)
class LayerDims:
    """Shapes of one kept layer of a (possibly smaller) model."""

    index: int  # position of the layer in the original model
    num_heads: int
    intermediate: int

    def num_kv_heads(self, dims: ModelDims) -> int:
        return self.num_heads // dims.group_size
