"""The measurable pieces of a model: one module per latency-table entry kind.

Each wraps modules of a real (derived) model so that the exported graph of an
entry is the same subgraph the whole model contains:

* :class:`AttnPart` – attention + residual + norm (post-LN bert; pre-norm llama);
* :class:`FFNPart` – FFN + residual + norm;
* :class:`EmbedPart` – embeddings (word lookup, positions, norm);
* :class:`RestPart` – what follows the last layer (llama final norm; bert nothing);
* :class:`OverheadPart` – no compute: the per-inference cost of a session call
  with the model's inputs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nas.models.dims import ModelDims
from nas.models.transformer import Block, Embeddings, attention_bias, rotary


class AttnPart(nn.Module):
    def __init__(self, dims: ModelDims, block: Block) -> None:
        super().__init__()
        self.dims, self.pre_norm = dims, block.pre_norm
        self.attn, self.attn_norm = block.attn, block.attn_norm

    def forward(self, hidden_states: Tensor, attention_mask: Tensor) -> Tensor:
        x = hidden_states
        bias = attention_bias(self.dims, attention_mask, x.dtype)
        rope = rotary(self.dims, x.shape[1], x.device) if self.dims.family == "llama" else None
        if self.pre_norm:
            return x + self.attn(self.attn_norm(x), bias, rope)
        return self.attn_norm(x + self.attn(x, bias, rope))


class FFNPart(nn.Module):
    def __init__(self, block: Block) -> None:
        super().__init__()
        self.pre_norm = block.pre_norm
        self.ffn, self.ffn_norm = block.ffn, block.ffn_norm

    def forward(self, hidden_states: Tensor) -> Tensor:
        x = hidden_states
        if self.pre_norm:
            return x + self.ffn(self.ffn_norm(x))
        return self.ffn_norm(x + self.ffn(x))


class EmbedPart(nn.Module):
    def __init__(self, embed: Embeddings) -> None:
        super().__init__()
        self.embed = embed

    def forward(self, input_ids: Tensor) -> Tensor:
        return self.embed(input_ids)


class RestPart(nn.Module):
    def __init__(self, final_norm: nn.Module | None) -> None:
        super().__init__()
        self.final_norm = final_norm

    def forward(self, hidden_states: Tensor) -> Tensor:
        if self.final_norm is None:
            return hidden_states.clone()
        return self.final_norm(hidden_states)


class OverheadPart(nn.Module):
    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return (attention_mask + input_ids * 0).to(torch.float32)
