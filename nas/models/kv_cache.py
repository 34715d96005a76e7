"""Key/value cache for incremental decoding with Llama-family (decoder) models.

The API is one method, :meth:`nas.models.transformer.TransformerModel.extend`,
that runs new tokens after the cached ones and returns a new cache::

    hidden, cache = model.extend(prompt_ids, attention_mask)   # prefill (cache=None)
    logits = model.logits(hidden[:, -1])                       # tied LM head: hidden @ embed.word.weightᵀ
    hidden, cache = model.extend(next_ids, cache=cache)        # decode step, next_ids (B, 1)

:func:`nas.models.generate.greedy_generate` is the loop around it.

A :class:`KVCache` holds, for every kept layer ``k`` of the model that made it,
the keys (after rotary embedding) and the values of every token seen so far,
each ``(B, kv_heads_k, T_past, head_dim)`` — a derived subnet's layers keep
different numbers of KV heads, so the shapes differ per layer — and the
attention mask of those tokens, ``(B, T_past)``. New tokens get the rotary
positions ``T_past, T_past + 1, …`` (``cache.length`` is the RoPE offset): the
positions an uncached :meth:`~nas.models.transformer.TransformerModel.forward`
over the whole sequence gives them, so cached decoding computes the uncached
forward, token for token. Positions count columns, as ``forward`` does: in a
padded batch every row's positions start at column 0 (padding is masked out of
attention, but it is not skipped when counting positions), so batched
generation that is to match transformers uses prompts of one length.

A cache is a value: ``extend`` never changes the cache it is given, so one
prompt's cache can seed several continuations. ``extend`` raises
:class:`~nas.errors.ConfigError` before computing anything when the cached
plus the new tokens exceed the model's ``max_positions``, or when the cache
was made by a model with other layers or for another batch size.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class KVCache:
    """Per-layer keys and values of the tokens seen so far, and their attention mask.

    Attributes:
        keys: per kept layer, ``(B, kv_heads, T_past, head_dim)``, rotary embedding applied.
        values: per kept layer, ``(B, kv_heads, T_past, head_dim)``.
        mask: ``(B, T_past)``, 1 for a real token, 0 for padding.
    """

    keys: tuple[Tensor, ...]
    values: tuple[Tensor, ...]
    mask: Tensor

    def __post_init__(self) -> None:
        if len(self.keys) != len(self.values):
            raise ValueError(f"KVCache: {len(self.keys)} key tensors but {len(self.values)} value tensors")

    @property
    def length(self) -> int:
        """Tokens cached (per row, padding included): the rotary position of the next token."""
        return int(self.mask.shape[1])

    @property
    def batch_size(self) -> int:
        return int(self.mask.shape[0])

    @property
    def num_layers(self) -> int:
        return len(self.keys)

    def layer(self, k: int) -> tuple[Tensor, Tensor]:
        """``(keys, values)`` of kept layer ``k``."""
        return self.keys[k], self.values[k]

    def nbytes(self) -> int:
        """Memory held by the keys and values."""
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))
