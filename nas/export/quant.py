"""Apply a subnet's per-layer bit-widths to its fp32 ONNX graph with onnxruntime's quantization tools.

Per named weight node (see :mod:`nas.export.graph`):

* 4 bits – ``MatMulNBitsQuantizer`` (block 32, symmetric): a ``MatMulNBits`` node;
* 8 bits – ``quantize_dynamic`` (per-channel symmetric int8 weights, dynamic
  uint8 activations) on exactly those nodes;
* 16 bits – the weight stored as fp16 and cast to fp32 before the MatMul/Gather
  (onnxruntime's CPU kernels compute in fp32);
* 32 bits, or a format the node does not support – left fp32 (the subnet's
  weights already lie on the chosen grid, so nothing is lost).

Interim: the ``lut`` branch owns ``nas/export/quantize.py``; this module is
replaced by it once merged.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from nas.errors import ExportError
from nas.supernet.quant import INT4_BLOCK


def bits_by_node(subnet, nodes: Mapping[str, str]) -> dict[str, int]:
    """``{node: bits}`` from a subnet's architecture and ``{node: bits label}``."""
    return {node: int(subnet.space.value(subnet.arch, label)) for node, label in nodes.items()}


def quantize(fp32_path: str | Path, out_path: str | Path, bits: Mapping[str, int]) -> dict[str, str]:
    """Write ``out_path``: ``fp32_path`` with each named node at its bits.

    Returns:
        ``{node: applied format}``, one of ``int4``, ``int8``, ``fp16``, ``fp32``
        (``fp32`` also where the chosen format is not supported for that node,
        e.g. 4-bit embeddings).

    Raises:
        ExportError: a node in ``bits`` is not in the graph, or a bit-width is unknown.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    model = onnx.load(str(fp32_path))
    ops = {n.name: n.op_type for n in model.graph.node}
    for node, b in bits.items():
        if node not in ops:
            raise ExportError(f"quantize: node {node!r} not in {fp32_path}")
        if b not in (32, 16, 8, 4):
            raise ExportError(f"quantize: {node}: unsupported bit-width {b}")
    applied = {node: "fp32" for node in bits}
    int4 = sorted(n for n, b in bits.items() if b == 4 and ops[n] == "MatMul")
    int8 = sorted(n for n, b in bits.items() if b == 8)
    fp16 = sorted(n for n, b in bits.items() if b == 16)
    if fp16:
        _to_fp16(model, fp16)
        applied.update({n: "fp16" for n in fp16})
    if int4:
        # nodes_to_include does not restrict (any MatMul qualifies); exclude every other node.
        others = [n.name for n in model.graph.node if n.name not in int4]
        q = MatMulNBitsQuantizer(
            model, bits=4, block_size=INT4_BLOCK, is_symmetric=True, nodes_to_include=int4, nodes_to_exclude=others,
            op_types_to_quantize=("MatMul",),
        )
        q.process()
        model = q.model.model
        applied.update({n: "int4" for n in int4})
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        stage = Path(tmp) / "stage.onnx"
        onnx.save(model, str(stage))
        if int8:
            root = logging.getLogger()
            level = root.level
            root.setLevel(logging.ERROR)  # quantize_dynamic logs advice on the root logger
            try:
                quantize_dynamic(
                    str(stage), str(Path(tmp) / "q8.onnx"), nodes_to_quantize=int8,
                    op_types_to_quantize=["MatMul", "Gather"], per_channel=True, weight_type=QuantType.QInt8,
                )
            finally:
                root.setLevel(level)
            os.replace(Path(tmp) / "q8.onnx", stage)
            applied.update({n: "int8" for n in int8})
        os.replace(stage, out_path)
    return applied


def _to_fp16(model, nodes: list[str]) -> None:
    """Store the weight initializer of each node as fp16 with a Cast back to fp32 in front."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    casts = []
    for n in g.node:
        if n.name not in nodes:
            continue
        pos = 1 if n.op_type == "MatMul" else 0
        name = n.input[pos]
        arr = numpy_helper.to_array(inits[name]).astype(np.float16)
        half = f"{n.name}.weight_fp16"
        g.initializer.append(numpy_helper.from_array(arr, half))
        casts.append(helper.make_node("Cast", [half], [f"{half}_fp32"], name=f"{n.name}/cast", to=TensorProto.FLOAT))
        n.input[pos] = f"{half}_fp32"
    used = {i for n in g.node for i in n.input}
    keep = [i for i in g.initializer if i.name in used or i.name.endswith("_fp16")]
    del g.initializer[:]
    g.initializer.extend(keep)
    for c in reversed(casts):
        g.node.insert(0, c)
