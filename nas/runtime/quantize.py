"""Quantize chosen nodes of an ONNX graph with onnxruntime's own tools.

Per node (a MatMul named after its linear, or the ``embed.word`` Gather, see
:mod:`nas.runtime.onnx`) the bits mean what they mean in the supernet
(:mod:`nas.quant`):

* 32 – left in fp32;
* 16 – the weight stored as fp16 followed by a ``Cast`` to fp32. onnxruntime's
  CPU provider has no fp16 MatMul kernel on x86, so at session start the Cast
  of the constant is folded and the MatMul runs in fp32: the file is half the
  size, the latency is fp32's (and that is what the latency table measures);
* 8 – ``quantize_dynamic``: int8 weights, symmetric, one scale per output
  channel, activations quantized per tensor at run time (``MatMulInteger``);
  or, for the MatMuls named in ``int8_nbits`` (a decoder's layers, see
  :func:`nas.runtime.decoder_onnx.int8_nbits_nodes`), 8-bit ``MatMulNBits``
  at :data:`INT8_NBITS_LEVEL` whose blocks of 32 input features all carry
  their output channel's scale: the same per-channel grid, so the same
  weights, with activations quantized per block of 32 instead of per tensor
  (see :data:`INT8_NBITS_LEVEL`); for the embedding Gather, int8 weights read by the Gather and then, in place of the
  per-tensor ``DequantizeLinear`` it writes, one scale per row (the supernet's
  grid, :func:`_embed_int8_onto_supernet_grid`);
* 4 – ``MatMulNBitsQuantizer``: symmetric int4 in blocks of 32 input features
  (``MatMulNBits``; ``GatherBlockQuantized`` for the embedding); the MatMul
  codes and scales are then set to the supernet's grid (−7..7, ``absmax/7``,
  see :func:`_onto_supernet_grid`), so the graph computes with exactly the
  derived subnet's weights.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from nas.errors import ExportError
from nas.runtime.onnx import EMBED_NODE, save_checked
from nas.quant import INT4_BLOCK, grid_scales

BITS = (32, 16, 8, 4)
INT8_NBITS_LEVEL = 4
"""``MatMulNBits`` accuracy level of 8-bit nodes (int8 compute, activations quantized per block at run time).

Full SmolLM2 on a 2-core AVX-512 VNNI EPYC, onnxruntime 1.32, 1 thread, 128-token prompt, every layer
linear at int8 (``experiments/reports/generation_latency_int8nb_speed_d929245201f4.md``): level 4 runs
14.5 ms per token and 242 ms to the first token, level 0 (fp32 compute) 156 and 456 ms; ``MatMulInteger``
14.6 and 118 ms, but its per-tensor activations leave 52 % of next-token argmaxes equal to fp32's and
perplexity +74 %, where level 4 keeps 87 % and +1.4 %.
"""
_ATTN = ("q", "k", "v", "o")
_FFN = ("gate", "up", "down")


def bits_by_node(subnet: Any) -> dict[str, int]:
    """``{node name: bits}`` of a derived ``Subnet``'s exported graph, from its architecture.

    Node ``layers.{k}.attn.q`` takes ``layer{i}.attn.bits`` of the original layer
    ``i`` that kept layer ``k`` comes from; ``embed.word`` takes ``embed.bits``.
    """
    space, arch, model = subnet.space, subnet.arch, subnet.model
    out = {EMBED_NODE: space.value(arch, "embed.bits")}
    for k, ld in enumerate(model.layer_dims):
        a = space.value(arch, f"layer{ld.index}.attn.bits")
        f = space.value(arch, f"layer{ld.index}.ffn.bits")
        for name in _ATTN:
            out[f"layers.{k}.attn.{name}"] = a
        for name in _FFN:
            if hasattr(model.layers[k].ffn, name):
                out[f"layers.{k}.ffn.{name}"] = f
    return out


def _check(proto: Any, bits: Mapping[str, int], int8_nbits: Collection[str]) -> None:
    nodes = {n.name: n for n in proto.graph.node}
    inits = {i.name for i in proto.graph.initializer}
    for name in sorted(int8_nbits):
        op = nodes[name].op_type if name in nodes else "missing"
        if bits.get(name) != 8 or op != "MatMul":
            raise ExportError(f"{name}: int8_nbits names an 8-bit MatMul, got bits {bits.get(name)!r} on a {op} node")
    for name, b in bits.items():
        if b not in BITS:
            raise ExportError(f"{name}: unsupported bits {b!r} (supported: {list(BITS)})")
        node = nodes.get(name)
        if node is None or node.op_type not in ("MatMul", "Gather"):
            raise ExportError(f"{name}: no MatMul or Gather node of that name in the graph")
        weight = node.input[1] if node.op_type == "MatMul" else node.input[0]
        if b < 32 and weight not in inits:
            raise ExportError(f"{name}: its weight is not a constant initializer, cannot quantize")


def _to_fp16(proto: Any, names: list[str]) -> Any:
    """Store the weights of ``names`` as fp16, each followed by a Cast to fp32."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    casts = []
    for node in graph.node:
        if node.name not in names:
            continue
        pos = 1 if node.op_type == "MatMul" else 0
        w = inits[node.input[pos]]
        half = numpy_helper.from_array(numpy_helper.to_array(w).astype(np.float16), f"{w.name}.fp16")
        graph.initializer.remove(w)
        graph.initializer.append(half)
        cast_out = f"{w.name}.fp32"
        casts.append(helper.make_node("Cast", [half.name], [cast_out], name=f"{node.name}.cast", to=TensorProto.FLOAT))
        node.input[pos] = cast_out
    # Casts read only initializers, so they can go first (topological order holds).
    for c in reversed(casts):
        graph.node.insert(0, c)
    return proto


def _matmul_weights(proto: Any, names: list[str]) -> dict[str, Any]:
    """``{node: B}`` (the fp32 ``K×N`` right operand) of the named MatMul nodes."""
    from onnx import numpy_helper

    inits = {i.name: i for i in proto.graph.initializer}
    return {n.name: numpy_helper.to_array(inits[n.input[1]]) for n in proto.graph.node
            if n.name in names and n.op_type == "MatMul"}


def _gather_weight(proto: Any) -> Any:
    """The fp32 table of the embedding Gather."""
    from onnx import numpy_helper

    inits = {i.name: i for i in proto.graph.initializer}
    node = next(n for n in proto.graph.node if n.name == EMBED_NODE)
    return numpy_helper.to_array(inits[node.input[0]])


def _onto_supernet_grid(proto: Any, weights: Mapping[str, Any], bits: int) -> None:
    """Rewrite each ``bits``-bit ``MatMulNBits`` node's codes and scales onto :mod:`nas.quant`'s grid.

    ``MatMulNBitsQuantizer`` (symmetric) picks ``scale = absmax/2^(bits−1)`` per block and codes
    ``−2^(bits−1)..2^(bits−1)−1``; the supernet uses ``−qmax..qmax`` (``qmax`` 7 per block of
    :data:`INT4_BLOCK` at 4 bits, 127 per output channel at 8 bits: every block of a channel then
    carries the channel's scale), :func:`grid_scales` recovering each scale. Same node, same kernel
    (so the same latency), but the graph then computes with exactly the derived subnet's weights:
    codes ``q + 2^(bits−1)`` (the kernel's implied zero point), two per byte (low nibble first) at 4 bits.
    """
    import numpy as np
    from onnx import numpy_helper

    inits = {i.name: i for i in proto.graph.initializer}
    suffix, zero, qmax = f"_Q{bits}", 2 ** (bits - 1), 2 ** (bits - 1) - 1
    for node in proto.graph.node:
        if node.op_type != "MatMulNBits" or not node.name.endswith(suffix) or node.name[:-3] not in weights:
            continue
        w = weights[node.name[:-3]].T.astype(np.float64)  # (N, K): output channels × input features
        n_out, k = w.shape
        blocks = -(-k // INT4_BLOCK)
        padded = np.zeros((n_out, blocks * INT4_BLOCK))
        padded[:, :k] = w
        grouped = padded.reshape(n_out * blocks, INT4_BLOCK)
        if bits == 4:
            scale = grid_scales(grouped, qmax)
        else:
            scale = np.repeat(grid_scales(w, qmax), blocks)
        codes = (np.clip(np.round(grouped / scale[:, None]), -qmax, qmax) + zero).astype(np.uint8)
        codes = codes.reshape(n_out, blocks, INT4_BLOCK)
        packed = codes[..., 0::2] | (codes[..., 1::2] << 4) if bits == 4 else codes
        b_init, s_init = inits[node.input[1]], inits[node.input[2]]
        old_b, old_s = numpy_helper.to_array(b_init), numpy_helper.to_array(s_init)
        b_init.CopyFrom(numpy_helper.from_array(packed.reshape(old_b.shape).astype(np.uint8), b_init.name))
        s_init.CopyFrom(numpy_helper.from_array(scale.astype(old_s.dtype).reshape(old_s.shape), s_init.name))


def _int8_onto_supernet_grid(proto: Any, weights: Mapping[str, Any]) -> None:
    """Set ``quantize_dynamic``'s per-channel int8 codes and scales to the derived weights' own grid.

    For a MatMul weight ``W`` (``K×N``) the quantizer writes ``<W>_quantized``
    (int8) and ``<W>_scale`` (N); with :func:`grid_scales` they encode exactly the
    subnet's weights even where ``derive`` sliced a row after quantizing it.
    """
    import numpy as np
    from onnx import numpy_helper

    inits = {i.name: i for i in proto.graph.initializer}
    for name, b in weights.items():
        q_init, s_init = inits.get(f"{name}_quantized"), inits.get(f"{name}_scale")
        if q_init is None or s_init is None or numpy_helper.to_array(s_init).size != b.shape[1]:
            continue
        w = b.T.astype(np.float64)  # (N, K)
        scale = grid_scales(w, 127)
        codes = np.clip(np.round(w / scale[:, None]), -127, 127).astype(np.int8).T
        q_init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(codes), q_init.name))
        old = numpy_helper.to_array(s_init)
        s_init.CopyFrom(numpy_helper.from_array(scale.astype(old.dtype).reshape(old.shape), s_init.name))


def _embed_int8_onto_supernet_grid(proto: Any, weight: Any) -> None:
    """Give ``quantize_dynamic``'s int8 embedding Gather the supernet's grid: int8 codes, one scale per row.

    ``quantize_dynamic`` quantizes a Gather's table per tensor (uint8, one scale
    and zero point); the supernet puts each token's row on its own symmetric
    grid (``absmax/127``). The Gather keeps reading int8 codes; the scalar
    ``DequantizeLinear`` after it becomes ``Cast`` × the gathered row scales
    (a second Gather on the same ids), so the graph computes with exactly the
    subnet's embedding.
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    gather = next((n for n in graph.node if n.name == EMBED_NODE and n.op_type == "Gather"), None)
    if gather is None:
        raise ExportError(f"{EMBED_NODE}: no int8 Gather after quantize_dynamic")
    deq = next((n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] == gather.output[0]), None)
    if deq is None:
        raise ExportError(f"{EMBED_NODE}: no DequantizeLinear after the int8 Gather")
    w = np.asarray(weight, dtype=np.float64)
    scale = grid_scales(w, 127)
    codes = np.clip(np.round(w / scale[:, None]), -127, 127).astype(np.int8)
    inits = {i.name: i for i in graph.initializer}
    inits[gather.input[0]].CopyFrom(numpy_helper.from_array(codes, gather.input[0]))
    for name in deq.input[1:]:
        if name in inits and sum(name in n.input for n in graph.node) == 1:
            graph.initializer.remove(inits[name])
    scale_name = f"{EMBED_NODE}.weight_row_scale"
    graph.initializer.append(numpy_helper.from_array(scale.astype(np.float32)[:, None], scale_name))
    out = deq.output[0]
    new = [
        helper.make_node("Gather", [scale_name, gather.input[1]], [f"{scale_name}.gathered"], name=f"{EMBED_NODE}.scale"),
        helper.make_node("Cast", [gather.output[0]], [f"{out}.float"], name=f"{EMBED_NODE}.to_float", to=TensorProto.FLOAT),
        helper.make_node("Mul", [f"{out}.float", f"{scale_name}.gathered"], [out], name=f"{EMBED_NODE}.dequant"),
    ]
    at = list(graph.node).index(deq)
    graph.node.remove(deq)
    for k, node in enumerate(new):
        graph.node.insert(at + k, node)


def quantize_onnx(
    fp32_path: str | Path,
    out_path: str | Path,
    bits_by_node: Mapping[str, int],
    *,
    accuracy_level: int | None = None,
    int8_nbits: Collection[str] = (),
) -> Path:
    """Quantize the named nodes of an fp32 ONNX file (see module docstring).

    Args:
        fp32_path: the exported fp32 model (:func:`nas.runtime.onnx.export_onnx`).
        out_path: where to write the quantized model (atomically; checked with ``onnx.checker``).
        bits_by_node: ``{node name: bits}``; nodes not listed stay fp32.
        accuracy_level: int4 ``MatMulNBits`` compute accuracy (None: onnxruntime's default, fp32).
        int8_nbits: 8-bit MatMul nodes written as 8-bit ``MatMulNBits`` at :data:`INT8_NBITS_LEVEL`
            instead of ``MatMulInteger`` (see module docstring).

    Returns:
        ``out_path``.

    Raises:
        ExportError: a node is missing, its weight is not constant, bits are unsupported, or an
            ``int8_nbits`` node is not an 8-bit MatMul.
    """
    import onnx

    proto = onnx.load(str(fp32_path))
    _check(proto, bits_by_node, int8_nbits)
    logging.disable(logging.WARNING)  # the quantizers log every tensor on the root logger
    try:
        return _quantize(proto, Path(out_path), bits_by_node, accuracy_level, set(int8_nbits))
    finally:
        logging.disable(logging.NOTSET)


def nbits_quantize(proto: Any, nodes: list[str], *, bits: int, accuracy_level: int | None,
                   op_types: tuple[str, ...] = ("MatMul",), symmetric: bool = True) -> Any:
    """``proto`` with exactly the named ``nodes`` as ``MatMulNBits`` (``GatherBlockQuantized`` for a Gather):
    symmetric ``bits``-bit codes, one scale per block of ``INT4_BLOCK`` input features, at ``accuracy_level``
    (onnxruntime's own grid; :func:`quantize_onnx` then moves int4 onto the supernet's). ``symmetric=False``:
    onnxruntime's asymmetric grid (min..max of each block over the codes, an integer zero point per block;
    studies only, export writes the symmetric one)."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    q = MatMulNBitsQuantizer(
        proto, bits=bits, block_size=INT4_BLOCK, is_symmetric=symmetric, accuracy_level=accuracy_level,
        nodes_to_include=nodes, op_types_to_quantize=op_types,
        # ``nodes_to_include`` adds to the op types; excluding the rest restricts to the list.
        nodes_to_exclude=[n.name for n in proto.graph.node if n.name not in set(nodes)],
    )
    q.process()
    return q.model.model


def _quantize(proto: Any, out_path: Path, bits_by_node: Mapping[str, int], accuracy_level: int | None,
              int8_nbits: set[str]) -> Path:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    by_bits = {b: sorted(n for n, v in bits_by_node.items() if v == b and n not in int8_nbits) for b in BITS}
    with tempfile.TemporaryDirectory() as tmp:
        if by_bits[4]:
            types = ("MatMul", "Gather") if EMBED_NODE in by_bits[4] else ("MatMul",)
            fp32_weights = _matmul_weights(proto, by_bits[4])
            proto = nbits_quantize(proto, by_bits[4], bits=4, accuracy_level=accuracy_level, op_types=types)
            _onto_supernet_grid(proto, fp32_weights, 4)
        if int8_nbits:
            nodes = sorted(int8_nbits)
            fp32_weights = _matmul_weights(proto, nodes)
            proto = nbits_quantize(proto, nodes, bits=8, accuracy_level=INT8_NBITS_LEVEL)
            _onto_supernet_grid(proto, fp32_weights, 8)
        if by_bits[8]:
            src, dst = Path(tmp) / "in.onnx", Path(tmp) / "int8.onnx"
            weights = _matmul_weights(proto, by_bits[8])
            int8_weights = {n.input[1]: weights[n.name] for n in proto.graph.node if n.name in weights}
            embed = _gather_weight(proto) if EMBED_NODE in by_bits[8] else None
            onnx.save_model(proto, str(src))
            quantize_dynamic(
                str(src), str(dst), per_channel=True, reduce_range=False, weight_type=QuantType.QInt8,
                nodes_to_quantize=by_bits[8], op_types_to_quantize=["MatMul", "Gather"],
                extra_options={"WeightSymmetric": True, "MatMulConstBOnly": True},
            )
            proto = onnx.load(str(dst))
            _int8_onto_supernet_grid(proto, int8_weights)
            if embed is not None:
                _embed_int8_onto_supernet_grid(proto, embed)
        if by_bits[16]:
            proto = _to_fp16(proto, by_bits[16])
    return save_checked(proto, out_path)


def node_kinds(path: str | Path) -> dict[str, int]:
    """Count of each op type in an ONNX file (what the quantizers produced)."""
    import onnx

    counts: dict[str, int] = {}
    for n in onnx.load(str(path)).graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return counts
