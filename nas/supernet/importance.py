"""Order heads and FFN neurons by importance so every width choice is a prefix slice.

Criterion (*output-contribution magnitude*, measured on a calibration batch
with the full model): a head's score is the mean, over non-padding tokens, of
the L2 norm of its contribution to the attention output
``ctx_h · W_o[:, h]ᵀ``; a neuron's score is the mean |activation| times the
L2 norm of its column of the FFN output projection. With grouped-query
attention whole KV groups are ranked by the sum of their query heads' scores.
Reordering permutes rows/columns consistently, so the model computes exactly
the same function afterwards. Both run on the device the model is on (the
calibration batch is moved there).
"""

from __future__ import annotations

import torch
from torch import Tensor

from nas.models.transformer import TransformerModel

CALIBRATION_TEXT = (
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "A compiler translates source code written in one programming language into another.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The committee postponed its decision until the next quarterly meeting.",
    "She played a sonata for violin and piano at the concert hall last night.",
    "Interest rates rose sharply after the central bank announced new measures.",
    "An enzyme is a protein that speeds up a chemical reaction in a living organism.",
    "The hikers reached the summit just before the storm rolled in from the west.",
    "a small domesticated carnivorous mammal with soft fur and retractable claws",
    "the act of moving something from one location to another",
    "a building where people go to worship according to their religion",
    "an instrument for measuring the temperature of a substance",
    "the branch of mathematics concerned with shapes and their properties",
    "a feeling of great pleasure and happiness",
    "a period of time during which a country is ruled by one monarch",
    "a written document that grants a right to an inventor",
)


@torch.no_grad()
def importance_scores(model: TransformerModel, input_ids: Tensor, attention_mask: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Per layer: ``(head_scores (num_heads,), neuron_scores (intermediate,))``, on the model's device."""
    device = model.embed.word.weight.device
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    captured: dict[int, dict[str, tuple]] = {}
    hooks = []
    for i, block in enumerate(model.layers):
        def pre(kind: str, i: int = i):
            def hook(_mod, args):
                captured.setdefault(i, {})[kind] = args
            return hook
        hooks.append(block.attn.register_forward_pre_hook(pre("attn")))
        hooks.append(block.ffn.register_forward_pre_hook(pre("ffn")))
    try:
        model.eval()
        model(input_ids, attention_mask)
    finally:
        for h in hooks:
            h.remove()
    valid = attention_mask.bool()
    d = model.dims.head_dim
    out = []
    for i, block in enumerate(model.layers):
        x, bias, rope = captured[i]["attn"][:3]
        ctx = block.attn.context(x, bias, rope)  # (B, H, T, D)
        wo = block.attn.o.weight  # (hidden, H*D)
        heads = []
        for h in range(block.attn.num_heads):
            contrib = ctx[:, h] @ wo[:, h * d : (h + 1) * d].T  # (B, T, hidden)
            heads.append(contrib.norm(dim=-1)[valid].mean())
        act = block.ffn.activations(captured[i]["ffn"][0])  # (B, T, I)
        neurons = act.abs()[valid].mean(0) * block.ffn.down.weight.norm(dim=0)
        out.append((torch.stack(heads), neurons))
    return out


def _permute_rows(linear: torch.nn.Linear, idx: Tensor) -> None:
    linear.weight.data = linear.weight.data[idx].clone()
    if linear.bias is not None:
        linear.bias.data = linear.bias.data[idx].clone()


def _block_index(order: Tensor, width: int) -> Tensor:
    return (order[:, None] * width + torch.arange(width, device=order.device)[None, :]).reshape(-1)


@torch.no_grad()
def reorder_by_importance(model: TransformerModel, input_ids: Tensor, attention_mask: Tensor) -> dict:
    """Permute every layer's heads and neurons into descending importance, in place.

    Returns:
        ``{layer index: {"heads": order, "ffn": order}}`` (original indices, most important first).
    """
    scores = importance_scores(model, input_ids, attention_mask)
    g, d = model.dims.group_size, model.dims.head_dim
    report = {}
    for block, ld, (hs, ns) in zip(model.layers, model.layer_dims, scores):
        attn, ffn = block.attn, block.ffn
        group_scores = hs.view(attn.num_kv, g).sum(-1)
        kv_order = torch.argsort(group_scores, descending=True, stable=True)
        head_order = _block_index(kv_order, g)
        q_idx = _block_index(head_order, d)
        kv_idx = _block_index(kv_order, d)
        _permute_rows(attn.q, q_idx)
        _permute_rows(attn.k, kv_idx)
        _permute_rows(attn.v, kv_idx)
        attn.o.weight.data = attn.o.weight.data[:, q_idx].clone()
        n_order = torch.argsort(ns, descending=True, stable=True)
        _permute_rows(ffn.up, n_order)
        if ffn.gated:
            _permute_rows(ffn.gate, n_order)
        ffn.down.weight.data = ffn.down.weight.data[:, n_order].clone()
        report[ld.index] = {"heads": head_order.tolist(), "ffn": n_order.tolist()}
    return report
