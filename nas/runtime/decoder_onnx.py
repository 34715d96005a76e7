"""Export a decoder (llama family) for generation: one ONNX graph with explicit past keys/values.

One merged graph serves both phases (a prefill is a call with an empty past)::

    inputs   input_ids       int64 (batch, sequence)            the new tokens
             attention_mask  int64 (batch, total_sequence)      past and new tokens (1 real, 0 padding)
             past_k_{k}      float (batch, kv_heads_k, past_sequence, head_dim)   for every kept layer k
             past_v_{k}      float (batch, kv_heads_k, past_sequence, head_dim)
    outputs  logits          float (batch, sequence, vocab)     every new position
             present_k_{k}   float (batch, kv_heads_k, total_sequence, head_dim)  past + new, rotary applied
             present_v_{k}   float (batch, kv_heads_k, total_sequence, head_dim)

``total_sequence = past_sequence + sequence``; a prefill feeds ``past_sequence
= 0`` (empty tensors), a decode step ``sequence = 1`` and the previous call's
presents as the pasts. ``kv_heads_k`` is fixed per layer (a derived subnet
keeps different numbers). The rotary offset of the new tokens is read from the
graph's own past length (``past_k_0``'s third dimension; the mask's length
minus the new tokens' for a subnet without layers), so it is dynamic: the
same positions :meth:`~nas.models.transformer.TransformerModel.extend` gives
(see :mod:`nas.models.kv_cache`).

Node names are the encoder export's (:mod:`nas.runtime.onnx`): the MatMul of
every linear is ``layers.{k}.attn.q`` …, the embedding lookup is the Gather
``embed.word``, and the LM head is the MatMul ``lm_head``. The head is tied to
the word embeddings (``hidden @ embed.word.weightᵀ``); the graph holds the
table twice, once for the Gather and once, transposed, as the head's weight,
so each can be quantized by its own kernel. Both take the searched
``embed.bits`` (:func:`decoder_bits_by_node`): the supernet fake-quantizes one
table on a grid of one scale per row (per token), which is per output channel
of the head, so at 8 bits the Gather reads int8 rows with per-row scales and
the head runs ``MatMulInteger`` with per-channel scales on those same codes
(its activations quantized per tensor at run time). The layers' 8-bit linears
run 8-bit ``MatMulNBits`` instead (:func:`int8_nbits_nodes`): on the same
per-channel weight grid, but with activations quantized per block of 32, since
a decoder's per-tensor activation scale is ruined by its outlier channels (on
SmolLM2 ``MatMulInteger`` layers keep 52 % of fp32's next-token argmaxes and
raise perplexity 74 %, ``MatMulNBits`` 87 % and 1.4 %, at the same time per
token: :data:`nas.runtime.quantize.INT8_NBITS_LEVEL`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nas.errors import ModelError
from nas.models.dims import synthetic_id_high
from nas.models.transformer import TransformerModel, rotary
from nas.runtime.onnx import EMBED_NODE, OPSET, export_module

LM_HEAD_NODE = "lm_head"
INPUTS = ("input_ids", "attention_mask")
LOGITS = "logits"


def past_names(num_layers: int) -> list[str]:
    """``past_k_0, past_v_0, past_k_1, …``: the graph's cache inputs, in order."""
    return [f"past_{kv}_{k}" for k in range(num_layers) for kv in ("k", "v")]


def present_names(num_layers: int) -> list[str]:
    """``present_k_0, present_v_0, …``: the graph's cache outputs, in the order of :func:`past_names`."""
    return [f"present_{kv}_{k}" for k in range(num_layers) for kv in ("k", "v")]


def decoder_bias(attention_mask: Tensor, new: Any, past: Any, dtype: torch.dtype = torch.float32) -> Tensor:
    """Additive attention bias (B, 1, new, past + new) of new tokens after ``past`` cached ones.

    The values of :func:`nas.models.transformer.attention_bias` with ``past``
    (padding, and new token ``i`` sees keys ``0 … past + i``), built from
    comparisons only, so ``past`` may be a traced size.
    """
    neg = torch.finfo(dtype).min
    keys = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    queries = torch.arange(new, device=attention_mask.device) + past
    blocked = (keys[None, :] > queries[:, None])[None, None] | (attention_mask[:, None, None, :] == 0)
    return torch.where(blocked, torch.full((), neg, dtype=dtype), torch.zeros((), dtype=dtype))


class DecoderGraph(nn.Module):
    """``(input_ids, attention_mask, *pasts) -> (logits, *presents)`` of a decoder (the exported function).

    Holds the model's own modules (so parameter paths, and node names, are the
    model's) plus ``lm_head``, a linear sharing the word-embedding parameter.

    Args:
        model: a llama-family :class:`TransformerModel` (a subnet's ``.model``).

    Raises:
        ModelError: the model is not a decoder.
    """

    def __init__(self, model: TransformerModel) -> None:
        super().__init__()
        if model.dims.family != "llama":
            raise ModelError(f"decoder export: needs a llama-family decoder, not {model.dims.family!r}")
        self.dims = model.dims
        self.layer_dims = model.layer_dims
        self.embed = model.embed
        self.layers = model.layers
        self.final_norm = model.final_norm
        self.lm_head = nn.Linear(model.dims.hidden, model.dims.vocab_size, bias=False)
        self.lm_head.weight = model.embed.word.weight  # tied: one parameter

    def forward(self, input_ids: Tensor, attention_mask: Tensor, *past: Tensor) -> tuple[Tensor, ...]:
        t = input_ids.shape[1]
        past_len = past[0].shape[2] if past else attention_mask.shape[1] - t
        x = self.embed(input_ids)
        bias = decoder_bias(attention_mask, t, past_len, x.dtype)
        rope = rotary(self.dims, t, x.device, offset=past_len)
        presents: list[Tensor] = []
        for k, block in enumerate(self.layers):
            x, (key, value) = block.extend(x, bias, rope, (past[2 * k], past[2 * k + 1]))
            presents += [key, value]
        assert self.final_norm is not None
        return (self.lm_head(self.final_norm(x)), *presents)


class AttentionStep(nn.Module):
    """``(hidden_states, attention_mask, past_k, past_v) -> (hidden_states, present_k, present_v)`` of one layer.

    One kept layer's attention (pre-norm, residual) exactly as :class:`DecoderGraph` runs it: the
    new tokens after ``past_k``'s cached ones, the bias (:func:`decoder_bias`) and the rotary
    offset read from the past length, and the presents (past plus new keys/values) out. A latency
    table times it alone (:mod:`nas.latency.blocks`): with empty pasts for a prefill, with ``C``
    cached tokens for a decode step. Parameter paths (so node names) are ``attn.q`` … ``attn.o``.

    Args:
        dims: the model's shapes (llama family).
        block: the layer (a derived subnet's ``model.layers[k]``).

    Raises:
        ModelError: the model is not a decoder.
    """

    AXES: dict[str, dict[int, str]] = {
        "hidden_states": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "total_sequence"},
        "past_k": {0: "batch", 2: "past_sequence"}, "past_v": {0: "batch", 2: "past_sequence"},
        "output": {0: "batch", 1: "sequence"},
        "present_k": {0: "batch", 2: "total_sequence"}, "present_v": {0: "batch", 2: "total_sequence"},
    }
    OUTPUTS = ("output", "present_k", "present_v")

    def __init__(self, dims: Any, block: nn.Module) -> None:
        super().__init__()
        if dims.family != "llama":
            raise ModelError(f"decoder attention step: needs a llama-family decoder, not {dims.family!r}")
        self.dims = dims
        self.attn, self.attn_norm = block.attn, block.attn_norm

    def forward(self, hidden_states: Tensor, attention_mask: Tensor, past_k: Tensor, past_v: Tensor
                ) -> tuple[Tensor, Tensor, Tensor]:
        x, t, past_len = hidden_states, hidden_states.shape[1], past_k.shape[2]
        bias = decoder_bias(attention_mask, t, past_len, x.dtype)
        rope = rotary(self.dims, t, x.device, offset=past_len)
        a, (key, value) = self.attn.extend(self.attn_norm(x), bias, rope, (past_k, past_v))
        return x + a, key, value


def step_inputs(model: TransformerModel, *, batch: int, new: int, context: int, seed: int = 0) -> dict[str, Tensor]:
    """Feeds of one generation-graph call: ``new`` token ids after ``context`` cached tokens (zero pasts).

    ``{"input_ids": (batch, new), "attention_mask": (batch, context + new), "past_k_0": …}`` in the
    graph's input order (:func:`past_names`); ``context=0`` is a prefill's empty pasts.
    """
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, synthetic_id_high(model.dims.vocab_size), (batch, new), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones(batch, context + new, dtype=torch.long),
            **dict(zip(past_names(len(model.layers)), empty_past(model, batch, context)))}


def generation_axes(num_layers: int) -> dict[str, dict[int, str]]:
    """The dynamic axes of the generation graph's inputs and outputs (module docstring)."""
    return {
        "input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "total_sequence"},
        LOGITS: {0: "batch", 1: "sequence"},
        **{name: {0: "batch", 2: "past_sequence"} for name in past_names(num_layers)},
        **{name: {0: "batch", 2: "total_sequence"} for name in present_names(num_layers)},
    }


def empty_past(model: TransformerModel, batch: int = 1, length: int = 0) -> list[Tensor]:
    """Zero past keys/values of ``length`` tokens for every kept layer (``length=0``: a prefill's)."""
    d = model.dims
    return [torch.zeros(batch, ld.num_kv_heads(d), length, d.head_dim) for ld in model.layer_dims for _ in "kv"]


def export_decoder_onnx(model: Any, path: str | Path, *, opset: int = OPSET) -> Path:
    """Export a decoder ``TransformerModel`` or ``Subnet`` as the generation graph of the module docstring.

    Traced at batch 2, 3 new tokens after 5 cached ones, with every batch,
    sequence and past axis dynamic; MatMul nodes named as in
    :mod:`nas.runtime.onnx`, plus ``lm_head``.

    Args:
        model: the decoder (a ``Subnet`` is exported through its ``.model``).
        path: the ``.onnx`` file to write (atomically; checked with ``onnx.checker``).
        opset: ONNX opset (≥ 17).

    Returns:
        ``path``.

    Raises:
        ModelError: not a llama-family model.
        ExportError: the exporter failed or a linear has no MatMul node.

    Example:
        >>> export_decoder_onnx(nas.derive(net, arch), "model.onnx")  # doctest: +SKIP
    """
    inner: TransformerModel = getattr(model, "model", model)
    graph = DecoderGraph(inner).eval()
    n = len(inner.layers)
    g = torch.Generator().manual_seed(0)
    batch, new, past = 2, 3, 5
    ids = torch.randint(1, min(inner.dims.vocab_size, 1000), (batch, new), generator=g)
    pasts = [torch.randn(t.shape, generator=g) for t in empty_past(inner, batch, past)]
    inputs = {"input_ids": ids, "attention_mask": torch.ones(batch, past + new, dtype=torch.long),
              **dict(zip(past_names(n), pasts))}
    return export_module(graph, path, inputs=inputs, output_names=(LOGITS, *present_names(n)),
                         dynamic_axes=generation_axes(n), opset=opset)


def int8_nbits_nodes(bits: Mapping[str, int]) -> list[str]:
    """The nodes of ``bits`` a decoder runs at int8 through 8-bit ``MatMulNBits``: every 8-bit one but the
    embedding Gather and the LM head (their int8 codes shared, see the module docstring)."""
    return sorted(n for n, b in bits.items() if b == 8 and n not in (EMBED_NODE, LM_HEAD_NODE))


def decoder_bits_by_node(subnet: Any) -> dict[str, int]:
    """``{node name: bits}`` of a derived decoder's generation graph: the encoder's, and ``lm_head`` at ``embed.bits``."""
    from nas.runtime.quantize import bits_by_node

    bits = bits_by_node(subnet)
    bits[LM_HEAD_NODE] = bits[EMBED_NODE]
    return bits
