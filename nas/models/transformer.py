"""BERT-style encoder and Llama-style decoder blocks with per-layer shapes.

One implementation serves the supernet, the derived subnet and ONNX export:

* every layer has its own head count and FFN width (:class:`LayerDims`), so a
  derived subnet is physically smaller;
* a :class:`ModelControl` passed to ``forward`` carries what the supernet
  searches: a soft head mask and neuron mask per layer, a keep gate per layer
  (gated residual: ``y = g·block(x) + (1-g)·x``) and a weight transform per
  linear group (a mixture of fake-quantized copies). Without a control the
  model is a plain transformer.

Parameter names (the safetensors keys of a saved subnet)::

    embed.word.weight  embed.position.weight  embed.token_type.weight  embed.norm.{weight,bias}
    layers.{k}.attn.{q,k,v,o}.{weight,bias}   layers.{k}.attn_norm.*
    layers.{k}.ffn.{up,down[,gate]}.{weight,bias}   layers.{k}.ffn_norm.*
    final_norm.weight                                      (llama only)

``k`` counts kept layers; the original index of each is in ``LayerDims.index``.

Decoders (llama family) also generate: :meth:`TransformerModel.extend` runs new
tokens after a :class:`~nas.models.kv_cache.KVCache` of the earlier ones (see
that module for the API) and :meth:`TransformerModel.logits` is the LM head,
tied to the word embeddings (``hidden @ embed.word.weightᵀ``, as in SmolLM2);
a checkpoint with a separate ``lm_head`` is not generated from.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas.errors import ConfigError, ModelError
from nas.models.dims import LayerDims, ModelDims
from nas.models.kv_cache import KVCache

WeightFn = Callable[[Tensor], Tensor]


@dataclass
class LayerControl:
    """What the supernet imposes on one layer for one forward pass."""

    head_mask: Tensor | None = None  # (num_heads,) in [0, 1]
    neuron_mask: Tensor | None = None  # (intermediate,) in [0, 1]
    gate: Tensor | None = None  # scalar in [0, 1]: weight of keeping the layer
    attn_weight: WeightFn | None = None  # transform of q/k/v/o weights (fake quant)
    ffn_weight: WeightFn | None = None  # transform of FFN weights (fake quant)


@dataclass
class ModelControl:
    """Per-forward supernet state: one :class:`LayerControl` per layer."""

    layers: list[LayerControl] = field(default_factory=list)
    embed_weight: WeightFn | None = None  # transform of the word-embedding table


def _w(linear: nn.Linear, fn: WeightFn | None) -> Tensor:
    return linear.weight if fn is None else fn(linear.weight)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


def _norm(dims: ModelDims) -> nn.Module:
    if dims.family == "llama":
        return RMSNorm(dims.hidden, dims.norm_eps)
    return nn.LayerNorm(dims.hidden, eps=dims.norm_eps)


def rotary(
    dims: ModelDims, seq_len: int, device: torch.device | None = None, offset: int = 0
) -> tuple[Tensor, Tensor]:
    """Cosine and sine tables of rotary position embeddings for positions ``offset … offset+T-1``, shape (T, head_dim)."""
    d = dims.head_dim
    inv_freq = 1.0 / (dims.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64, device=device).float() / d))
    pos = torch.arange(offset, offset + seq_len, device=device).float()
    freqs = torch.outer(pos, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def _rotate_half(x: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class _Linears(nn.Module):
    """A module whose linears run through one overridable method."""

    def linear(self, x: Tensor, lin: nn.Linear, weight_fn: WeightFn | None = None) -> Tensor:
        """``lin(x)`` with ``weight_fn`` applied to the weight; an instance may replace it
        (:func:`nas.export.verify.fake_quantized` runs int8 linears as onnxruntime does)."""
        return F.linear(x, _w(lin, weight_fn), lin.bias)


class Attention(_Linears):
    """Multi-head (or grouped-query) self-attention with ``num_heads`` heads kept."""

    def __init__(self, dims: ModelDims, num_heads: int) -> None:
        super().__init__()
        self.dims = dims
        self.num_heads = num_heads
        self.num_kv = num_heads // dims.group_size
        d = dims.head_dim
        self.q = nn.Linear(dims.hidden, num_heads * d, bias=dims.attn_bias)
        self.k = nn.Linear(dims.hidden, self.num_kv * d, bias=dims.attn_bias)
        self.v = nn.Linear(dims.hidden, self.num_kv * d, bias=dims.attn_bias)
        self.o = nn.Linear(num_heads * d, dims.hidden, bias=dims.o_bias)

    def context(
        self,
        x: Tensor,
        bias: Tensor,
        rope: tuple[Tensor, Tensor] | None,
        weight_fn: WeightFn | None = None,
    ) -> Tensor:
        """Per-head attention output before the output projection, (B, H, T, D)."""
        q, k, v = self._qkv(x, rope, weight_fn)
        return self._attend(q, k, v, bias)

    def _qkv(
        self, x: Tensor, rope: tuple[Tensor, Tensor] | None, weight_fn: WeightFn | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Queries (B, H, T, D), keys and values (B, H_kv, T, D), rotary embedding applied."""
        b, t, _ = x.shape
        d = self.dims.head_dim
        q = self.linear(x, self.q, weight_fn).view(b, t, self.num_heads, d).transpose(1, 2)
        k = self.linear(x, self.k, weight_fn).view(b, t, self.num_kv, d).transpose(1, 2)
        v = self.linear(x, self.v, weight_fn).view(b, t, self.num_kv, d).transpose(1, 2)
        if rope is not None:
            cos, sin = rope
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
        return q, k, v

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
        d = self.dims.head_dim
        if self.num_kv != self.num_heads:
            k = k.repeat_interleave(self.dims.group_size, dim=1)
            v = v.repeat_interleave(self.dims.group_size, dim=1)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(d) + bias
        probs = torch.softmax(scores, dim=-1)
        return torch.matmul(probs, v)

    def project(self, ctx: Tensor, weight_fn: WeightFn | None = None) -> Tensor:
        b, _, t, _ = ctx.shape
        merged = ctx.transpose(1, 2).reshape(b, t, self.num_heads * self.dims.head_dim)
        return self.linear(merged, self.o, weight_fn)

    def forward(
        self,
        x: Tensor,
        bias: Tensor,
        rope: tuple[Tensor, Tensor] | None = None,
        head_mask: Tensor | None = None,
        weight_fn: WeightFn | None = None,
    ) -> Tensor:
        ctx = self.context(x, bias, rope, weight_fn)
        if head_mask is not None:
            ctx = ctx * head_mask.view(1, -1, 1, 1)
        return self.project(ctx, weight_fn)

    def extend(
        self,
        x: Tensor,
        bias: Tensor,
        rope: tuple[Tensor, Tensor] | None,
        past: tuple[Tensor, Tensor] | None,
        head_mask: Tensor | None = None,
        weight_fn: WeightFn | None = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """``forward`` of new tokens attending to ``past`` keys/values too; returns the output and all keys/values."""
        q, k, v = self._qkv(x, rope, weight_fn)
        if past is not None:
            k = torch.cat((past[0], k), dim=2)
            v = torch.cat((past[1], v), dim=2)
        ctx = self._attend(q, k, v, bias)
        if head_mask is not None:
            ctx = ctx * head_mask.view(1, -1, 1, 1)
        return self.project(ctx, weight_fn), (k, v)


class FFN(_Linears):
    """GELU MLP (bert) or gated SiLU MLP (llama) with ``intermediate`` neurons kept."""

    def __init__(self, dims: ModelDims, intermediate: int) -> None:
        super().__init__()
        self.gated = dims.family == "llama"
        self.intermediate = intermediate
        if self.gated:
            self.gate = nn.Linear(dims.hidden, intermediate, bias=dims.mlp_bias)
        self.up = nn.Linear(dims.hidden, intermediate, bias=dims.mlp_bias)
        self.down = nn.Linear(intermediate, dims.hidden, bias=dims.mlp_bias)

    def activations(self, x: Tensor, weight_fn: WeightFn | None = None) -> Tensor:
        """Neuron activations that feed ``down``, shape (B, T, intermediate)."""
        up = self.linear(x, self.up, weight_fn)
        if self.gated:
            return F.silu(self.linear(x, self.gate, weight_fn)) * up
        return F.gelu(up)

    def forward(self, x: Tensor, neuron_mask: Tensor | None = None, weight_fn: WeightFn | None = None) -> Tensor:
        h = self.activations(x, weight_fn)
        if neuron_mask is not None:
            h = h * neuron_mask
        return self.linear(h, self.down, weight_fn)


class Block(nn.Module):
    """One transformer layer: post-LN (bert) or pre-norm (llama)."""

    def __init__(self, dims: ModelDims, layer: LayerDims) -> None:
        super().__init__()
        self.pre_norm = dims.family == "llama"
        self.attn = Attention(dims, layer.num_heads)
        self.attn_norm = _norm(dims)
        self.ffn = FFN(dims, layer.intermediate)
        self.ffn_norm = _norm(dims)

    def forward(
        self, x: Tensor, bias: Tensor, rope: tuple[Tensor, Tensor] | None, ctl: LayerControl | None = None
    ) -> Tensor:
        ctl = ctl or LayerControl()
        if self.pre_norm:
            h = x + self.attn(self.attn_norm(x), bias, rope, ctl.head_mask, ctl.attn_weight)
            y = h + self.ffn(self.ffn_norm(h), ctl.neuron_mask, ctl.ffn_weight)
        else:
            h = self.attn_norm(x + self.attn(x, bias, rope, ctl.head_mask, ctl.attn_weight))
            y = self.ffn_norm(h + self.ffn(h, ctl.neuron_mask, ctl.ffn_weight))
        if ctl.gate is not None:
            y = ctl.gate * y + (1.0 - ctl.gate) * x
        return y

    def extend(
        self,
        x: Tensor,
        bias: Tensor,
        rope: tuple[Tensor, Tensor] | None,
        past: tuple[Tensor, Tensor] | None,
        ctl: LayerControl | None = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """``forward`` of new tokens after cached ones (pre-norm decoders): output and this layer's keys/values."""
        ctl = ctl or LayerControl()
        a, kv = self.attn.extend(self.attn_norm(x), bias, rope, past, ctl.head_mask, ctl.attn_weight)
        h = x + a
        y = h + self.ffn(self.ffn_norm(h), ctl.neuron_mask, ctl.ffn_weight)
        if ctl.gate is not None:
            y = ctl.gate * y + (1.0 - ctl.gate) * x
        return y, kv


class Embeddings(nn.Module):
    def __init__(self, dims: ModelDims) -> None:
        super().__init__()
        self.bert = dims.family == "bert"
        self.word = nn.Embedding(dims.vocab_size, dims.hidden)
        if self.bert:
            self.position = nn.Embedding(dims.max_positions, dims.hidden)
            self.token_type = nn.Embedding(max(dims.type_vocab_size, 1), dims.hidden)
            self.norm = nn.LayerNorm(dims.hidden, eps=dims.norm_eps)

    def forward(self, input_ids: Tensor, weight_fn: WeightFn | None = None) -> Tensor:
        word = self.word.weight if weight_fn is None else weight_fn(self.word.weight)
        x = F.embedding(input_ids, word)
        if self.bert:
            t = input_ids.shape[1]
            x = self.norm(x + self.position.weight[:t].unsqueeze(0) + self.token_type.weight[0])
        return x


def attention_bias(
    dims: ModelDims, attention_mask: Tensor, dtype: torch.dtype = torch.float32, past: int = 0
) -> Tensor:
    """Additive attention bias (B, 1, T|1, T): padding, plus causality for llama.

    With ``past`` cached tokens the mask covers past and new tokens and the bias
    is (B, 1, T - past, T): new token ``i`` sees keys ``0 … past + i``.
    """
    neg = torch.finfo(dtype).min
    pad = (1.0 - attention_mask[:, None, None, :].to(dtype)) * neg
    if dims.family != "llama":
        return pad
    t = attention_mask.shape[1]
    causal = torch.triu(torch.full((t - past, t), neg, dtype=dtype, device=attention_mask.device), diagonal=past + 1)
    return torch.clamp(pad + causal, min=neg)


class TransformerModel(nn.Module):
    """Embeddings + kept layers (+ final norm for llama); returns the last hidden state.

    Args:
        dims: shapes of the original model.
        layers: shapes of each kept layer, in order; ``None`` keeps every layer whole.
    """

    def __init__(self, dims: ModelDims, layers: Sequence[LayerDims] | None = None) -> None:
        super().__init__()
        self.dims = dims
        if layers is None:
            layers = [LayerDims(i, dims.num_heads, dims.intermediate) for i in range(dims.num_layers)]
        self.layer_dims = tuple(layers)
        self.embed = Embeddings(dims)
        self.layers = nn.ModuleList(Block(dims, ld) for ld in self.layer_dims)
        self.final_norm = RMSNorm(dims.hidden, dims.norm_eps) if dims.family == "llama" else None

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, control: ModelControl | None = None
    ) -> Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        x = self.embed(input_ids, control.embed_weight if control else None)
        bias = attention_bias(self.dims, attention_mask, x.dtype)
        rope = rotary(self.dims, input_ids.shape[1], x.device) if self.dims.family == "llama" else None
        for i, block in enumerate(self.layers):
            x = block(x, bias, rope, control.layers[i] if control else None)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return x

    def extend(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        *,
        cache: KVCache | None = None,
        control: ModelControl | None = None,
    ) -> tuple[Tensor, KVCache]:
        """Run ``input_ids`` after the tokens in ``cache`` (none: a prefill); llama family only.

        Args:
            input_ids: (B, T) new tokens.
            attention_mask: (B, T) mask of the new tokens (default: all ones).
            cache: keys/values of the earlier tokens, from a previous call; not changed.
            control: supernet state, as in :meth:`forward`.

        Returns:
            The last hidden state of the new tokens (B, T, hidden) and the cache
            of all tokens so far. See :mod:`nas.models.kv_cache`.

        Raises:
            ConfigError: cached + new tokens exceed ``max_positions``, or the cache
                does not fit this model or batch (checked before any compute).
            ModelError: the model is not a decoder (bert).
        """
        if self.dims.family != "llama":
            raise ModelError(f"extend: KV caching needs a causal decoder (llama family), not {self.dims.family!r}")
        b, t = input_ids.shape
        past = 0 if cache is None else cache.length
        if past + t > self.dims.max_positions:
            raise ConfigError(
                f"max_positions: {past} cached + {t} new tokens exceed the model's {self.dims.max_positions} positions"
            )
        if cache is not None and (cache.num_layers != len(self.layers) or cache.batch_size != b):
            raise ConfigError(
                f"cache: made for {cache.num_layers} layers and batch {cache.batch_size}, "
                f"this model has {len(self.layers)} layers and the input batch {b}"
            )
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        full_mask = attention_mask if cache is None else torch.cat((cache.mask.to(attention_mask.dtype), attention_mask), 1)
        x = self.embed(input_ids, control.embed_weight if control else None)
        bias = attention_bias(self.dims, full_mask, x.dtype, past=past)
        rope = rotary(self.dims, t, x.device, offset=past)
        keys, values = [], []
        for i, block in enumerate(self.layers):
            x, (k, v) = block.extend(
                x, bias, rope, None if cache is None else cache.layer(i), control.layers[i] if control else None
            )
            keys.append(k)
            values.append(v)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return x, KVCache(tuple(keys), tuple(values), full_mask)

    def logits(self, hidden: Tensor, control: ModelControl | None = None) -> Tensor:
        """Next-token logits (..., vocab) of last hidden states: the LM head tied to the word embeddings."""
        if self.dims.family != "llama":
            raise ModelError(f"logits: the LM head belongs to decoders (llama family), not {self.dims.family!r}")
        fn = control.embed_weight if control else None
        word = self.embed.word.weight if fn is None else fn(self.embed.word.weight)
        return F.linear(hidden, word)


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Sentence embedding: mean of token states over non-padding tokens (sentence-transformers)."""
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
