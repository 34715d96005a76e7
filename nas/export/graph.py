"""A subnet as an fp32 ONNX graph whose weight MatMuls are named by their choice label.

Node names (the keys of ``bits_by_node`` and of the manifest)::

    layer{i}.attn.{q,k,v,o}     layer{i}.ffn.{up,down,gate}     embed.word

``i`` is the layer's index in the *original* model, so ``layer3.attn.q`` is
quantized with the bits chosen for ``layer3.attn.bits``. The graph takes
``input_ids`` and ``attention_mask`` (int64, dynamic batch and sequence axes)
and returns ``last_hidden_state``.

Interim: the ``lut`` branch owns ONNX export (``nas/export/onnx.py``); this
module is replaced by it once merged.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nas.errors import ExportError
from nas.spaces.choice import layer_label

OPSET = 17
INPUTS = ("input_ids", "attention_mask")
OUTPUT = "last_hidden_state"


class _Graph(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model(input_ids, attention_mask)


def weight_nodes(subnet: Any) -> dict[str, tuple[str, str]]:
    """``{node name: (parameter name, bits label)}`` for every weight the bit choices act on."""
    out: dict[str, tuple[str, str]] = {"embed.word": ("embed.word.weight", "embed.bits")}
    for k, ld in enumerate(subnet.model.layer_dims):
        for name in ("q", "k", "v", "o"):
            out[f"layer{ld.index}.attn.{name}"] = (f"layers.{k}.attn.{name}.weight", layer_label(ld.index, "attn.bits"))
        names = ("gate", "up", "down") if subnet.model.layers[k].ffn.gated else ("up", "down")
        for name in names:
            out[f"layer{ld.index}.ffn.{name}"] = (f"layers.{k}.ffn.{name}.weight", layer_label(ld.index, "ffn.bits"))
    return out


def export_fp32(subnet: Any, path: str | Path) -> dict[str, str]:
    """Write ``subnet`` as fp32 ONNX to ``path``; name its weight nodes (see module docstring).

    Returns:
        ``{node name: bits label}`` for every named weight node.

    Raises:
        ExportError: a weight of the subnet has no MatMul/Gather node in the graph.
    """
    import onnx
    from onnx import numpy_helper

    path = Path(path)
    ids = torch.ones(2, 8, dtype=torch.long)
    mask = torch.ones_like(ids)
    axes = {n: {0: "batch", 1: "seq"} for n in (*INPUTS, OUTPUT)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Graph(subnet.model).eval(), (ids, mask), str(path), input_names=list(INPUTS), output_names=[OUTPUT],
            dynamic_axes=axes, opset_version=OPSET, dynamo=False, do_constant_folding=True,
        )
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    state = dict(subnet.model.state_dict())
    wanted = weight_nodes(subnet)
    # A weight MatMul multiplies by the transposed parameter (constant-folded), a Gather
    # reads the embedding table; match them by exact value.
    by_shape: dict[tuple[int, ...], list[str]] = {}
    for node, (param, _) in wanted.items():
        w = state[param].detach().numpy()
        key = tuple(w.shape) if node == "embed.word" else tuple(w.T.shape)
        by_shape.setdefault(key, []).append(node)
    found: dict[str, str] = {}
    for n in model.graph.node:
        if n.op_type not in ("MatMul", "Gather") or len(n.input) < 2:
            continue
        init_name = n.input[1] if n.op_type == "MatMul" else n.input[0]
        if init_name not in inits:
            continue
        arr = numpy_helper.to_array(inits[init_name])
        for node in by_shape.get(tuple(arr.shape), []):
            if node in found.values():
                continue
            w = state[wanted[node][0]].detach().numpy()
            if (n.op_type == "Gather") != (node == "embed.word"):
                continue
            if (arr == (w if node == "embed.word" else w.T)).all():
                found[n.name] = node
                break
    missing = sorted(set(wanted) - set(found.values()))
    if missing:
        raise ExportError(f"onnx: no graph node found for weight(s) {', '.join(missing[:4])}")
    for n in model.graph.node:
        if n.name in found:
            n.name = found[n.name]
    tmp = path.with_name(f".{path.name}.tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, path)
    return {node: wanted[node][1] for node in found.values()}
