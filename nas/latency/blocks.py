"""The measurable pieces of a model: one module per latency-table entry kind.

Each wraps modules of a real (derived) model so that the exported graph of an
entry is the same subgraph the whole model contains:

* :class:`AttnPart` – attention + residual + norm (post-LN bert); a decoder's attention is
  :class:`nas.runtime.decoder_onnx.AttentionStep` instead, the generation graph's own (past
  keys/values in, presents out), with empty pasts for a prefill and ``C`` cached tokens for a
  decode step;
* :class:`FFNPart` – FFN + residual + norm;
* :class:`EmbedPart` – embeddings (word lookup, positions, norm);
* :class:`HeadPart` – a decoder's tied LM head (the generation graph's MatMul ``lm_head``);
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


class HeadPart(nn.Module):
    """``hidden_states @ embed.word.weightᵀ``: the logits of every position, as the generation graph's ``lm_head``.

    The linear is named ``lm_head`` (:data:`nas.runtime.decoder_onnx.LM_HEAD_NODE`) and shares the word
    embedding's parameter, as :class:`~nas.runtime.decoder_onnx.DecoderGraph`'s does.
    """

    def __init__(self, embed: Embeddings) -> None:
        super().__init__()
        vocab, hidden = embed.word.weight.shape
        self.lm_head = nn.Linear(hidden, vocab, bias=False)
        self.lm_head.weight = embed.word.weight  # tied: one parameter

    def forward(self, hidden_states: Tensor) -> Tensor:
        return self.lm_head(hidden_states)


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
