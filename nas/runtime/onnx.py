"""Export models and single blocks to ONNX with one named MatMul per linear.

Every ``nn.Linear`` weight of the exported module becomes the constant right
operand of one ``MatMul`` node whose name is the module path of that linear
(the parameter name without ``.weight``), e.g. ``layers.3.attn.q`` or
``layers.0.ffn.down``; its initializer is renamed ``<path>.weight_t`` (the
transposed weight). The word-embedding lookup is the ``Gather`` node
``embed.word``. Quantization targets exactly these names
(:func:`nas.runtime.quantize.quantize_onnx`).

Whole models take ``input_ids`` and ``attention_mask`` (int64, dynamic batch
and sequence axes) and return ``last_hidden_state``. The TorchScript-based
exporter (``dynamo=False``) is used: it runs offline, is about 4x faster than
the dynamo exporter on MiniLM, and the names above are assigned after export by
matching each weight, so they do not depend on the exporter's own naming.
"""

from __future__ import annotations

import hashlib
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nas.errors import ExportError
from nas.files import atomic_file

OPSET = 17
MODEL_INPUTS = ("input_ids", "attention_mask")
EMBED_NODE = "embed.word"


def _digest(a: Any) -> str:
    import numpy as np

    a = np.ascontiguousarray(a, dtype=np.float32)
    return hashlib.sha1(a.tobytes() + str(a.shape).encode()).hexdigest()


def linear_names(module: nn.Module) -> list[str]:
    """Module paths of every ``nn.Linear`` in ``module`` (the MatMul node names after export)."""
    return [name for name, m in module.named_modules() if isinstance(m, nn.Linear)]


def name_nodes(proto: Any, module: nn.Module) -> Any:
    """Rename the MatMul of every linear (and the embedding Gather) of ``module`` in ``proto``.

    Matches each MatMul's constant right operand with a linear's transposed weight.

    Raises:
        ExportError: a linear of ``module`` has no MatMul in the graph.
    """
    from onnx import numpy_helper

    graph = proto.graph
    by_digest: dict[str, list[str]] = {}
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear):
            by_digest.setdefault(_digest(m.weight.detach().T.numpy()), []).append(name)
    embed_digest = None
    for name, m in module.named_modules():
        if isinstance(m, nn.Embedding) and (name.endswith("word") or name == "word"):
            embed_digest = _digest(m.weight.detach().numpy())
    inits = {i.name: i for i in graph.initializer}
    digests = {n: _digest(numpy_helper.to_array(i)) for n, i in inits.items() if i.data_type == 1}
    renamed_init: dict[str, str] = {}
    found: set[str] = set()
    for node in graph.node:
        if node.op_type == "MatMul" and node.input[1] in digests:
            names = by_digest.get(digests[node.input[1]])
            if names:
                node.name = names.pop(0)
                found.add(node.name)
                if node.input[1] not in renamed_init:
                    renamed_init[node.input[1]] = f"{node.name}.weight_t"
        elif node.op_type == "Gather" and embed_digest and digests.get(node.input[0]) == embed_digest:
            node.name = EMBED_NODE
            if node.input[0] not in renamed_init:
                renamed_init[node.input[0]] = f"{EMBED_NODE}.weight"
    missing = [n for n in linear_names(module) if n not in found]
    if missing:
        raise ExportError(f"{missing[0]}: no MatMul with this linear's weight in the exported graph")
    for old, new in renamed_init.items():
        inits[old].name = new
        for node in graph.node:
            for k, name in enumerate(node.input):
                if name == old:
                    node.input[k] = new
    return proto


def save_checked(proto: Any, path: str | Path) -> Path:
    """Save an ONNX ``proto`` to ``path`` atomically, landing only if ``onnx.checker`` accepts the file.

    Returns:
        ``path`` (as a ``Path``).
    """
    import onnx

    path = Path(path)
    with atomic_file(path, suffix=".onnx") as tmp:
        onnx.save_model(proto, str(tmp))
        onnx.checker.check_model(str(tmp))
    return path


def export_module(
    module: nn.Module,
    path: str | Path,
    *,
    inputs: Mapping[str, Tensor],
    output_names: Sequence[str] = ("output",),
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
    opset: int = OPSET,
) -> Path:
    """Export ``module(*inputs.values())`` to ONNX with named MatMul nodes (see module docstring).

    Args:
        module: any module whose forward takes the tensors of ``inputs`` positionally.
        path: the ``.onnx`` file to write (atomically; checked with ``onnx.checker``).
        inputs: example inputs by ONNX input name.
        output_names: ONNX output names.
        dynamic_axes: per input/output name, the dynamic axes and their names.
        opset: ONNX opset (at least 17).

    Returns:
        ``path``.

    Raises:
        ExportError: the exporter failed or a linear has no MatMul node.
    """
    import onnx

    if opset < 17:
        raise ExportError(f"opset: {opset} is below 17")
    path = Path(path)
    module = module.eval()
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    module, tuple(inputs.values()), str(raw), input_names=list(inputs),
                    output_names=list(output_names), dynamic_axes=dict(dynamic_axes or {}),
                    opset_version=opset, do_constant_folding=True, dynamo=False,
                )
        except Exception as e:  # the exporter raises many types
            raise ExportError(f"onnx export of {type(module).__name__} failed: {e}") from e
        proto = onnx.load(str(raw))
    return save_checked(name_nodes(proto, module), path)


class _Pooled(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        from nas.models.transformer import mean_pool

        h = self.model(input_ids, attention_mask)
        return h, mean_pool(h, attention_mask)


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    batch: int = 1,
    seq: int = 16,
    pooled: bool = False,
    opset: int = OPSET,
) -> Path:
    """Export a ``TransformerModel`` or a ``Subnet`` to ONNX.

    Inputs ``input_ids`` and ``attention_mask`` (int64, dynamic ``batch`` and
    ``sequence`` axes); output ``last_hidden_state`` (and ``sentence_embedding``,
    the mean-pooled states, when ``pooled``). MatMul nodes are named after the
    model's linears, e.g. ``layers.3.attn.q`` (``k`` counts kept layers).

    Args:
        model: the model (a ``Subnet`` is exported through its ``.model``).
        path: the ``.onnx`` file to write atomically.
        batch, seq: shape of the example inputs used for tracing.
        pooled: also output the mean-pooled sentence embedding.
        opset: ONNX opset (≥ 17).

    Returns:
        ``path``.

    Example:
        >>> export_onnx(derive(net, arch), "model.onnx")  # doctest: +SKIP
    """
    inner = getattr(model, "model", model)
    vocab = inner.dims.vocab_size
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, min(vocab, 1000), (batch, seq), generator=g)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    axes = {n: {0: "batch", 1: "sequence"} for n in (*MODEL_INPUTS, "last_hidden_state")}
    outputs: tuple[str, ...] = ("last_hidden_state",)
    module: nn.Module = inner
    if pooled:
        module, outputs = _Pooled(inner), ("last_hidden_state", "sentence_embedding")
        axes["sentence_embedding"] = {0: "batch"}
    proto_path = export_module(module, path, inputs=inputs, output_names=outputs, dynamic_axes=axes, opset=opset)
    if pooled:  # drop the wrapper's "model." prefix from node names
        import onnx

        proto = onnx.load(str(proto_path))
        for node in proto.graph.node:
            if node.name.startswith("model."):
                node.name = node.name[len("model."):]
        for init in proto.graph.initializer:
            if init.name.startswith("model."):
                old, init.name = init.name, init.name[len("model."):]
                for node in proto.graph.node:
                    for k, n in enumerate(node.input):
                        if n == old:
                            node.input[k] = init.name
        save_checked(proto, proto_path)
    return proto_path


def matmul_nodes(path: str | Path) -> dict[str, str]:
    """``{node name: op type}`` of every MatMul/Gather-like node of an ONNX file (for checks)."""
    import onnx

    proto = onnx.load(str(path))
    return {n.name: n.op_type for n in proto.graph.node if n.name}
