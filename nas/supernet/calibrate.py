"""What each linear of a model sees on calibration text: the statistics calibrated quantization needs.

:func:`linear_inputs` runs a model on token ids and returns, per linear (keyed by its graph node name,
``layers.{k}.attn.q`` … ``layers.{k}.ffn.down``, as :func:`nas.runtime.quantize.bits_by_node` names them), the
mean square of each input feature — what :func:`nas.quant.clip_int4` weighs a block's error by, and what
:func:`nas.supernet.derive.derive` takes as ``int4_importance`` — or, with ``outer=True``, the mean outer
product ``E[x xᵀ]`` (GPTQ's Hessian, up to a factor). Linears that read the same tensor (q, k, v; gate, up)
get the same statistics.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

INT4_SCALES = ("absmax", "calibrated")
"""How int4 weights get their block scales: ``absmax`` (``absmax/7``, the supernet's fake quantization) or
``calibrated`` (clipped for each linear's output error on calibration text, :func:`nas.quant.clip_int4`)."""

_PARTS = {"attn": ("q", "k", "v", "o"), "ffn": ("gate", "up", "down")}


def linear_nodes(model: Any) -> dict[str, torch.nn.Linear]:
    """``{node name: linear}`` of every layer linear of ``model`` (a ``TransformerModel``)."""
    out = {}
    for k, block in enumerate(model.layers):
        for part, names in _PARTS.items():
            mod = getattr(block, part)
            for name in names:
                lin = getattr(mod, name, None)
                if isinstance(lin, torch.nn.Linear):
                    out[f"layers.{k}.{part}.{name}"] = lin
    return out


@torch.no_grad()
def linear_inputs(model: Any, input_ids: Tensor, attention_mask: Tensor | None = None, *, outer: bool = False,
                  batch: int = 16) -> dict[str, Tensor]:
    """Per layer linear of ``model``, the mean over the unmasked tokens of ``input_ids`` (N × T) of its input's
    squares (``outer=False``: a vector of in-features) or outer products (``outer=True``: in × in), float64.

    The model runs in fp32 as it is, ``batch`` sequences at a time; each ``Attention`` / ``FFN`` routes its
    linears through one overridable method (``linear``), which is wrapped for the pass and restored after.
    """
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    names = {id(lin): node for node, lin in linear_nodes(model).items()}
    sums: dict[str, Tensor] = {}
    count = 0
    keep: Tensor | None = None
    modules = [getattr(block, part) for block in model.layers for part in _PARTS]

    saved = [(mod, vars(mod).get("linear")) for mod in modules]  # an instance may already override it

    def wrap(mod: Any) -> None:
        inner = mod.linear

        def linear(x: Tensor, lin: torch.nn.Linear, weight_fn: Any = None) -> Tensor:
            node = names.get(id(lin))
            if node is not None:
                flat = x.reshape(-1, x.shape[-1])[keep].double()
                stat = flat.T @ flat if outer else flat.pow(2).sum(0)
                sums[node] = sums[node] + stat if node in sums else stat
            return inner(x, lin, weight_fn)

        mod.linear = linear

    was_training = model.training
    for mod in modules:
        wrap(mod)
    try:
        model.eval()
        for at in range(0, input_ids.shape[0], batch):
            ids, mask = input_ids[at:at + batch], attention_mask[at:at + batch]
            keep = mask.reshape(-1).bool()
            count += int(keep.sum())
            model(ids, mask)
    finally:
        model.train(was_training)
        for mod, own in saved:
            if own is None:
                del mod.linear  # back to the class's method
            else:
                mod.linear = own
    return {node: s / max(count, 1) for node, s in sums.items()}
