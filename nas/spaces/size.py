"""Bytes of each block of a derived subnet, from shapes alone: the one copy of the size formula.

A derived subnet is stored as blocks that the latency table prices one by one
(same kinds as its keys, :mod:`nas.latency.table`)::

    embed   the word-embedding matrix at its bits (scales included)
    attn    q, k, v, o of one layer at ``width`` heads and its bits, plus fp32 biases
    ffn     up, down (and gate for llama) of one layer at ``width`` units and its bits, plus fp32 biases
    rest    fp32 parameters outside the layers: position and token-type embeddings
            and the embedding LayerNorm (bert), the final RMSNorm (llama)
    norms   fp32 norms of one kept layer: two LayerNorms (weight, bias) or two RMSNorms (weight)

so a subnet's bytes are ``embed + rest + Σ_kept (attn + ffn + norms)``
(:func:`nas.latency.size_bytes`), equal to ``derive(net, arch).size().bytes``.

Example:
    >>> from nas.spaces import load_space
    >>> d = load_space("tiny-bert").dims
    >>> block_bytes(d, "ffn", d.intermediate, 32) == 4 * (2 * d.hidden * d.intermediate + d.intermediate + d.hidden)
    True
"""

from __future__ import annotations

from typing import Any

from nas.quant import weight_bytes

BLOCK_KINDS = ("embed", "attn", "ffn", "rest", "norms")


def block_bytes(dims: Any, kind: str, width: int = 0, bits: int = 32) -> int:
    """Bytes of one block of kind ``kind`` (see the module docstring) of a model with ``dims``.

    Args:
        dims: the model's :class:`~nas.models.dims.ModelDims`.
        kind: one of ``embed``, ``attn``, ``ffn``, ``rest``, ``norms``.
        width: heads (``attn``) or intermediate units (``ffn``); ignored otherwise.
        bits: the weights' bits (``embed``, ``attn``, ``ffn``); ``rest`` and ``norms`` are fp32.

    Returns:
        The bytes, scales and fp32 biases included.

    Raises:
        ValueError: an unknown ``kind``.
    """
    d = dims
    if kind == "embed":
        return weight_bytes((d.vocab_size, d.hidden), bits)
    if kind == "attn":
        q, kv = width * d.head_dim, width // d.group_size * d.head_dim
        total = sum(weight_bytes(s, bits) for s in ((q, d.hidden), (kv, d.hidden), (kv, d.hidden), (d.hidden, q)))
        return total + 4 * ((q + 2 * kv if d.attn_bias else 0) + (d.hidden if d.o_bias else 0))
    if kind == "ffn":
        mats = [(width, d.hidden), (d.hidden, width)] + ([(width, d.hidden)] if d.family == "llama" else [])
        total = sum(weight_bytes(s, bits) for s in mats)
        return total + 4 * (width * (len(mats) - 1) + d.hidden if d.mlp_bias else 0)
    if kind == "rest":
        if d.family == "bert":
            return 4 * (d.max_positions * d.hidden + max(d.type_vocab_size, 1) * d.hidden + 2 * d.hidden)
        return 4 * d.hidden
    if kind == "norms":
        return 4 * (4 if d.family == "bert" else 2) * d.hidden
    raise ValueError(f"kind: {kind!r} is not one of {', '.join(BLOCK_KINDS)}")
