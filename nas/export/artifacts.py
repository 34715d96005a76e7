"""The files of an exported folder (all but the manifest), and what the quantized graph really holds."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

FP32, QUANT, ARCH_JSON, HF_DIR = "model.onnx", "model.quant.onnx", "arch.json", "hf"


def _log(log: TextIO | None, msg: str) -> None:
    if log is not None:
        print(f"export: {msg}", file=log, flush=True)


def node_labels(subnet: Any) -> dict[str, str]:
    """``{ONNX node name: bits label}``: ``layers.{k}.attn.q`` takes ``layer{i}.attn.bits`` of the original layer ``i``."""
    from nas.runtime.onnx import EMBED_NODE

    out = {EMBED_NODE: "embed.bits"}
    for k, ld in enumerate(subnet.model.layer_dims):
        for name in ("q", "k", "v", "o"):
            out[f"layers.{k}.attn.{name}"] = f"layer{ld.index}.attn.bits"
        for name in ("gate", "up", "down"):
            if hasattr(subnet.model.layers[k].ffn, name):
                out[f"layers.{k}.ffn.{name}"] = f"layer{ld.index}.ffn.bits"
    return out


def applied_formats(quant_path: str | Path, nodes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """What the quantized graph actually holds for each named node, read back from the file.

    The quantizers rename a node ``n`` to ``n_Q4`` / ``n_Q8`` (MatMulNBits, its ``bits``
    attribute saying which) or ``n_quant`` (MatMulInteger), or put ``n.cast`` in front
    (fp16); weights keep ``n.`` as their initializer prefix (an int8 Gather reads
    ``embed.word.weight_quantized``).
    """
    import onnx
    from onnx import TensorProto

    graph = onnx.load(str(quant_path)).graph
    out = {}
    for n in nodes:
        mine = [g for g in graph.node if g.name == n or g.name.startswith((f"{n}_", f"{n}."))]
        ops = sorted({g.op_type for g in mine})
        types = {i.data_type for i in graph.initializer if i.name.startswith(f"{n}.")}
        nbits = {a.i for g in mine if g.op_type in ("MatMulNBits", "GatherBlockQuantized")
                 for a in g.attribute if a.name == "bits"}
        if nbits:
            fmt = f"int{max(nbits)}"
        elif {"MatMulNBits", "GatherBlockQuantized"} & set(ops):
            fmt = "int4"
        elif "MatMulInteger" in ops or types & {TensorProto.INT8, TensorProto.UINT8}:
            fmt = "int8"
        elif "Cast" in ops or TensorProto.FLOAT16 in types:
            fmt = "fp16"
        else:
            fmt = "fp32"
        out[n] = {"applied": fmt, "ops": ops}
    return out


def write_artifacts(subnet: Any, directory: Path, *, accuracy_level: int | None = None,
                    log: TextIO | None = None) -> dict[str, Any]:
    """Write every file but the manifest into the new folder ``directory``.

    ``accuracy_level``: ``MatMulNBits``' for int4 nodes, the one the latency table priced (None: unset,
    fp32 compute; a decoder then takes :data:`nas.export.generation.ACCURACY_LEVEL`).

    Returns:
        ``{"nodes": {node: {label, bits, applied, ops}}, "hf": {expressible, reason, dir}}``.
    """
    from nas.export.hf import expressible, save_hf
    from nas.runtime.onnx import export_onnx
    from nas.runtime.quantize import bits_by_node, quantize_onnx
    from nas.spaces.summary import format_arch

    subnet.save(directory)
    arch = {
        "space": {"name": subnet.space.name, "hash": subnet.space.hash},
        "arch": subnet.arch,
        "arch_summary": format_arch(subnet.space, subnet.arch),
        "layers": [[ld.index, ld.num_heads, ld.intermediate] for ld in subnet.model.layer_dims],
    }
    (directory / ARCH_JSON).write_text(json.dumps(arch, indent=1))
    ok, why = expressible(subnet)
    if ok:
        save_hf(subnet, directory / HF_DIR)
    _log(log, f"hf: {why}")
    hf = {"expressible": ok, "reason": why, "dir": HF_DIR if ok else None}
    if subnet.model.dims.family == "llama":  # a decoder: the generation graph, tokenizer/, generation.json
        from nas.export.generation import ACCURACY_LEVEL, write_generation_files

        level = ACCURACY_LEVEL if accuracy_level is None else accuracy_level
        return {"nodes": write_generation_files(subnet, directory, accuracy_level=level, log=log), "hf": hf}
    export_onnx(subnet, directory / FP32)
    labels = node_labels(subnet)
    bits = bits_by_node(subnet)
    quantize_onnx(directory / FP32, directory / QUANT, {n: b for n, b in bits.items() if b < 32},
                  accuracy_level=accuracy_level)
    applied = applied_formats(directory / QUANT, sorted(labels))
    counts: dict[str, int] = {}
    for a in applied.values():
        counts[a["applied"]] = counts.get(a["applied"], 0) + 1
    _log(log, "onnx: fp32 written; quantized " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    nodes = {n: {"label": labels[n], "bits": bits[n], **applied[n]} for n in sorted(labels)}
    return {"nodes": nodes, "hf": hf}
